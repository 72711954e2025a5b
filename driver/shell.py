"""Interactive root shells into a node, on channels of their own.

The backdoor on hvc0 carries framed commands and must never see a keystroke,
so an interactive shell runs on one of the node's spare virtconsoles
(guest `/dev/hvc1..hvc3`, host socket `<state>/tty1..3`, added by `Machine`).
Opening one takes a single backdoor command that starts, on `/dev/hvcN`:

    setsid -c sh -c '<login shell>; printf <exit mark>'

- `setsid -c` makes the console the shell's controlling terminal, so job
  control, Ctrl-C and Ctrl-Z work and reach the guest's foreground job.
- The login shell must not inherit an ignored SIGINT.  It is started as a
  background job of the (non-interactive) backdoor shell, and such jobs
  ignore SIGINT; bash would pass that on to every command, so Ctrl-C would
  do nothing.  GNU `env --default-signal` (NixOS, Debian) resets it; where
  only busybox is there, `login -p -f root` does (busybox login restores
  SIGINT, though not SIGQUIT).
- `TERM` is xterm-256color.  Guests without a terminfo database (the tiny
  guest) get the host's compiled entry in a private directory, so readline
  and full-screen programs know how to move the cursor.
- The wrapper prints a private OSC sequence when the shell exits; the host
  strips it from the stream and reports the shell as closed (the console
  itself never closes, it belongs to QEMU).

Resizing sends `stty rows R cols C` for the console through the backdoor;
the guest kernel then signals SIGWINCH to the foreground job.

NixOS guests need nothing extra: util-linux `setsid -c`, GNU `env` and
terminfo are in the base system, and the spare virtconsoles come from the
driver's own QEMU arguments.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence, cast

from driver.backdoor import Backdoor
from driver.errors import MachineError, ScriptCancelled, ShellError
from driver.fdwait import wait_ready
from driver.machine import SPARE_CHANNELS

TERM = "xterm-256color"
# Printed by the guest-side wrapper once the shell ended (an OSC sequence no
# terminal acts on, so nothing shows if it ever leaks).
EXIT_MARK = b"\x1b]7770;vmtui-shell-exited\x07"
OPEN_TIMEOUT = 60.0
# What the launch command prints when the guest lacks the console device.
NO_CONSOLE = "VMTUI-NO-CONSOLE"

# Hang up every process whose stdin is the console in $tty (the shell, its
# jobs).  `-ef` compares inodes without forking: a guest under TCG may run
# hundreds of processes.
_HANG_UP_CONSOLE = (
    'for p in /proc/[0-9]*; do if [[ $p/fd/0 -ef $tty ]]; then kill -HUP "${p#/proc/}" 2>/dev/null || true; fi; done'
)

_TERMINFO_DIRS = (Path("/usr/share/terminfo"), Path("/lib/terminfo"), Path("/etc/terminfo"))


class ShellMachine(Protocol):
    """What a shell needs from a machine (driver.machine.Machine)."""

    name: str
    backdoor: Backdoor | None

    def is_up(self) -> bool: ...

    def shell_socket_path(self, n: int) -> Path: ...

    def send_control(self, line: str) -> bool: ...

    def exclusive_channel(self) -> contextlib.AbstractContextManager[None]: ...



def host_terminfo(term: str = TERM) -> bytes | None:
    """The host's compiled terminfo entry for `term`, to hand to a guest that has none."""
    for directory in _TERMINFO_DIRS:
        path = directory / term[0] / term
        if path.is_file():
            return path.read_bytes()
    return None


