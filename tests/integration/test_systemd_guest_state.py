"""The systemd guest's root disk: kept with the machine state, else discarded.

The start script puts a qcow2 overlay of the cached image into the state
directory, which the Machine deletes at construction unless the state is
kept (`--keep-vm-state`).  Three boots of one node: what the first wrote is
there in the second only because the state was kept, and gone in the third.
The first boot also checks the per-node files and the boot hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from driver import processes
from driver.events import EventBus
from driver.guest.systemd import build_image, write_systemd_start_script
from driver.guest.systemd_image import SystemdImage
from driver.logger import Logger
from driver.machine import Machine

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def image() -> SystemdImage:
    # The example client's image: the cheapest one the other tests build too.
    return build_image(["postgresql-client"])


@pytest.fixture
def released() -> Iterator[list[Machine]]:
    machines: list[Machine] = []
    try:
        yield machines
    finally:
        for machine in machines:
            machine.release()
        leftovers = [p.pid for p in processes.registry.live() if p.poll() is None]
        assert not leftovers, f"processes left running: {leftovers}"


def boot(image: SystemdImage, tmp_dir: Path, keep_state: bool, released: list[Machine]) -> Machine:
    script = write_systemd_start_script(
        tmp_dir / "nodes",
        name="keeper",
        node_number=1,
        vlans=[],
        hosts=[],
        image=image,
        memory_mb=512,
        files={"/etc/keeper/greeting": b"placed at boot\n"},
        boot_script="echo \"boot hook ran as $(id -un)\" > /run/boot-hook\n",
    )
    bus = EventBus()
    machine = Machine(
        "keeper",
        str(script),
        bus=bus,
        logger=Logger(bus),
        tmp_dir=tmp_dir,
        out_dir=tmp_dir / "out",
        shared_dir=tmp_dir / "shared",
        keep_state=keep_state,
        connect_timeout=900,
    )
    released.append(machine)
    machine.start()
    machine.connect()
    return machine


def test_root_disk_survives_only_with_kept_state(
    image: SystemdImage, tmp_path: Path, released: list[Machine]
) -> None:
    first = boot(image, tmp_path, keep_state=False, released=released)
    # The per-node files and the boot hook (vmtui-boot.service) on the way.
    assert first.succeed("cat /etc/keeper/greeting") == "placed at boot\n"
    first.wait_for_unit("vmtui-boot.service", timeout=600)
    assert first.succeed("cat /run/boot-hook") == "boot hook ran as root\n"
    first.succeed("echo remembered > /root/note && sync")
    first.shutdown()  # a clean systemd poweroff: QEMU exits
    overlay = tmp_path / "vm-state-keeper" / "keeper.qcow2"
    assert overlay.is_file()
    # The cached image itself is never written.
    assert image.disk.stat().st_mtime < overlay.stat().st_mtime

    second = boot(image, tmp_path, keep_state=True, released=released)
    assert second.succeed("cat /root/note") == "remembered\n"
    second.release()

    # Not kept: the state directory and with it the overlay start afresh.
    third = boot(image, tmp_path, keep_state=False, released=released)
    third.fail("test -e /root/note")
