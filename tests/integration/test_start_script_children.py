"""Every process a start script starts ends with its node, on every exit path.

A NixOS-shaped start script of the virtiofs era starts one `virtiofsd` per
shared directory before it `exec`s QEMU: those processes are not QEMU, but
they belong to the node.  The tests look for *any* process left in the
start script's session (vmtui starts each script in a session of its own),
not just for QEMU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driver.errors import MachineDied, MachineError
from driver.events import LogLevel, LogMessage, MachineState

if TYPE_CHECKING:
    from conftest import NetworkFactory

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def session_members(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session `sid`: pid -> command name."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            members[int(entry.name)] = name
    return members


def wait_for_empty_session(sid: int, limit: float = 60.0) -> dict[int, str]:
    """What is still alive in the session after up to `limit` s (not a timing assertion)."""
    import time

    deadline = time.monotonic() + limit
    while (left := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def started_session(machine: object) -> int:
    process = machine.process  # type: ignore[attr-defined]
    assert process is not None
    return os.getsid(process.pid)


@pytest.fixture(scope="module")
def guest_shape() -> str:
    return "nixos-virtiofs"


# A helper of the start script's own that, unlike virtiofsd, does not notice
# QEMU's end, and keeps QEMU's output pipe open as a background job does.
HELPER = "sleep 7200 & exec"


def boot_with_helpers(vm_network: NetworkFactory, name: str) -> tuple[object, int]:
    net = vm_network({name: {"vlans": [1], "command_prefix": HELPER}})
    net.start_all()
    machine = net[name]
    sid = started_session(machine)
    names = sorted(session_members(sid).values())
    # One virtiofsd per shared directory (store, xchg, shared), besides QEMU.
    assert names.count("qemu-system-x86") == 1, names
    assert names.count("virtiofsd") >= 3, names
    assert names.count("sleep") == 1, names
    return machine, sid


def test_release_ends_virtiofsd(vm_network: NetworkFactory) -> None:
    machine, sid = boot_with_helpers(vm_network, "released")
    machine.release()  # type: ignore[attr-defined]
    assert wait_for_empty_session(sid) == {}


def test_crash_ends_virtiofsd(vm_network: NetworkFactory) -> None:
    machine, sid = boot_with_helpers(vm_network, "crashed")
    machine.crash()  # type: ignore[attr-defined]
    assert wait_for_empty_session(sid) == {}


def test_guest_poweroff_ends_virtiofsd(vm_network: NetworkFactory) -> None:
    machine, sid = boot_with_helpers(vm_network, "poweroff")
    messages: list[LogMessage] = []
    machine.bus.subscribe(lambda e: messages.append(e) if isinstance(e, LogMessage) else None)  # type: ignore[attr-defined]
    # The guest powers itself off; no shutdown() from the driver.
    machine.execute("poweroff", check_return=False)  # type: ignore[attr-defined]
    machine.wait_for_shutdown()  # type: ignore[attr-defined]
    assert wait_for_empty_session(sid) == {}
    # A clean exit is news, not a warning with the console's last lines.
    exits = [m for m in messages if m.message.startswith("QEMU exited")]
    assert [(m.message, m.level) for m in exits] == [("QEMU exited with status 0", LogLevel.INFO)]


def test_qemu_dying_ends_virtiofsd(vm_network: NetworkFactory) -> None:
    machine, sid = boot_with_helpers(vm_network, "dying")
    os.kill(machine.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    with pytest.raises(MachineDied):
        machine.succeed("sleep 600")  # type: ignore[attr-defined]
    # Nobody calls release(): QEMU's death alone must end its helpers.
    assert wait_for_empty_session(sid) == {}


def test_qemu_failing_before_it_connects_ends_virtiofsd(vm_network: NetworkFactory) -> None:
    # QEMU rejects its arguments: the virtiofsd processes, already listening,
    # never see a connection and would wait forever.
    net = vm_network({"refused": {"vlans": [1], "command_prefix": "QEMU_OPTS=-no-such-option"}})
    machine = net["refused"]
    with pytest.raises(MachineError):
        machine.start()
    assert net.last_state("refused") in (MachineState.EXITED, MachineState.BOOTING)
    assert machine.process is None or machine.process.poll() is not None
    sessions = {p.pid for p in [machine.process] if p is not None}
    for sid in sessions:
        assert wait_for_empty_session(sid) == {}


BOOT_AND_WAIT = textwrap.dedent(
    """
    import os, sys, tempfile, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from conftest import VMNetwork
    from driver import processes
    from driver.guest.tiny import build_tiny_guest

    if {handlers!r}:
        processes.install_exit_handlers()
    net = VMNetwork(Path(tempfile.mkdtemp(prefix="kids")), build_tiny_guest(), {{"kid": [1]}},
                    shape="nixos-virtiofs")
    net.start_all()
    print(os.getsid(net["kid"].process.pid), flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize(
    ("signum", "handlers"),
    [(signal.SIGTERM, True), (signal.SIGINT, True)],
    ids=["sigterm", "sigint"],
)
def test_killing_vmtui_ends_virtiofsd(
    signum: int, handlers: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A short directory: virtiofsd's socket path must fit a UNIX socket address.
    env = dict(os.environ, TMPDIR=str(tmp_path_factory.mktemp("k")))
    parent = subprocess.Popen(
        [sys.executable, "-c", BOOT_AND_WAIT.format(here=str(HERE), handlers=handlers)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    sid = 0
    try:
        line = parent.stdout.readline()
        assert line, "the driver process did not boot its node"
        sid = int(line)
        assert "virtiofsd" in session_members(sid).values()
        parent.send_signal(signum)
        assert parent.wait(120) == -signum
        # The exit handlers end the whole session, not just QEMU.
        assert wait_for_empty_session(sid) == {}
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if sid:
            for pid in session_members(sid):
                os.kill(pid, signal.SIGKILL)