def launch_command(channel: int, columns: int, lines: int, term: str = TERM,
                   terminfo: bytes | None = None) -> str:
    """The backdoor command that starts a login shell on `/dev/hvc<channel>`; prints its pid."""
    tty = f"/dev/hvc{channel}"
    mark = "".join(f"\\{b:03o}" for b in EXIT_MARK)
    parts = [
        f"tty={tty}",
        f'[ -c "$tty" ] || {{ echo {NO_CONSOLE}; exit 3; }}',
        # A shell an earlier pane left on this console: hang it up.  `-ef`
        # compares inodes without forking (hundreds of processes under TCG).
        _HANG_UP_CONSOLE,
        f"export TERM={shlex.quote(term)}",
    ]
    if terminfo:
        encoded = base64.b64encode(terminfo).decode()
        parts += [
            "for d in /run /dev/shm /tmp; do if [ -d $d ] && [ -w $d ]; then break; fi; done",
            "export TERMINFO=$d/vmtui-terminfo",
            f'if [ ! -s "$TERMINFO/{term[0]}/{term}" ]; then mkdir -p "$TERMINFO/{term[0]}" && '
            f'echo {encoded} | base64 -d >"$TERMINFO/{term[0]}/{term}"; fi',
        ]
    parts += [
        # A background job of a non-interactive shell ignores SIGINT, and so
        # would every command of the shell started from it: reset it (see the
        # module doc).
        "if env --default-signal=INT true 2>/dev/null; then start='env --default-signal=INT,QUIT bash -il'; "
        "elif command -v login >/dev/null; then start='login -p -f root'; "
        "else start='bash -il'; fi",
        # The size is set from inside, while the console is open: a console
        # nobody holds forgets its size.  `sane` undoes raw mode or a stuck
        # ^S an earlier program may have left.
        f"setsid -c sh -c \"stty sane rows {int(lines)} cols {int(columns)} 2>/dev/null; "
        f"$start; printf '{mark}'\" <>\"$tty\" >&0 2>&0 &",
        "echo $!",
    ]
    return "\n".join(parts)


