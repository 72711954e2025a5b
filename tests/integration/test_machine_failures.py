"""Failures are clear errors naming the machine, never hangs."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import driver.machine
from driver.errors import BackdoorTimeout, MachineDied, MachineError
from driver.events import LogMessage, MachineState
from driver.logger import Logger
from driver.machine import Machine

if TYPE_CHECKING:
    from conftest import NetworkFactory, VMNetwork

pytestmark = pytest.mark.vm


def test_qemu_killed_mid_command(vm_network: NetworkFactory) -> None:
    net: VMNetwork = vm_network({"victim": [1]})
    victim = net["victim"]
    net.start_all()
    pid = victim.pid
    assert pid is not None
    killer = threading.Timer(1.0, os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    try:
        # The guest command would run for almost an hour: returning at all
        # shows the death was noticed on the host side.
        with pytest.raises(MachineDied, match=r"victim: QEMU was killed by signal 9 \(SIGKILL\) while running `sleep 3000`"):
            victim.succeed("sleep 3000")
    finally:
        killer.join()
    exited = net.states("victim")[-1]
    assert (exited.state, exited.exit_code) == (MachineState.EXITED, -signal.SIGKILL)
    # Later calls fail the same clear way (no restart behind the user's back).
    with pytest.raises(MachineDied, match="victim: QEMU was killed by signal 9"):
        victim.succeed("true")
    # An explicit start() boots it again.
    victim.start()
    assert victim.succeed("echo again") == "again\n"


def test_guest_that_never_starts_the_backdoor(
    vm_network: NetworkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver.machine, "SILENCE_INTERVAL", 2.0)
    net = vm_network(
        {"mute": {"extra_kernel_params": "vmtui.nobackdoor", "connect_timeout": 20}}
    )
    mute = net["mute"]
    mute.start()
    with pytest.raises(BackdoorTimeout, match=r"mute: the guest's root shell did not start within 20 seconds"):
        mute.connect()
    said = [e.message for e in net.events if isinstance(e, LogMessage) and e.machine == "mute"]
    assert "Guest root shell did not produce any data yet..." in said
    # QEMU still runs: the UI can show its console; release ends it.
    assert mute.is_dead() is None
    mute.release()
    assert mute.process is None


def make_machine(tmp_path: Path, start_command: str) -> Machine:
    from driver.events import EventBus

    bus = EventBus()
    return Machine(
        "broken",
        start_command,
        bus=bus,
        logger=Logger(bus),
        tmp_dir=tmp_path,
        out_dir=tmp_path / "out",
        shared_dir=tmp_path / "shared",
    )


def test_start_command_that_fails(tmp_path: Path) -> None:
    # The driver's QEMU arguments land on the last command (`false`).
    machine = make_machine(tmp_path, "echo 'cannot boot: no disk image' >&2; false")
    with pytest.raises(MachineDied, match=r"broken: QEMU exited with status 1 before it connected to the monitor socket(.|\n)*no disk image"):
        machine.start()
    machine.release()


def test_qemu_rejecting_its_arguments(tmp_path: Path) -> None:
    machine = make_machine(tmp_path, "qemu-system-x86_64 -no-such-option")
    with pytest.raises(MachineDied, match=r"broken: QEMU exited with status 1(.|\n)*no-such-option"):
        machine.start()
    machine.release()


def test_start_command_that_does_not_exist(tmp_path: Path) -> None:
    machine = make_machine(tmp_path, str(tmp_path / "missing-run-vm"))
    with pytest.raises(MachineError, match="broken: cannot run the start command"):
        machine.start()
    machine.release()
