"""The systemd guest in the NixOS shapes: what a real NixOS VM's start script does.

One node per shape (nixos-virtiofs, then nixos), each booted once:
SeaBIOS (no qboot, no -nodefaults, so the user NIC has QEMU's default MAC),
the root disk `NIX_DISK_IMAGE` made in the state directory as an overlay of
the cached image, and the store/xchg/shared directories over virtiofsd
(memfd shared memory) or 9p.  systemd boots to the backdoor; the setup unit
mounts the shares and applies the node's data from the store share.

A boot takes half a minute or more under TCG: the tests of a shape share
it and release the node last, checking that no process of its session
(QEMU, the virtiofsd processes) is left.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driver.checkpoint import CheckpointRefused, Checkpoints
from driver.events import ConsoleOutput, Event, EventBus
from driver.guest.systemd import build_image, write_systemd_start_script
from driver.guest.systemd_image import SystemdImage
from driver.logger import Logger
from driver.machine import Machine
from driver.vlan import VLan

from test_start_script_children import session_members, wait_for_empty_session

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(1800)]

QEMU_DEFAULT_MAC = "52:54:00:12:34:56"


@dataclass
class ShapedNode:
    machine: Machine
    image: SystemdImage
    sid: int
    console: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def image() -> SystemdImage:
    # The example client's image: the cheapest one the other tests build too.
    return build_image(["postgresql-client"])


def boot_shaped(image: SystemdImage, tmp_dir: Path, shape: str) -> Iterator[ShapedNode]:
    vlan = VLan(1, tmp_dir)
    machine = None
    try:
        script = write_systemd_start_script(
            tmp_dir / "nodes",
            name="shaped",
            node_number=2,
            vlans=[1],
            hosts=[("peer", 1, 1), ("shaped", 2, 1)],
            image=image,
            memory_mb=512,
            files={"/etc/shaped/greeting": b"from the store share\n"},
            boot_script="echo ran > /run/boot-hook\n",
            shape=shape,
        )
        bus = EventBus()
        console: list[str] = []
        bus.subscribe(lambda event: console.extend(event.lines) if isinstance(event, ConsoleOutput) else None)
        machine = Machine(
            "shaped",
            str(script),
            bus=bus,
            logger=Logger(bus),
            tmp_dir=tmp_dir,
            out_dir=tmp_dir / "out",
            shared_dir=tmp_dir / "shared",
            connect_timeout=900,
        )
        machine.start()
        assert machine.process is not None
        sid = os.getsid(machine.process.pid)
        machine.connect()
        yield ShapedNode(machine, image, sid, console)
    finally:
        if machine is not None:
            machine.release()
        vlan.stop()


@pytest.fixture(scope="module")
def virtiofs_node(image: SystemdImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShapedNode]:
    # A short directory: virtiofsd's socket path must fit a UNIX socket address.
    yield from boot_shaped(image, tmp_path_factory.mktemp("vfs"), "nixos-virtiofs")


def qemu_arguments(machine: Machine) -> list[str]:
    assert machine.pid is not None
    return Path(f"/proc/{machine.pid}/cmdline").read_bytes().decode().split("\0")


def test_systemd_boots_through_seabios_to_the_backdoor(virtiofs_node: ShapedNode) -> None:
    machine = virtiofs_node.machine
    arguments = qemu_arguments(machine)
    assert "-bios" not in arguments and "-nodefaults" not in arguments
    assert "vhost-user-fs-pci,chardev=fs-nix-store,tag=nix-store" in arguments
    assert any("SeaBIOS (version" in line for line in virtiofs_node.console), virtiofs_node.console[:8]
    assert machine.succeed("cat /proc/1/comm") == "systemd\n"
    machine.wait_for_unit("backdoor.service")
    machine.wait_for_unit("vmtui-boot.service")
    assert machine.succeed("cat /run/boot-hook") == "ran\n"


def test_the_shares_are_virtiofs_and_the_node_data_comes_from_the_store(virtiofs_node: ShapedNode) -> None:
    machine = virtiofs_node.machine
    for mountpoint in ("/nix/.ro-store", "/nix/store", "/run/vmtui/node", "/tmp/xchg", "/tmp/shared"):
        assert machine.succeed(f"findmnt -n -o FSTYPE {mountpoint}") == "virtiofs\n", mountpoint
    assert "ro" in machine.succeed("findmnt -n -o OPTIONS /nix/store").split(",")
    assert machine.succeed("cat /etc/shaped/greeting") == "from the store share\n"
    assert "192.168.1.1 peer" in machine.succeed("cat /etc/hosts")
    # The three virtiofsd processes, one per share, beside QEMU.
    names = sorted(session_members(virtiofs_node.sid).values())
    assert names.count("virtiofsd") >= 3 and names.count("qemu-system-x86") == 1, names


def test_copying_through_the_shared_directory_works_both_ways(
    virtiofs_node: ShapedNode, tmp_path: Path
) -> None:
    machine = virtiofs_node.machine
    source = tmp_path / "to-guest.txt"
    source.write_text("host to guest over virtiofs\n")
    machine.copy_from_host(str(source), "/root/to-guest.txt")
    assert machine.succeed("cat /root/to-guest.txt") == "host to guest over virtiofs\n"
    machine.succeed("mkdir -p /root/back && echo 'guest to host' > /root/back/file")
    machine.copy_from_machine("/root/back", "copied")
    assert (machine.out_dir / "copied/back/file").read_text() == "guest to host\n"


def test_the_user_nic_with_qemus_default_mac_is_not_a_vlan_nic(virtiofs_node: ShapedNode) -> None:
    machine = virtiofs_node.machine
    assert machine.succeed("cat /sys/class/net/eth0/address") == QEMU_DEFAULT_MAC + "\n"
    assert machine.succeed("ip -4 -o address show dev eth0 | awk '{print $4}'") == "10.0.2.15/24\n"
    assert machine.succeed("ip -4 -o address show dev eth1 | awk '{print $4}'") == "192.168.1.2/24\n"


def test_the_disk_image_is_an_overlay_made_in_the_state_dir(virtiofs_node: ShapedNode) -> None:
    machine = virtiofs_node.machine
    disk = machine.state_dir / "shaped.qcow2"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--force-share", "--output=json", str(disk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2" and info["backing-filename"] == str(virtiofs_node.image.disk)
    # What the guest writes lands in the overlay, never in the cached image.
    machine.succeed("echo written > /var/written && sync")
    assert machine.succeed("findmnt -n -o SOURCE /") == "/dev/vda\n"


def test_a_checkpoint_is_refused_naming_the_virtiofs_devices(virtiofs_node: ShapedNode) -> None:
    machine = virtiofs_node.machine
    checkpoints = Checkpoints(lambda: [machine])
    with pytest.raises(CheckpointRefused) as refused:
        checkpoints.save("boot", statement_index=0)
    message = str(refused.value)
    assert message.startswith("shaped cannot be checkpointed: its shared directories 'nix-store' (")
    assert "vhost-user-fs-pci" in message and "QEMU 8.2 or newer" in message
    assert checkpoints.checkpoints == []
    assert machine.succeed("findmnt -n -o FSTYPE /tmp/shared") == "virtiofs\n"


def test_release_leaves_no_process_virtiofsd_included(virtiofs_node: ShapedNode) -> None:
    virtiofs_node.machine.release()
    assert wait_for_empty_session(virtiofs_node.sid) == {}


@pytest.fixture(scope="module")
def ninep_node(image: SystemdImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShapedNode]:
    yield from boot_shaped(image, tmp_path_factory.mktemp("9p"), "nixos")


def test_the_9p_shape_boots_with_its_shares_and_disk(ninep_node: ShapedNode, tmp_path: Path) -> None:
    """NixOS's older layout: the same script with -virtfs shares, no virtiofsd."""
    machine = ninep_node.machine
    assert "-bios" not in qemu_arguments(machine)
    machine.wait_for_unit("vmtui-boot.service")
    for mountpoint in ("/nix/store", "/run/vmtui/node", "/tmp/xchg", "/tmp/shared"):
        assert machine.succeed(f"findmnt -n -o FSTYPE {mountpoint}") == "9p\n", mountpoint
    assert machine.succeed("cat /etc/shaped/greeting") == "from the store share\n"
    assert machine.succeed("ip -4 -o address show dev eth0 | awk '{print $4}'") == "10.0.2.15/24\n"
    assert machine.succeed("ip -4 -o address show dev eth1 | awk '{print $4}'") == "192.168.1.2/24\n"
    source = tmp_path / "over-9p.txt"
    source.write_text("host to guest over 9p\n")
    machine.copy_from_host(str(source), "/root/over-9p.txt")
    machine.copy_from_machine("/root/over-9p.txt", "back")
    assert (machine.out_dir / "back/over-9p.txt").read_text() == "host to guest over 9p\n"
    assert (machine.state_dir / "shaped.qcow2").is_file()
    assert "virtiofsd" not in session_members(ninep_node.sid).values()
    machine.release()
    assert wait_for_empty_session(ninep_node.sid) == {}
