"""Lifecycle of a real tiny guest: shutdown, start again, crash, guest reboot."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from driver.events import MachineState

if TYPE_CHECKING:
    from conftest import NetworkFactory

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module", params=["fast", "nixos-virtiofs"])
def guest_shape(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the fast shape and on NixOS's of 2026 (its root
    disk, SeaBIOS, virtiofsd); test_machine.py covers NixOS's 9p shape."""
    return str(request.param)


def test_shutdown_start_crash(vm_network: NetworkFactory, guest_shape: str) -> None:
    net = vm_network({"solo": [1]})
    solo = net["solo"]
    net.start_all()
    first_pid = solo.pid
    solo.succeed("touch /tmp/from-first-boot")
    if guest_shape != "fast":
        solo.succeed("echo kept > /var/on-disk")  # the qcow2 root disk NixOS keeps in the state dir

    solo.shutdown()
    assert not solo.booted and not solo.is_up() and solo.pid is None
    exited = net.states("solo")[-1]
    assert (exited.state, exited.exit_code) == (MachineState.EXITED, 0)
    assert exited.pid == first_pid

    # Like NixOS: a command on a machine that was shut down boots it again.
    assert solo.succeed("test -e /tmp/from-first-boot || echo fresh") == "fresh\n"
    if guest_shape != "fast":
        assert solo.succeed("cat /var/on-disk") == "kept\n"
        assert (solo.state_dir / "solo.qcow2").is_file()
    assert solo.pid != first_pid
    assert net.last_state("solo") == MachineState.CONNECTED

    solo.crash()
    assert not solo.booted
    assert net.last_state("solo") == MachineState.EXITED
    solo.release()
    solo.release()  # idempotent


def test_guest_reboot_is_waited_for(vm_network: NetworkFactory) -> None:
    net = vm_network({"rebooter": {"vlans": [1], "allow_reboot": True}})
    machine = net["rebooter"]
    net.start_all()
    pid = machine.pid
    machine.succeed("touch /tmp/before-reboot")
    # The command returns before the guest goes down; the wait below first
    # sees the old system, then the backdoor restarting, then the new one.
    assert machine.execute("reboot", check_return=False) == (-1, "")
    machine.wait_until_fails("test -e /tmp/before-reboot", timeout=600)
    assert machine.pid == pid  # same QEMU: the guest rebooted, QEMU did not exit
    assert machine.succeed("echo back") == "back\n"
    states = [event.state for event in net.states("rebooter")]
    assert states[-1] == MachineState.CONNECTED
    assert states.count(MachineState.CONNECTED) == 2


def test_screenshot_of_a_machine_with_a_display(vm_network: NetworkFactory) -> None:
    import struct

    # A command line, not a bare script path: run through bash, QEMU_OPTS
    # reach the start script, which adds them before the driver's arguments.
    net = vm_network({"screen": {"vlans": [1], "command_prefix": "QEMU_OPTS='-vga std'"}})
    screen = net["screen"]
    net.start_all()
    # bash execs the lone command: the child is QEMU, not a shell.
    assert screen.process is not None and screen.process.pid == screen.pid
    screen.screenshot("shot")
    png = (screen.out_dir / "shot.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width > 0 and height > 0
    target = screen.out_dir / "sub" / "named.png"
    screen.screenshot(str(target))
    assert target.exists()