class ShellSession:
    """One interactive shell on one spare console of one machine.

    `on_output(bytes)` and `on_closed(reason)` are called from the session's
    I/O thread.  `write` and `resize` never block the caller: keys go through
    an output buffer, resizes through a small control thread that talks to
    the backdoor (and waits there if a script command holds it).
    """

    def __init__(
        self,
        machine: ShellMachine,
        channel: int,
        *,
        on_output: Callable[[bytes], None],
        on_closed: Callable[[str], None] = lambda reason: None,
        term: str = TERM,
    ) -> None:
        self.machine = machine
        self.channel = channel
        self.term = term
        self._on_output = on_output
        self._on_closed = on_closed
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._fd_lock = threading.Lock()
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self._io_thread: threading.Thread | None = None
        self._control: queue.Queue[tuple[str, object]] = queue.Queue()
        self._control_thread: threading.Thread | None = None
        self._tail = b""  # output held back while it may be the start of EXIT_MARK
        self.pid: int | None = None
        self.opened_at: float | None = None
        self.closed_reason: str | None = None
        self._closing = threading.Event()
        # Set once nothing of this session is left on the guest's console:
        # only then may another session take the channel.
        self.released = threading.Event()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None and self.closed_reason is None

    # -- opening -----------------------------------------------------------------

    def open(self, columns: int = 80, lines: int = 24) -> None:
        """Connect to the console and start the shell (blocks on the backdoor)."""
        machine = self.machine
        if not machine.is_up():
            raise ShellError(f"{machine.name} is not running: start it (or wait until it has booted) first")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Connect first: what the guest writes to a console nobody listens to is lost.
            sock.connect(str(machine.shell_socket_path(self.channel)))
        except OSError as error:
            sock.close()
            raise ShellError(
                f"{machine.name}: cannot connect to console {self.channel} ({error}); "
                "was the node started by vmtui's driver?"
            ) from error
        sock.setblocking(False)
        self._sock = sock
        self._io_thread = threading.Thread(target=self._io_loop, name=f"shell-{machine.name}-{self.channel}",
                                           daemon=True)
        self._io_thread.start()
        try:
            status, output = self._guest(launch_command(self.channel, columns, lines, self.term,
                                                        host_terminfo(self.term)))
        except BaseException:
            self.mark_gone("the shell could not be started")
            raise
        if status != 0 or not output.strip().isdigit():
            self.mark_gone("the shell could not be started")
            if NO_CONSOLE in output:
                raise ShellError(
                    f"{machine.name} has no /dev/hvc{self.channel}: its kernel needs virtio_console, and the "
                    "spare consoles exist only when vmtui's driver started the node"
                )
            raise ShellError(f"{machine.name}: starting a shell on /dev/hvc{self.channel} failed (status {status})")
        self.pid = int(output.strip())
        self.opened_at = time.time()
        self._control_thread = threading.Thread(target=self._control_loop, daemon=True,
                                                name=f"shell-control-{machine.name}-{self.channel}")
        self._control_thread.start()

    def _guest(self, command: str) -> tuple[int, str]:
        machine = self.machine
        try:
            with machine.exclusive_channel():
                backdoor = machine.backdoor
                if backdoor is None or not backdoor.ready:
                    raise ShellError(f"{machine.name}: the backdoor shell is not connected")
                return backdoor.run(command, timeout=OPEN_TIMEOUT, deadline=time.monotonic() + OPEN_TIMEOUT + 30)
        except ScriptCancelled:
            raise ShellError(f"{machine.name}: a run is being cancelled; try again in a moment") from None

    # -- input and output ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue keys for the shell (never blocks)."""
        if not data or self.closed_reason is not None:
            return
        with self._out_lock:
            self._out += data
        self._wake()

    def resize(self, columns: int, lines: int) -> None:
        """Tell the guest the terminal's new size (asynchronously)."""
        if self.is_open:
            self._control.put(("resize", (int(columns), int(lines))))

    def _wake(self) -> None:
        # Under the lock: once closed, the descriptor number may belong to another file.
        with self._fd_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")

    def _io_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        reason = "the node stopped"
        try:
            while not self._closing.is_set():
                with self._out_lock:
                    pending = bool(self._out)
                readable, writable = wait_ready([sock, self._wake_r], [sock] if pending else [], 1.0)
                if self._wake_r in readable:
                    os.read(self._wake_r, 4096)
                if sock in readable:
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        data = None
                    if data == b"":
                        break  # QEMU closed the console: the node is gone
                    if data and self._deliver(data):
                        reason = "shell exited"
                        break
                if sock in writable:
                    with self._out_lock:
                        try:
                            sent = sock.send(self._out)
                        except BlockingIOError:
                            sent = 0
                        del self._out[:sent]
        except OSError:
            pass
        if not self._closing.is_set():
            # The shell exited or the node went away: nothing is left to hang up.
            self._finish(reason)
            self.released.set()

    def _deliver(self, data: bytes) -> bool:
        """Pass output on without the exit mark; True once the mark was seen."""
        data = self._tail + data
        self._tail = b""
        index = data.find(EXIT_MARK)
        if index >= 0:
            if index:
                self._on_output(data[:index])
            return True
        # Hold back a suffix that could be the start of a split mark.
        for keep in range(min(len(EXIT_MARK) - 1, len(data)), 0, -1):
            if EXIT_MARK.startswith(data[-keep:]):
                self._tail = data[-keep:]
                data = data[:-keep]
                break
        if data:
            self._on_output(data)
        return False

    # -- control thread (backdoor work that must not block the UI) ----------------------

    def _control_loop(self) -> None:
        while True:
            kind, value = self._control.get()
            if kind == "stop":
                return
            if kind == "resize":
                # Only the newest size matters.
                while True:
                    try:
                        kind2, value2 = self._control.get_nowait()
                    except queue.Empty:
                        break
                    if kind2 == "stop":
                        return
                    value = value2
                columns, lines = cast(tuple[int, int], value)
                # Through the control console: it is never busy.  The
                # backdoor (which may wait behind a long script command)
                # only when there is no control console.
                if not self.machine.send_control(f"winsize {self.channel} {lines} {columns}"):
                    with contextlib.suppress(MachineError):
                        self._guest(f"stty -F /dev/hvc{self.channel} rows {lines} cols {columns}")

    # -- closing -------------------------------------------------------------------------

    def close(self, reason: str = "closed") -> None:
        """End the shell (its guest processes get SIGHUP) and the connection."""
        if self.closed_reason is not None:
            return
        pid = self.pid
        self._shutdown(reason)
        if pid is not None and self.machine.is_up():
            # In the background: the backdoor may be busy with a script command.
            threading.Thread(target=self._hang_up_guest, daemon=True,
                             name=f"shell-hangup-{self.machine.name}-{self.channel}").start()
        else:
            self.released.set()

    def _hang_up_guest(self) -> None:
        # Best effort: the node may be going away at the same moment.
        try:
            with contextlib.suppress(Exception):
                self._guest(f"tty=/dev/hvc{self.channel}\n{_HANG_UP_CONSOLE}")
        finally:
            self.released.set()

    def mark_gone(self, reason: str) -> None:
        """The guest side vanished (restored checkpoint, reboot): close without touching the guest."""
        self._shutdown(reason)
        self.released.set()

    def _shutdown(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self._closing.set()
        self._wake()
        thread = self._io_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._control.put(("stop", None))
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        with self._fd_lock:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1
        self._on_closed(reason)


class Shells:
    """Every open shell of a test; hands out the spare consoles of each node."""

    def __init__(self, machines: Callable[[], Sequence[ShellMachine]]) -> None:
        self._machines = machines
        self._lock = threading.Lock()
        self._sessions: list[ShellSession] = []

    def _machine(self, name: str) -> ShellMachine:
        for machine in self._machines():
            if machine.name == name:
                return machine
        raise ShellError(f"no node named '{name}'")

    def sessions(self, machine: str | None = None) -> list[ShellSession]:
        """The open sessions (of `machine`)."""
        with self._lock:
            return [s for s in self._sessions
                    if s.closed_reason is None and (machine is None or s.machine.name == machine)]

    def open(
        self,
        machine: str,
        *,
        on_output: Callable[[bytes], None],
        on_closed: Callable[[str], None] = lambda reason: None,
        columns: int = 80,
        lines: int = 24,
    ) -> ShellSession:
        """Open a shell on the first free console of `machine` (blocks on the backdoor)."""
        node = self._machine(machine)
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            with self._lock:
                # A closed session keeps its console until its guest side is hung up.
                self._sessions = [s for s in self._sessions if not s.released.is_set()]
                mine = [s for s in self._sessions if s.machine is node]
                free = [n for n in SPARE_CHANNELS if n not in {s.channel for s in mine}]
                if free:
                    session = ShellSession(node, free[0], on_output=on_output, on_closed=on_closed)
                    self._sessions.append(session)
                    break
                releasing = [s for s in mine if s.closed_reason is not None]
            if not releasing or time.monotonic() > deadline:
                raise ShellError(f"{machine}: all {len(SPARE_CHANNELS)} shell consoles are in use; close one first")
            # A console is about to be free: its old shell is being hung up.
            releasing[0].released.wait(max(0.0, deadline - time.monotonic()))
        try:
            session.open(columns, lines)
        except BaseException:
            with self._lock:
                if session in self._sessions:
                    self._sessions.remove(session)
            raise
        return session

    def forget_machine(self, machine: str, reason: str) -> None:
        """The node's guest side is gone (reboot, crash): close its panes' sessions."""
        for session in self.sessions(machine):
            session.mark_gone(reason)

    def after_restore(self, machines: Sequence[str], checkpoint_created: float) -> None:
        """A checkpoint of `machines` was restored: shells opened after it no longer exist.

        The older ones are back as they were at the checkpoint, while their
        panes still show what happened since: a Ctrl-L has the shell (or
        the full-screen program in it) clear and redraw its screen.
        """
        for session in self.sessions():
            if session.machine.name not in machines:
                continue
            if (session.opened_at or 0) > checkpoint_created:
                session.mark_gone("the node was restored to a checkpoint taken before this shell was opened")
            elif session.is_open:
                session.write(b"\x0c")

    def close_all(self, *, hang_up: bool = True) -> None:
        """Close every shell; `hang_up=False` when the nodes are about to stop anyway."""
        for session in self.sessions():
            if hang_up:
                session.close("closed")
            else:
                session.mark_gone("vmtui is closing")
