"""QEMU says how it runs a guest (QMP query-kvm), and the driver reports it.

Guests here run under TCG (a start script's `accel=tcg`); the answer comes
from QEMU itself, never from the command line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driver.events import MachineState
from driver.qmp import QMPConnection

if TYPE_CHECKING:
    from conftest import NetworkFactory


def test_qmp_tells_tcg_from_a_real_qemu(tmp_path: Path) -> None:
    socket_path = tmp_path / "qmp"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "none", "-accel", "tcg", "-display", "none", "-nodefaults",
         "-qmp", f"unix:{socket_path},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    connection = QMPConnection("bare")
    try:
        connection.connect(str(socket_path), timeout=60.0, is_dead=lambda: None if qemu.poll() is None else "QEMU exited")
        assert connection.accelerator() == "tcg"
    finally:
        connection.close()
        qemu.kill()
        qemu.wait()


@pytest.mark.vm
def test_a_started_machine_publishes_its_accelerator(vm_network: NetworkFactory) -> None:
    net = vm_network({"solo": [1]})
    solo = net["solo"]
    solo.start()  # QEMU up and QMP connected; the guest need not have booted
    assert solo.accelerator == "tcg"
    told = [event for event in net.states("solo") if event.accelerator is not None]
    assert [(event.state, event.accelerator) for event in told] == [(MachineState.BOOTING, "tcg")]
    assert told[0].pid == solo.pid
    solo.crash()
    assert solo.accelerator is None
    assert net.states("solo")[-1].accelerator is None
