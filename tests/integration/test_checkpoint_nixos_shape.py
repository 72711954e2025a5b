"""Checkpoints on NixOS-shaped nodes: what QEMU allows, and vmtui's refusals.

Measured on QEMU 7.2: a VM with a vhost-user-fs device (virtiofs) cannot be
saved at all, mounted or not; a VM whose Nix store is a 9p share in use
cannot be saved while the share is mounted, and the store stays in use for
as long as the guest runs.  vmtui refuses both with the reason, naming the
device and what would make it work, and the nodes keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from driver.checkpoint import CheckpointError, CheckpointRefused, Checkpoints
from driver.machine import Machine

if TYPE_CHECKING:
    from conftest import NetworkFactory

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def fs_node(vm_network: NetworkFactory) -> Machine:
    net = vm_network({"fsnode": [1]}, shape="nixos-virtiofs")
    net.start_all()
    return net["fsnode"]


def test_a_virtiofs_node_is_refused_with_the_device_and_the_remedy(fs_node: Machine) -> None:
    machine = fs_node
    checkpoints = Checkpoints(lambda: [machine])
    assert checkpoints.refused is None
    with pytest.raises(CheckpointRefused) as refused:
        checkpoints.save("boot", statement_index=0)
    message = str(refused.value)
    assert message.startswith("fsnode cannot be checkpointed: its shared directories 'nix-store' (")
    assert "vhost-user-fs-pci" in message and "QEMU 7.2." in message
    assert "QEMU 8.2 or newer" in message and "virtiofsd 1.11" in message
    assert checkpoints.refused == message
    assert checkpoints.why_not(machine) == message
    assert checkpoints.checkpoints == []
    # Nothing was touched: the shares are still mounted, the node works.
    assert machine.succeed("grep -c ' virtiofs ' /proc/mounts") == "4\n"


def test_qemu_itself_cannot_save_a_vm_with_virtiofs(fs_node: Machine) -> None:
    """The fact vmtui's refusal rests on: QEMU's own answer, asked directly."""
    qmp = fs_node.qmp_client
    assert qmp is not None
    blocked: Any = qmp.execute("query-migrate")
    assert any("vhost-user-fs" in reason for reason in blocked.get("blocked-reasons", []))
    # Even with the shares unmounted in the guest: the device blocks, not the mount.
    fs_node.succeed("umount /tmp/xchg /tmp/shared")
    reply: Any = qmp.execute("human-monitor-command", {"command-line": "savevm vmtui-probe"})
    assert "non-migratable device" in reply and "vhost-user-fs" in reply


@pytest.fixture(scope="module")
def store_node(vm_network: NetworkFactory) -> Machine:
    net = vm_network({"storenode": [1]}, shape="nixos")
    net.start_all()
    return net["storenode"]


def test_a_busy_xchg_share_is_not_a_refusal(store_node: Machine) -> None:
    """Only what can never change refuses checkpoints for good."""
    checkpoints = Checkpoints(lambda: [store_node])
    holder = store_node.succeed("(cd /tmp/xchg && exec sleep 600) >/dev/null 2>&1 & echo $!").strip()
    try:
        with pytest.raises(CheckpointError, match="'xchg' mounted at /tmp/xchg is in use") as error:
            checkpoints.save()
        assert not isinstance(error.value, CheckpointRefused)
        assert checkpoints.refused is None
    finally:
        # Gone once its working directory is no longer there (a zombie has none).
        store_node.succeed(f'kill {holder}; while [ "$(readlink /proc/{holder}/cwd)" = /tmp/xchg ]; do sleep 0.05; done')


def test_a_nixos_9p_node_is_refused_because_its_store_is_in_use(store_node: Machine) -> None:
    machine = store_node
    checkpoints = Checkpoints(lambda: [machine])
    assert checkpoints.why_not(machine) is None  # nothing QEMU can tell before the shares are unmounted
    with pytest.raises(CheckpointRefused, match=r"the 9p share 'nix-store' mounted at /nix/store is in use.*"
                                                r"virtualisation.useNixStoreImage = true"):
        checkpoints.save()
    assert checkpoints.refused is not None
    # The shares unmounted on the way are mounted again.
    assert machine.succeed("grep -c ' 9p ' /proc/mounts") == "4\n"
    (machine.shared_dir / "still-shared").write_text("yes\n")
    assert machine.succeed("cat /tmp/shared/still-shared") == "yes\n"
