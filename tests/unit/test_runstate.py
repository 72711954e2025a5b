"""A machine's runstate (driver/runstate.py): checked moves, one lock, guards."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from driver.errors import MachineError
from driver.events import EventBus
from driver.logger import Logger
from driver.machine import Machine
from driver.runstate import ATTACHED, MachineRunstate, Runstate, RunstateError, allowed


def test_a_life_from_creation_to_exit_and_a_new_start() -> None:
    runstate = MachineRunstate("server")
    for state in (Runstate.STARTING, Runstate.BOOTED, Runstate.CONNECTED, Runstate.BOOTED,
                  Runstate.CONNECTED, Runstate.STOPPING, Runstate.STOPPED, Runstate.STARTING,
                  Runstate.BOOTED, Runstate.DIED, Runstate.STOPPED):
        assert runstate.move(state), state
    assert runstate.state is Runstate.STOPPED


def test_a_late_writer_cannot_bring_a_dead_machine_back() -> None:
    runstate = MachineRunstate("server")
    for state in (Runstate.STARTING, Runstate.BOOTED, Runstate.CONNECTED):
        runstate.move(state)
    runstate.move(Runstate.DIED)  # the console thread saw QEMU exit ...
    # ... then the script thread notices the reboot marker, or a connect ends.
    assert not runstate.move(Runstate.BOOTED, only_from=[Runstate.CONNECTED])
    assert not runstate.move(Runstate.CONNECTED)
    assert runstate.state is Runstate.DIED and not runstate.state.connected
    # A death is never followed by a start without a teardown in between.
    assert not runstate.move(Runstate.STARTING)


def test_only_listed_moves_are_allowed() -> None:
    assert allowed(Runstate.STOPPED, Runstate.STOPPED)
    assert not allowed(Runstate.STOPPING, Runstate.CONNECTED)
    assert not allowed(Runstate.CREATED, Runstate.CONNECTED)
    assert Runstate.STOPPING.booted and not Runstate.STOPPING.connected


def test_racing_moves_leave_one_consistent_state() -> None:
    runstate = MachineRunstate("server")
    runstate.move(Runstate.STARTING)
    runstate.move(Runstate.BOOTED)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def connect() -> None:
        barrier.wait()
        results.append(runstate.move(Runstate.CONNECTED, only_from=[Runstate.BOOTED]))

    threads = [threading.Thread(target=connect) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Exactly one connect won (the others found it connected already).
    assert results.count(True) == 1 and runstate.state is Runstate.CONNECTED


def test_guards_name_the_machine_and_its_state(tmp_path: Path) -> None:
    bus = EventBus()
    machine = Machine("node1", "true", bus=bus, logger=Logger(bus), tmp_dir=tmp_path / "tmp",
                      out_dir=tmp_path / "out", shared_dir=tmp_path / "shared")
    assert machine.runstate.state is Runstate.CREATED and not machine.booted and not machine.connected
    with pytest.raises(RunstateError, match="node1: the machine is not running") as raised:
        machine.send_console("x")
    assert isinstance(raised.value, MachineError) and raised.value.machine == "node1"
    runstate = MachineRunstate("n")
    with pytest.raises(RunstateError, match="n: the machine is not running"):
        runstate.require(*ATTACHED)
