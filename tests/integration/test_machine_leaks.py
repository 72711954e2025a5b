"""No QEMU or vde_switch outlives the process that started it, on any path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driver import processes

if TYPE_CHECKING:
    from conftest import NetworkFactory

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# A driver process of its own: boots one node on one VLAN, reports the pids
# of QEMU and vde_switch, then waits to be killed.
BOOT_AND_WAIT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from conftest import VMNetwork
    from driver import processes
    from driver.guest.tiny import build_tiny_guest

    if {handlers!r}:
        processes.install_exit_handlers()
    # In the test's tmp_path: a killed process removes nothing it made itself.
    net = VMNetwork(Path({work!r}), build_tiny_guest(), {{"leaky": [1]}})
    net.start_all()
    print(net["leaky"].pid, net.vlans[1].pid, flush=True)
    time.sleep(600)
    """
)


def is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def wait_gone(pids: list[int], limit: float = 60.0) -> list[int]:
    """The pids still running after waiting up to `limit` (not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not all(is_gone(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if not is_gone(pid)]


@pytest.mark.parametrize(
    ("signum", "handlers"),
    [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGKILL, False), (signal.SIGTERM, False)],
    ids=["sigterm-handled", "sigint-handled", "sigkill", "sigterm-unhandled"],
)
def test_killing_the_driver_process_ends_its_children(signum: int, handlers: bool, tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", BOOT_AND_WAIT.format(here=str(HERE), handlers=handlers, work=str(tmp_path))],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids: list[int] = []
    try:
        line = parent.stdout.readline()
        assert line, "the driver process did not boot its node"
        pids = [int(word) for word in line.split()]
        assert Path(f"/proc/{pids[0]}/exe").resolve().name.startswith("qemu-system")
        parent.send_signal(signum)
        status = parent.wait(120)
        assert status == -signum
        # Exit handlers (SIGTERM/SIGINT) or PDEATHSIG (SIGKILL, or a SIGTERM
        # nobody handles) end QEMU and the switch.
        assert wait_gone(pids) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in pids:
            if not is_gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["fast", "nixos", "nixos-virtiofs"])
def guest_shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_release_leaves_nothing_behind(vm_network: NetworkFactory) -> None:
    net = vm_network({"a": [1], "b": [1, 2]})
    net.start_all(connect=False)
    pids = [m.pid for m in net.machines.values()] + [v.pid for v in net.vlans.values()]
    assert all(pid is not None for pid in pids)
    net.close()
    assert wait_gone([pid for pid in pids if pid is not None]) == []
    mine = {p.pid for p in processes.registry.live()}
    assert not mine.intersection(pids)
