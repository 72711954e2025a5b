"""Checkpoints of a systemd guest: the VM state goes onto its qcow2 root disk
(no scratch drive), as it would for a NixOS VM, and its disk rolls back too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from driver.checkpoint import Checkpoints
from driver.events import EventBus
from driver.guest.systemd_image import cached_image
from driver.guest.systemd_node import write_systemd_start_script
from driver.logger import Logger
from driver.machine import Machine

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    # Any built image will do: the base one, or the one the postgres example uses.
    image = cached_image(()) or cached_image(("postgresql",))
    if image is None:
        pytest.skip("the systemd guest image is not built (tests/integration/test_systemd_guest.py builds it)")
    root = tmp_path_factory.mktemp("checkpoint-systemd")
    script = write_systemd_start_script(root / "node", name="sysnode", node_number=1, vlans=[],
                                        hosts=[("sysnode", 1, 1)], image=image)
    bus = EventBus()
    machine = Machine("sysnode", str(script), bus=bus, logger=Logger(bus), tmp_dir=root / "tmp",
                      out_dir=root / "out", shared_dir=root / "shared")
    try:
        machine.start()
        machine.connect()
        machine.wait_for_unit("multi-user.target")
        yield machine
    finally:
        machine.release()


def test_root_disk_and_services_roll_back(node: Machine) -> None:
    checkpoints = Checkpoints(lambda: [node])
    assert checkpoints.why_not(node) is None
    node.succeed("echo before > /var/tmp/before && sync")
    checkpoints.save("disk")
    # A file on the root disk (not RAM) and a unit started after the checkpoint.
    node.succeed("echo after > /var/tmp/after && sync", "systemd-run --unit=vmtui-late sleep 600")
    checkpoints.restore("disk")
    assert node.succeed("cat /var/tmp/before") == "before\n"
    assert node.execute("test -e /var/tmp/after")[0] == 1
    assert node.execute("systemctl is-active vmtui-late")[0] != 0
    # systemd and the backdoor keep working.
    node.succeed("systemctl is-system-running --wait || true")
    assert node.succeed("echo ok") == "ok\n"
