"""Shell panes' driver side against a real tiny guest: I/O, Ctrl-C, job control, resize."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from driver.events import EventBus
from driver.guest.startscript import write_start_script
from driver.guest.tiny import build_tiny_guest
from driver.logger import Logger
from driver.machine import Machine
from driver.shell import EXIT_MARK, Shells, ShellError, ShellSession

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    root = tmp_path_factory.mktemp("shell")
    image = build_tiny_guest()
    script = write_start_script(root / "node", name="shellnode", node_number=1, vlans=[],
                                hosts=[("shellnode", 1, 1)], image=image)
    bus = EventBus()
    machine = Machine("shellnode", str(script), bus=bus, logger=Logger(bus), tmp_dir=root / "tmp",
                      out_dir=root / "out", shared_dir=root / "shared")
    try:
        machine.start()
        machine.connect()
        yield machine
    finally:
        machine.release()


class Screen:
    """Collects a session's output; waits for text to appear in it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: str | None = None
        self._changed = threading.Condition()

    def output(self, data: bytes) -> None:
        with self._changed:
            self.data += data
            self._changed.notify_all()

    def on_closed(self, reason: str) -> None:
        with self._changed:
            self.closed = reason
            self._changed.notify_all()

    @property
    def text(self) -> str:
        # Colours and cursor moves out of the way; what a reader sees remains.
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r", "", self.data.decode(errors="replace"))

    def wait_for(self, predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
        """The timeout only guards against a hang; it is no speed check."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"gave up waiting for {what}; output so far:\n{self.text[-2000:]}\nraw: {bytes(self.data[-600:])!r}")
                self._changed.wait(remaining)

    def wait_text(self, pattern: str, what: str | None = None, start: int = 0) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def check() -> bool:
            match = re.search(pattern, self.text[start:])
            if match:
                found.append(match)
            return match is not None

        self.wait_for(check, what or repr(pattern))
        return found[-1]


def open_shell(shells: Shells, machine: Machine) -> tuple[ShellSession, Screen]:
    screen = Screen()
    session = shells.open(machine.name, on_output=screen.output, on_closed=screen.on_closed)
    screen.wait_text(r"# $", "the first prompt")
    return session, screen


def run(session: ShellSession, screen: Screen, line: str, expect: str) -> str:
    start = len(screen.text)
    session.write(line.encode() + b"\r")
    return screen.wait_text(expect, f"{expect!r} after {line!r}", start=start).group(0)


def wait_running(node: Machine, command: str) -> None:
    """Wait until `command` runs (not stopped) in the guest: a key sent
    earlier would race the job's start or its return to the foreground."""
    deadline = time.monotonic() + 60
    probe = f"ps -o stat,args | grep -v grep | grep {command!r} | grep -qv '^ *T'"
    while node.execute(probe)[0] != 0:
        assert time.monotonic() < deadline, f"{command} never ran"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def all_shells(node: Machine) -> Iterator[Shells]:
    # One Shells per node set, as in the app: it knows which consoles are busy.
    shells = Shells(lambda: [node])
    yield shells
    shells.close_all()


@pytest.fixture
def shells(all_shells: Shells) -> Iterator[Shells]:
    yield all_shells
    all_shells.close_all()


def test_shell_runs_commands_with_a_prompt_and_a_tty(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    assert run(session, screen, "echo $((6*7)) on $(tty)", r"42 on /dev/hvc\d") == f"42 on /dev/hvc{session.channel}"
    assert run(session, screen, 'echo "$TERM $-"', r"xterm-256color \S+")  # interactive: '$-' has i
    assert "i" in run(session, screen, "echo flags=$-", r"\nflags=\S+")
    # The backdoor is untouched by the shell's traffic.
    assert node.succeed("echo backdoor ok") == "backdoor ok\n"


def test_ctrl_c_interrupts_the_guest_job_not_the_shell(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    run(session, screen, "sleep 4321", r"sleep 4321\n")
    wait_running(node, "sleep 4321")
    session.write(b"\x03")
    assert run(session, screen, "echo rc=$?", r"rc=\d+") == "rc=130"
    assert session.is_open


def test_ctrl_z_stops_a_job_and_fg_brings_it_back(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    run(session, screen, "sleep 4322", r"sleep 4322\n")
    wait_running(node, "sleep 4322")
    session.write(b"\x1a")
    screen.wait_text(r"Stopped\s+sleep 4322", "the stopped job")
    run(session, screen, "jobs", r"\[1\]\+\s+Stopped")
    start = len(screen.text)
    session.write(b"fg\r")
    screen.wait_text(r"\nsleep 4322", "fg", start=start)
    wait_running(node, "sleep 4322")
    session.write(b"\x03")
    assert run(session, screen, "echo rc=$?", r"rc=\d+") == "rc=130"


def test_resize_reaches_the_guest_terminal(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    assert run(session, screen, "stty size", r"\n\d+ \d+") == "\n24 80"
    session.resize(132, 40)
    # The resize travels to the guest asynchronously: ask until it shows.
    deadline = time.monotonic() + 60
    while "40 132" not in run(session, screen, "stty size", r"\n\d+ \d+"):
        assert time.monotonic() < deadline, "the new size never reached the guest"
        time.sleep(0.2)
    # A full-screen program sees it too ($COLUMNS is updated on SIGWINCH).
    assert run(session, screen, "echo cols=$COLUMNS", r"cols=\d+") == "cols=132"


def test_resize_does_not_wait_for_a_busy_backdoor(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    busy = threading.Thread(target=node.succeed, args=("sleep 15",))
    busy.start()
    try:
        time.sleep(1.0)  # the backdoor is busy now (it cannot be asked: it is busy)
        session.resize(100, 30)
        started = time.monotonic()
        while "30 100" not in run(session, screen, "stty size", r"\n\d+ \d+"):
            assert busy.is_alive(), "the backdoor command ended before the resize showed"
            time.sleep(0.2)
        assert time.monotonic() - started < 10
    finally:
        busy.join()


def test_three_shells_at_once_and_a_fourth_is_refused(node: Machine, shells: Shells) -> None:
    opened = [open_shell(shells, node) for _ in range(3)]
    ttys = {run(session, screen, "tty", r"/dev/hvc\d") for session, screen in opened}
    assert ttys == {"/dev/hvc1", "/dev/hvc2", "/dev/hvc3"}
    with pytest.raises(ShellError, match="in use"):
        shells.open(node.name, on_output=lambda data: None)
    # Each one is independent: typing into one shows nowhere else.
    first, second = opened[0], opened[1]
    run(first[0], first[1], "echo only-in-first", r"only-in-first\n")
    assert "only-in-first" not in second[1].text


def test_exit_closes_the_session_and_frees_the_console(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    channel = session.channel
    session.write(b"exit\r")
    screen.wait_for(lambda: screen.closed is not None, "the session to close")
    assert screen.closed == "shell exited"
    assert EXIT_MARK.decode() not in screen.data.decode(errors="replace")
    # Its console is free again: three shells open at once, on it too.
    # (Shells of earlier tests may still be being hung up: open waits.)
    again = [open_shell(shells, node)[0] for _ in range(3)]
    assert channel in {shell.channel for shell in again}


def test_closing_a_pane_hangs_up_its_guest_processes(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    run(session, screen, "sleep 1234 &", r"\[1\] \d+")
    session.close()
    deadline = time.monotonic() + 60
    while node.execute("pgrep -f 'sleep 1234' || ps | grep -v grep | grep -q 'sleep 1234'")[0] == 0:
        assert time.monotonic() < deadline, "the shell's job survived the pane"
        time.sleep(0.2)


def test_a_busy_script_and_a_shell_share_the_node(node: Machine, shells: Shells) -> None:
    session, screen = open_shell(shells, node)
    results: list[str] = []

    def script() -> None:
        for n in range(20):
            results.append(node.succeed(f"echo step {n}").strip())

    worker = threading.Thread(target=script)
    worker.start()
    for n in range(5):
        run(session, screen, f"echo typed {n}", rf"typed {n}\n")
    worker.join()
    assert results == [f"step {n}" for n in range(20)]
