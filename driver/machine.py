"""`Machine`: one QEMU node, with the Machine API NixOS test scripts call.

A machine spawns its NixOS-style start script (`run-<name>-vm`) with the
driver's QEMU arguments appended (reference §3.1) plus vmtui's spare shell
channels, then talks to QEMU over four connections:

- the backdoor root shell on hvc0 (`backdoor.py`), for commands;
- the serial console on QEMU's stdout (`console.py`);
- HMP on the `monitor` socket (`monitor.py`): keys, screendumps, links;
- QMP on the `qmp` socket (`qmp.py`): events.

Names, signatures, defaults and log messages follow the NixOS driver so that
unmodified test scripts run.  Differences, all in the direction of never
hanging: every wait checks that QEMU lives and that the run was not
cancelled; waits poll quickly at first and back off; the guest boot has a
deadline.

Thread safety: one lock serialises backdoor commands (the script thread and
a REPL evaluating in a paused frame never interleave on the channel); another
serialises lifecycle changes (`start_all()` starts machines from threads).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol

from driver import ocr, polling, processes, screen, script_context
from driver.backdoor import Backdoor
from driver.console import ConsoleReader
from driver.duration import Duration, as_seconds, deprecated, format_duration, optional_seconds, renamed_argument
from driver.errors import BackdoorTimeout, MachineDied, MachineError, RequestedAssertionFailed, ScriptCancelled, ShellRestarted
from driver.fdwait import wait_readable
from driver.events import EventBus, MachineState, MachineStateChanged, ScreenCaptured, WaitProgress
from driver.machine_efi import EfiVarsMixin
from driver.monitor import Monitor, key_name
from driver.patience import Patience
from driver.qmp import QMPConnection
from driver.runstate import ATTACHED, MachineRunstate, Runstate

# How long the guest may take from QEMU's start to the backdoor marker.
# NixOS waits forever; a TCG guest on a loaded machine can be slow, so the
# limit is generous, and it can be changed per machine.
DEFAULT_CONNECT_TIMEOUT = 900.0
# From spawning the start script to QEMU connecting to the monitor socket
# (the script may create disk images first).
START_TIMEOUT = 120.0
# Extra host-side time granted beyond a command's guest-side timeout.
HOST_DEADLINE_GRACE = 60.0
# A command without a guest-side timeout (succeed()'s default, as in NixOS)
# still gets a host-side deadline, so a hung guest ends in a clear error and
# never in an endless wait.  Long enough for real work; tunable.
UNBOUNDED_COMMAND_DEADLINE = float(os.environ.get("VMTUI_COMMAND_DEADLINE", "3600"))
# "Guest root shell did not produce any data yet..." interval, as in NixOS.
SILENCE_INTERVAL = 30.0
# Poll intervals of the wait_* methods: 4% of the time waited so far, at
# least 50 ms and at most 1 s.  A condition that becomes true after 2 s is
# noticed within about 0.1 s; a wait of many minutes polls once a second.
POLL_MIN = 0.05
POLL_MAX = 1.0
POLL_FRACTION = 0.04
# wait_for_text: seconds into an OCR attempt at which a fresh screenshot's
# plain text is read too, so text that appears while the slow processed
# variants of the attempt's screenshot are read is seen early.
OCR_RETRY_DELAYS = (2.0, 6.0)
# Spare hvc channels for interactive shells (guest /dev/hvc1..hvc3).
SPARE_CHANNELS = (1, 2, 3)
_START_SCRIPT_NAME = re.compile(r"run-(.+)-vm$")
# Path limit of a UNIX socket address (sun_path).
_MAX_SOCKET_PATH = 107


class MachineLogger(Protocol):
    """What a machine needs of the driver's logger (driver.logger.Logger fits)."""

    def log(self, msg: str, machine: str | None = None) -> None: ...

    def nested(self, msg: str, machine: str | None = None) -> ContextManager[Any]: ...

    def info(self, msg: str, machine: str | None = None) -> None: ...

    def warning(self, msg: str, machine: str | None = None) -> None: ...


def display_available() -> bool:
    """Whether QEMU could open a window, by the NixOS driver's rule (§3.1).

    Without one the driver appends `-nographic`.  A graphical node keeps its
    VGA card either way: its screen is read with screendumps, so the screen
    pane and OCR never need a QEMU window.
    """
    return any(name in os.environ for name in ("DISPLAY", "WAYLAND_DISPLAY"))


def describe_exit(returncode: int) -> str:
    """'QEMU exited with status 1' / 'QEMU was killed by signal 9 (SIGKILL)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"QEMU was killed by signal {-returncode} ({name})"
    return f"QEMU exited with status {returncode}"


def parse_systemctl_show(text: str) -> dict[str, str]:
    """`systemctl show` output (`Key=value` lines) as a dict.

    Values may contain `=` (`ExecStart={ path=... }`), so only the first one
    splits; lines without `=` are ignored.
    """
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and key:
            info[key] = value
    return info


def machine_name_from_start_command(start_command: str) -> str:
    """The node name a NixOS start script carries (`.../run-<name>-vm`), else "machine"."""
    match = _START_SCRIPT_NAME.search(start_command.strip())
    return match.group(1) if match else "machine"


def _qemu_option_path(path: Path) -> str:
    # In QEMU's option syntax a comma separates options; a literal one is doubled.
    return str(path).replace(",", ",,")


class Machine(EfiVarsMixin):
    """One QEMU node of a test."""

    def __init__(
        self,
        name: str | None = None,
        start_command: str | None = None,
        *,
        bus: EventBus | None = None,
        logger: MachineLogger | None = None,
        tmp_dir: Path | str | None = None,
        out_dir: Path | str | None = None,
        shared_dir: Path | str | None = None,
        keep_state: bool = False,
        allow_reboot: bool = False,
        cancel_event: threading.Event | None = None,
        connect_timeout: Duration = DEFAULT_CONNECT_TIMEOUT,
        keep_machine_state: bool | None = None,
        callbacks: list[Callable[[], Any]] | None = None,
    ) -> None:
        # Without a bus the script built this machine itself, NixOS style
        # (`QemuMachine(start_command=..., ...)`, often a subclass): the
        # running test supplies what the call did not (script_context.py).
        defaults = script_context.current() if bus is None else None
        if bus is None:
            if defaults is None:
                raise MachineError(
                    "a machine built without a bus needs a running vmtui test "
                    "(build it inside a test script, or pass bus=, logger=, tmp_dir=, out_dir=, shared_dir=)"
                )
            bus = defaults.bus
            logger = logger if logger is not None else defaults.logger
            tmp_dir = tmp_dir if tmp_dir is not None else defaults.tmp_dir
            out_dir = out_dir if out_dir is not None else defaults.out_dir
            shared_dir = shared_dir if shared_dir is not None else defaults.shared_dir
            cancel_event = cancel_event if cancel_event is not None else defaults.cancel_event
        if start_command is None:
            raise TypeError("a machine needs a start_command")
        if logger is None or tmp_dir is None or out_dir is None or shared_dir is None:
            raise TypeError("a machine needs logger, tmp_dir, out_dir and shared_dir")
        self.name = name or machine_name_from_start_command(start_command)
        name = self.name
        self.start_command = start_command
        self.bus = bus
        self.logger = logger
        self.tmp_dir = Path(tmp_dir)
        self.out_dir = Path(out_dir)
        self.shared_dir = Path(shared_dir)
        self.state_dir = self.tmp_dir / f"vm-state-{name}"
        self.keep_machine_state = keep_state if keep_machine_state is None else keep_machine_state
        self.allow_reboot = allow_reboot
        # When None, the driver-wide event of driver.polling is used.
        self.cancel_event = cancel_event
        self.connect_timeout = as_seconds(connect_timeout)
        # NixOS: checks run before every execute() and send_monitor_command().
        self.callbacks: list[Callable[[], Any]] = list(callbacks) if callbacks is not None else []

        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        # The lifecycle, changed only through its checked moves (driver/runstate.py).
        self.runstate = MachineRunstate(name)
        self.state = MachineState.CREATED   # the last state published
        self.monitor: Monitor | None = None
        self.shell: socket.socket | None = None
        self.backdoor: Backdoor | None = None
        self.qmp_client: QMPConnection | None = None
        # "kvm" or "tcg" while QEMU runs (QMP query-kvm), else None.
        self.accelerator: str | None = None
        self.console: ConsoleReader | None = None
        # The host end of the control console, connected on first use.
        self._control_sock: socket.socket | None = None
        self._control_lock = threading.Lock()

        self._command_lock = threading.RLock()
        self._lifecycle_lock = threading.RLock()

        self.reset_state_dir()
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        for path in (self._socket_path("monitor"), self._socket_path("shell")):
            if len(str(path)) > _MAX_SOCKET_PATH:
                raise MachineError(
                    f"{name}: the state directory path is too long for UNIX sockets: {path}"
                )
        self._publish(MachineState.CREATED)
        if defaults is not None:
            defaults.adopt(self)

    def __repr__(self) -> str:
        # NixOS's node class is `QemuMachine` (the name scripts import); a
        # script's own subclass shows its own name.
        kind = "QemuMachine" if type(self) is Machine else type(self).__name__
        return f"<{kind} '{self.name}'>"

    # -- NixOS attribute names ---------------------------------------------------

    @property
    def keep_vm_state(self) -> bool:
        return self.keep_machine_state

    @keep_vm_state.setter
    def keep_vm_state(self, value: bool) -> None:
        self.keep_machine_state = value

    @property
    def booted(self) -> bool:
        return self.runstate.state.booted

    @property
    def connected(self) -> bool:
        return self.runstate.state.connected

    @property
    def full_console_log(self) -> list[str]:
        """The serial lines since the last start(), a list as in NixOS."""
        return self.console.lines() if self.console is not None else []

    def shell_socket_path(self, n: int) -> Path:
        """The UNIX socket of spare channel `n` (guest `/dev/hvc<n>`), QEMU listening."""
        if n not in SPARE_CHANNELS:
            raise MachineError(f"{self.name}: no spare channel {n} (there are {SPARE_CHANNELS})")
        return self._socket_path(f"tty{n}")

    def reset_state_dir(self) -> None:
        """Make the state directory (0700): empty, unless the machine's state is kept."""
        if not self.keep_machine_state and self.state_dir.exists():
            self.logger.log(f"deleting machine state directory {self.state_dir}", machine=self.name)
            self.logger.log("if you want to keep the machine state, pass --keep-machine-state", machine=self.name)
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)

    def _socket_path(self, name: str) -> Path:
        return self.state_dir / name

    # -- logging and events ----------------------------------------------------------

    def log(self, msg: str) -> None:
        self.logger.log(msg, machine=self.name)

    def nested(self, msg: str, attrs: dict[str, str] | None = None) -> ContextManager[Any]:
        return self.logger.nested(msg, machine=self.name)

    def _publish(
        self, state: MachineState, *, exit_code: int | None = None, detail: str = "", accelerator: str | None = None
    ) -> None:
        self.state = state
        self.bus.publish(
            MachineStateChanged(
                self.name, state, pid=self.pid, exit_code=exit_code, detail=detail, accelerator=accelerator
            )
        )

    def _cancel(self) -> threading.Event | None:
        return self.cancel_event if self.cancel_event is not None else polling.current_cancel_event()

    def _cancelled(self) -> bool:
        event = self._cancel()
        return event is not None and event.is_set()

    def _raise_if_cancelled(self) -> None:
        if self._cancelled():
            raise ScriptCancelled(f"{self.name}: the run was cancelled")

    def _sleep(self, duration: Duration) -> None:
        seconds = as_seconds(duration)
        event = self._cancel()
        if event is None:
            time.sleep(seconds)
        elif event.wait(seconds):
            raise ScriptCancelled(f"{self.name}: the run was cancelled")

    def _run_callbacks(self) -> None:
        for callback in list(self.callbacks):
            callback()
        polling.check_active_conditions()

    def is_dead(self) -> str | None:
        """None while QEMU runs; otherwise why it is not running."""
        process = self.process
        if process is None:
            return "QEMU is not running"
        returncode = process.poll()
        if returncode is None:
            return None
        return describe_exit(returncode)

    def _console_tail(self, lines: int = 8) -> str:
        if self.console is None:
            return ""
        tail = [line for line in self.console.lines()[-lines:] if line.strip()]
        if not tail:
            return ""
        return "; last console lines:\n" + "\n".join(f"  {line}" for line in tail)

    # -- lifecycle -------------------------------------------------------------------

    def _start_argv(self, allow_reboot: bool | None = None) -> list[str]:
        """QEMU's command line; `allow_reboot` None means the machine's default."""
        state = self.state_dir
        extra = [
            "-qmp", f"unix:{_qemu_option_path(state / 'qmp')},server=on,wait=off",
            "-monitor", f"unix:{_qemu_option_path(state / 'monitor')}",
            "-chardev", f"socket,id=shell,path={_qemu_option_path(state / 'shell')}",
            "-device", "virtio-serial",
            "-device", "virtconsole,chardev=shell",
        ]
        for n in SPARE_CHANNELS:
            extra += [
                "-chardev",
                f"socket,id=vmtui-tty{n},path={_qemu_option_path(self.shell_socket_path(n))},server=on,wait=off",
                "-device", f"virtconsole,chardev=vmtui-tty{n}",
            ]
        # The control console, /dev/hvc4 (ports are numbered in the order
        # given): the backdoor helper's control loop reads it (backdoor.py).
        extra += [
            "-chardev",
            f"socket,id=vmtui-control,path={_qemu_option_path(self._socket_path('control'))},server=on,wait=off",
            "-device", "virtconsole,chardev=vmtui-control",
        ]
        extra += ["-device", "virtio-rng-pci", "-serial", "stdio"]
        if not (self.allow_reboot if allow_reboot is None else allow_reboot):
            extra.append("-no-reboot")
        if not display_available():
            extra.append("-nographic")
        try:
            words = shlex.split(self.start_command)
        except ValueError:
            words = []
        if len(words) == 1:
            # A plain script path: run it directly, no shell in between (a
            # start script `exec`s QEMU, so our child *is* QEMU).
            program = words[0]
            if "/" in program and not os.path.isabs(program):
                program = os.path.abspath(program)
            return [program, *extra]
        # A command line: bash, with the arguments appended as "$@".  bash
        # execs a lone simple command itself; for anything more complex a
        # shell stays in between, which the process-group kill still covers.
        shell = shutil.which("bash") or "/bin/sh"
        return [shell, "-c", f'{self.start_command} "$@"', f"run-{self.name}-vm", *extra]

    def _start_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TMPDIR=str(self.state_dir),
            USE_TMPDIR="1",
            SHARED_DIR=str(self.shared_dir),
        )
        return env

    @staticmethod
    def _listen(path: Path) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.setblocking(False)
        return listener

    def _accept(self, listener: socket.socket, what: str, deadline: float) -> socket.socket:
        while True:
            if wait_readable([listener], 0.1):
                connection, _ = listener.accept()
                return connection
            reason = self.is_dead()
            if reason is not None:
                raise MachineDied(f"{self.name}: {reason} before it connected to the {what}{self._console_tail()}")
            if time.monotonic() >= deadline:
                raise MachineError(
                    f"{self.name}: QEMU did not connect to the {what} within {START_TIMEOUT:.0f} seconds"
                    f"{self._console_tail()}"
                )
            self._raise_if_cancelled()

    def start(self, allow_reboot: bool = False) -> None:
        """Spawn QEMU and connect monitor, shell, QMP and console.  Non-blocking:
        it does not wait for the guest to boot (that is `connect()`).

        Returns at once if the machine runs already.  A machine whose QEMU
        exited is started afresh.  `allow_reboot` holds for this start only,
        as in NixOS: a later plain `start()` gets `-no-reboot` again (unless
        the machine was made with `allow_reboot=True`).
        """
        with self._lifecycle_lock:
            if self.booted and self.is_dead() is None:
                return
            if self.process is not None:
                self._teardown()
            with self.nested("starting vm"):
                self._spawn(allow_reboot or self.allow_reboot)

    def _spawn(self, allow_reboot: bool) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("qmp", "monitor", "shell", "control", *(f"tty{n}" for n in SPARE_CHANNELS)):
            with contextlib.suppress(FileNotFoundError):
                self._socket_path(name).unlink()
        monitor_listener = self._listen(self._socket_path("monitor"))
        shell_listener = self._listen(self._socket_path("shell"))
        argv = self._start_argv(allow_reboot)
        self.runstate.move(Runstate.STARTING)
        try:
            try:
                self.process = processes.spawn(
                    argv,
                    cwd=self.state_dir,
                    env=self._start_env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    # QEMU's own complaints belong next to the guest's output.
                    stderr=subprocess.STDOUT,
                )
            except OSError as error:
                raise MachineError(f"{self.name}: cannot run the start command {self.start_command!r}: {error}") from error
            process = self.process
            # Helpers the start script left behind (virtiofsd) end with QEMU.
            processes.end_group_with_leader(process)
            assert process.stdout is not None
            self.console = ConsoleReader(
                self.name,
                process.stdout.fileno(),
                bus=self.bus,
                on_eof=lambda: self._on_qemu_exit(process),
            )
            self.console.start()
            self.pid = process.pid
            self._publish(MachineState.BOOTING, detail="starting QEMU")

            deadline = time.monotonic() + START_TIMEOUT
            monitor_socket = self._accept(monitor_listener, "monitor socket", deadline)
            # The peer of the monitor connection is QEMU itself, even when a
            # shell sits between us and it.
            peer_pid, _uid, _gid = struct.unpack(
                "3i", monitor_socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            )
            self.pid = peer_pid or process.pid
            self.monitor = Monitor(monitor_socket, self.name, is_dead=self.is_dead, cancelled=self._cancelled)
            self.shell = self._accept(shell_listener, "backdoor shell socket", deadline)
            self.backdoor = Backdoor(
                self.shell,
                self.name,
                is_dead=self.is_dead,
                cancelled=self._cancelled,
                log=self.log,
            )
            self.qmp_client = QMPConnection(self.name)
            self.qmp_client.connect(
                str(self._socket_path("qmp")),
                timeout=max(1.0, deadline - time.monotonic()),
                is_dead=self.is_dead,
            )
            self.monitor.wait_for_prompt(max(1.0, deadline - time.monotonic()))
            if not self.runstate.move(Runstate.BOOTED, only_from=[Runstate.STARTING]):
                raise MachineDied(f"{self.name}: {self.is_dead() or 'QEMU stopped'} while starting")
        except BaseException:
            self._abort_start()
            raise
        finally:
            monitor_listener.close()
            shell_listener.close()
        self.accelerator = self._ask_accelerator()
        self.log(f"QEMU running (pid {self.pid})")
        self._publish(MachineState.BOOTING, detail="waiting for the backdoor", accelerator=self.accelerator)

    def _ask_accelerator(self) -> str | None:
        """"kvm" or "tcg" from QEMU; None (and a log line) when QEMU does not say."""
        assert self.qmp_client is not None
        try:
            return self.qmp_client.accelerator(timeout=10.0)
        except MachineError as error:
            # Only a label for front ends: a start goes on without it.
            self.log(f"cannot tell the accelerator: {error}")
            return None

    def _abort_start(self) -> None:
        if self.process is not None:
            self.runstate.move(Runstate.STOPPING)
            processes.registry.terminate(self.process, grace=2.0)
        self._teardown()

    def _on_qemu_exit(self, process: subprocess.Popen[bytes]) -> None:
        """Runs on the console thread when QEMU's output ends (QEMU exited)."""
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # The pipe closed but the process lives on: nothing to report.
            return
        if process is not self.process:
            return
        reason = describe_exit(returncode)
        if self.runstate.state is Runstate.STOPPING or processes.ending():
            # Ended on purpose (a shutdown, or vmtui ending every child after
            # a signal): not the guest's news, and never the reason for a failure.
            pass
        elif returncode == 0:
            # A guest that powered itself off: news, not a warning (NixOS says nothing).
            self.logger.info(reason, machine=self.name)
        else:
            self.logger.warning(f"{reason}{self._console_tail(5)}", machine=self.name)
        self.runstate.move(Runstate.DIED, only_from=[Runstate.STARTING, Runstate.BOOTED, Runstate.CONNECTED])
        self._publish(MachineState.EXITED, exit_code=returncode, detail=reason)

    def _teardown(self) -> None:
        """Close every connection to a QEMU that has exited (or is ending)."""
        for closer in (
            self.backdoor.close if self.backdoor else None,
            self.monitor.close if self.monitor else None,
            self.qmp_client.close if self.qmp_client else None,
        ):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()
        self.backdoor = None
        self.shell = None
        self.monitor = None
        self.qmp_client = None
        with self._control_lock:
            self._close_control()
        process = self.process
        if process is not None:
            # Also when QEMU has exited: its group may hold the start
            # script's helpers still (a quick no-op when it is empty).
            processes.registry.terminate(process, grace=5.0)
        if self.console is not None:
            self.console.join(5.0)
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.runstate.move(Runstate.STOPPED)
        self.pid = None
        self.accelerator = None

    def connect(self) -> None:
        """Wait until the guest's root shell is up (starting QEMU if needed)."""
        if self.connected:
            return
        if not self.booted:
            self.start()
        with self._locked_channel():
            if self.connected:
                return
            backdoor = self._require_backdoor()
            with self.nested("waiting for the VM to finish booting"):
                started = time.monotonic()

                def on_silence(waited: float) -> None:
                    self.log("Guest root shell did not produce any data yet...")
                    self.log(
                        "  To debug, enter the VM and run 'systemctl status backdoor.service'."
                    )
                    self.bus.publish(
                        WaitProgress(self.name, "waiting for the VM to finish booting", waited, self.connect_timeout, 0)
                    )

                try:
                    backdoor.wait_for_marker(
                        started + self.connect_timeout if self.connect_timeout else None,
                        on_silence=on_silence,
                        silence_interval=SILENCE_INTERVAL,
                    )
                except MachineDied as error:
                    self._settle_exit()
                    raise MachineDied(f"{error}{self._console_tail()}") from None
                if not self.runstate.move(Runstate.CONNECTED, only_from=[Runstate.BOOTED]):
                    self._settle_exit()
                    raise MachineDied(f"{self.name}: {self.is_dead() or 'the machine stopped'} while connecting")
                self.log("connected to guest root shell")
                self.log(f"(connecting took {time.monotonic() - started:.2f} seconds)")
        self._publish(MachineState.CONNECTED)

    def _settle_exit(self) -> None:
        """Let the console thread report the exit (EXITED) before an error
        about it propagates, so listeners see the state before the failure."""
        if self.console is not None:
            self.console.join(2.0)

    def _require_backdoor(self) -> Backdoor:
        self.runstate.require(*ATTACHED)
        if self.backdoor is None:
            raise MachineError(f"{self.name}: the machine is not running")
        return self.backdoor

    def _require_monitor(self) -> Monitor:
        self.runstate.require(*ATTACHED)
        if self.monitor is None:
            raise MachineError(f"{self.name}: the machine is not running")
        return self.monitor

    @contextlib.contextmanager
    def _locked_channel(self) -> Iterator[None]:
        """The per-machine command lock, acquired without ignoring a cancel."""
        while not self._command_lock.acquire(timeout=0.1):
            self._raise_if_cancelled()
        try:
            yield
        finally:
            self._command_lock.release()

    def exclusive_channel(self) -> ContextManager[None]:
        """Hold the backdoor across several steps (checkpoints, opening shells):
        no other thread runs a command on this machine until the block ends."""
        return self._locked_channel()

    def is_up(self) -> bool:
        return self.booted and self.connected and self.is_dead() is None

    def wait_for_shutdown(self) -> None:
        """Block until QEMU exits (it does not ask for a shutdown itself)."""
        if not self.booted:
            return
        with self.nested("waiting for the VM to power off"):
            process = self.process
            while process is not None and process.poll() is None:
                self._sleep(0.05)
            with self._lifecycle_lock:
                self._teardown()

    def shutdown(self) -> None:
        """Power the guest off through its root shell and wait for QEMU to exit."""
        if not self.booted:
            return
        self.runstate.move(Runstate.STOPPING)
        self._publish(MachineState.SHUTTING_DOWN, detail="poweroff")
        backdoor = self._require_backdoor()
        with self._locked_channel():
            # Raw, without the framing: the shell dies before it could reply.
            backdoor.send_raw("poweroff\n", deadline=time.monotonic() + 30)
        self.wait_for_shutdown()

    def crash(self) -> None:
        """Simulate a sudden power loss: quit QEMU through the monitor."""
        if not self.booted:
            return
        with self.nested("simulate forced crash"):
            self.runstate.move(Runstate.STOPPING)
            self._publish(MachineState.SHUTTING_DOWN, detail="crash")
            with contextlib.suppress(MachineDied):
                self._require_monitor().send("quit")
            self.wait_for_shutdown()

    def reboot(self) -> None:
        """Press Ctrl-Alt-Delete; the next command waits for the guest to come back.

        Only meaningful after `start(allow_reboot=True)`: otherwise QEMU
        exits when the guest reboots.
        """
        if not self.booted:
            return
        with self.nested("rebooting"):
            self.send_key("ctrl-alt-delete")
            self._forget_shell("rebooting")

    def _forget_shell(self, detail: str) -> None:
        self.runstate.move(Runstate.BOOTED, only_from=[Runstate.CONNECTED])
        if self.backdoor is not None:
            self.backdoor.forget_connection()
        self._publish(MachineState.BOOTING, detail=detail)

    def release(self) -> None:
        """End QEMU (SIGTERM, then SIGKILL) and close everything.  Idempotent."""
        with self._lifecycle_lock:
            if self.process is None:
                return
            self.runstate.move(Runstate.STOPPING)
            if self.process.poll() is None:
                self._publish(MachineState.SHUTTING_DOWN, detail="releasing")
            self._teardown()
            self.process = None

    # -- commands --------------------------------------------------------------------

    def execute(
        self,
        command: object,
        check_return: bool = True,
        check_output: bool = True,
        timeout: Duration | None = 900,
    ) -> tuple[int, str]:
        """Run `command` in the guest; returns (exit status, stdout).

        `check_output=False` returns (-2, "") without waiting;
        `check_return=False` returns status -1.  `timeout` is guest-side
        (`timeout N`, status 124), None for none.  Any object is formatted
        into the command line, as NixOS does (`pathlib.Path`, `int`).
        """
        command = f"{command}"
        timeout = optional_seconds(timeout)
        self._run_callbacks()
        self.connect()
        deadline = time.monotonic() + (
            UNBOUNDED_COMMAND_DEADLINE if timeout is None else timeout + HOST_DEADLINE_GRACE
        )
        with self._locked_channel():
            backdoor = self._require_backdoor()
            try:
                return backdoor.run(
                    command,
                    timeout=timeout,
                    check_return=check_return,
                    check_output=check_output,
                    deadline=deadline,
                )
            except MachineDied:
                self._settle_exit()
                raise
            except (ScriptCancelled, BackdoorTimeout):
                # The command goes on in the guest and would hold the
                # backdoor until it ends: have it killed.
                if backdoor.awaited_request is not None:
                    self._kill_guest_command(backdoor.awaited_request)
                raise
            finally:
                if not backdoor.ready and self.connected:
                    # The marker came again: the guest rebooted under us.
                    # The backdoor remembers that it saw it; connect() goes on
                    # from there.
                    self.runstate.move(Runstate.BOOTED, only_from=[Runstate.CONNECTED])
                    self._publish(MachineState.BOOTING, detail="the guest rebooted")

    def _kill_guest_command(self, request_id: int) -> None:
        """Have the guest kill command `request_id` and every process it started.

        Best effort: a guest too hung to answer its backdoor may not read
        its control console either; the stale reply is skipped in any case.
        """
        if not self.send_control(f"kill {request_id}"):
            self.log("could not stop the abandoned command in the guest (no control console)")

    def send_control(self, line: str) -> bool:
        """Send one line to the guest's control loop (/dev/hvc4); False if it cannot be sent.

        The loop (installed with the backdoor helper) understands
        `kill <request id>` and `winsize <hvc number> <rows> <columns>`;
        it answers nothing.  Unlike the backdoor it is never busy, so these
        take effect while a script command runs.
        """
        if "\n" in line:
            raise ValueError("a control line is one line")
        with self._control_lock:
            for _attempt in range(2):
                try:
                    if self._control_sock is None:
                        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        sock.settimeout(2.0)
                        sock.connect(str(self._socket_path("control")))
                        self._control_sock = sock
                    self._control_sock.sendall(f"{line}\n".encode())
                    return True
                except OSError:
                    # QEMU restarted (a new socket) or went away: retry once.
                    self._close_control()
            return False

    def _close_control(self) -> None:
        if self._control_sock is not None:
            with contextlib.suppress(OSError):
                self._control_sock.close()
            self._control_sock = None

    def succeed(self, *commands: str, timeout: Duration | None = None) -> str:
        """Run each command; fail the test unless all exit 0.  Returns their output."""
        output = ""
        for command in commands:
            with self.nested(f"must succeed: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status != 0:
                    self.log(f"output: {out}")
                    raise RequestedAssertionFailed(f"command `{command}` failed (exit code {status})")
                output += out
        return output

    def fail(self, *commands: str, timeout: Duration | None = None) -> str:
        """Run each command; fail the test if any exits 0.  Returns their output."""
        output = ""
        for command in commands:
            with self.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status == 0:
                    raise RequestedAssertionFailed(f"command `{command}` unexpectedly succeeded")
                output += out
        return output

    def _poll(self, what: str, check: Callable[[bool], bool], timeout: Duration | None) -> None:
        """Call `check(last_try)` until it returns True; raise at `timeout`.

        Polls quickly at first and backs off (see POLL_*), but never gives
        up sooner than NixOS would (`driver.patience`: as many attempts and
        as much time, however long each check takes), then makes the last
        `check(True)`.  Publishes a `WaitProgress` per failed attempt;
        honours the cancel event.  A guest that reboots meanwhile is waited
        for rather than treated as failure.
        """
        timeout = optional_seconds(timeout)
        started = time.monotonic()
        patience = Patience(timeout) if timeout is not None else None
        attempts = 0
        while True:
            self._raise_if_cancelled()
            last_try = patience is not None and patience.exhausted()
            attempts += 1
            began = time.monotonic()
            try:
                if check(last_try):
                    return
            except ShellRestarted:
                if last_try:
                    raise
            if patience is not None:
                patience.record_attempt(time.monotonic() - began)
            elapsed = time.monotonic() - started
            self.bus.publish(WaitProgress(self.name, what, elapsed, timeout, attempts))
            if last_try:
                raise RequestedAssertionFailed(
                    f"{self.name}: {what}: action timed out after {elapsed:.2f} seconds (timeout={format_duration(timeout or 0)})"
                )
            interval = min(max(POLL_MIN, elapsed * POLL_FRACTION), POLL_MAX)
            if patience is not None and patience.attempts >= patience.timeout:
                # Only time is missing: make the last try when it is up.
                interval = min(interval, patience.remaining())
            self._sleep(interval)

    def wait_until_succeeds(self, command: str, timeout: Duration = 900) -> str:
        """Retry `command` until it exits 0; returns its output."""
        output = ""

        def check(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status == 0

        with self.nested(f"waiting for success: {command}"):
            self._poll(f"waiting for success: {command}", check, timeout)
        return output

    def wait_until_fails(self, command: str, timeout: Duration = 900) -> str:
        """Retry `command` until it exits non-zero; returns its output."""
        output = ""

        def check(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0

        with self.nested(f"waiting for failure: {command}"):
            self._poll(f"waiting for failure: {command}", check, timeout)
        return output

    def sleep(self, duration: Duration | None = None, *, secs: Duration | None = None) -> None:
        """Sleep in the guest (guest time); `secs` is the deprecated spelling."""
        chosen = renamed_argument("sleep", "secs", "duration", secs, duration)
        if chosen is None:
            raise TypeError("sleep() missing the duration")
        self.succeed(f"sleep {format_duration(chosen)}")

    # -- systemd ---------------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """Run `systemctl <q>`, for `user`'s manager when given."""
        if user is not None:
            escaped = q.replace("'", "\\'")
            return self.execute(
                f"su -l {user} --shell /bin/sh -c "
                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {escaped}'"
            )
        return self.execute(f"systemctl {q}")

    def start_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"start {jobname}", user)

    def stop_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"stop {jobname}", user)

    def wait_for_job(self, jobname: str, user: str | None = None, timeout: Duration = 900) -> None:
        """Older name of `wait_for_unit` (scripts of the 2021-2023 drivers call it)."""
        self.wait_for_unit(jobname, user, timeout)

    @staticmethod
    def _user_suffix(user: str | None) -> str:
        return f' under user "{user}"' if user is not None else ""

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        status, lines = self.systemctl(f'--no-pager show "{unit}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'retrieving systemctl info for unit "{unit}"{self._user_suffix(user)} '
                f"failed with exit code {status}"
            )
        return parse_systemctl_show(lines)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        status, lines = self.systemctl(f'--no-pager show "{unit}" --property="{property}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'retrieving systemctl property "{property}" for unit "{unit}"'
                f"{self._user_suffix(user)} failed with exit code {status}"
            )
        info = parse_systemctl_show(lines)
        if property not in info:
            raise RequestedAssertionFailed(
                f'systemctl show printed no property "{property}" for unit "{unit}": {lines!r}'
            )
        return info[property]

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        with self.nested(f"checking if unit '{unit}' has reached state '{require_state}'"):
            state = self.get_unit_info(unit).get("ActiveState", "")
            if state != require_state:
                raise RequestedAssertionFailed(
                    f"Expected unit '{unit}' to to be in state '{require_state}' "
                    f"but it is in state '{state}'"
                )

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Duration = 900) -> None:
        """Wait until `unit` is active; fail at once if it failed, or is
        inactive with no job pending that could start it."""

        def check(_last_try: bool) -> bool:
            state = self.get_unit_info(unit, user).get("ActiveState", "")
            if state == "failed":
                raise RequestedAssertionFailed(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                _status, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs:
                    # Re-read: the unit may have started between the two calls.
                    state = self.get_unit_info(unit, user).get("ActiveState", "")
                    if state == "inactive":
                        raise RequestedAssertionFailed(
                            f'unit "{unit}" is inactive and there are no pending jobs'
                        )
            return state == "active"

        what = f"waiting for unit {unit}" + (f" with user {user}" if user is not None else "")
        with self.nested(what):
            self._poll(what, check, timeout)

    # -- files, ports, sockets ------------------------------------------------------------

    def wait_for_file(self, filename: str, timeout: Duration = 900) -> None:
        """Wait until `filename` exists in the guest."""

        def check(_last_try: bool) -> bool:
            status, _ = self.execute(f"test -e {filename}")
            return status == 0

        what = f"waiting for file '{filename}'"
        with self.nested(what):
            self._poll(what, check, timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: Duration = 900) -> None:
        """Wait until something listens on TCP `addr:port` (checked in the guest)."""

        def check(_last_try: bool) -> bool:
            status, _ = self.execute(f"nc -z {addr} {port}")
            return status == 0

        what = f"waiting for TCP port {port} on {addr}"
        with self.nested(what):
            self._poll(what, check, timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: Duration = 900) -> None:
        """Wait until nothing listens on TCP `addr:port` any more."""

        def check(_last_try: bool) -> bool:
            status, _ = self.execute(f"nc -z {addr} {port}")
            return status != 0

        what = f"waiting for TCP port {port} on {addr} to be closed"
        with self.nested(what):
            self._poll(what, check, timeout)

    def wait_for_open_unix_socket(
        self, addr: str, is_datagram: bool = False, timeout: Duration = 900
    ) -> None:
        """Wait until a UNIX socket at `addr` accepts connections."""
        flags = "-uzU" if is_datagram else "-zU"

        def check(_last_try: bool) -> bool:
            status, _ = self.execute(f"nc {flags} {addr}")
            return status == 0

        what = f"waiting for UNIX-domain {'datagram' if is_datagram else 'stream'} on '{addr}'"
        with self.nested(what):
            self._poll(what, check, timeout)

    # -- serial console ------------------------------------------------------------------

    def wait_for_console_text(self, regex: str, timeout: Duration | None = None) -> None:
        """Wait for serial output matching `regex` (output since start() that
        no earlier wait consumed counts)."""
        with self.nested(f"waiting for {regex} to appear on console"):
            if self.console is None:
                self.start()
            assert self.console is not None
            self.console.wait_for_text(regex, optional_seconds(timeout), self._cancel())

    def get_console_log(self) -> str:
        """The serial output since the last start() (the newest 100k lines)."""
        return self.console.text() if self.console is not None else ""

    def send_console(self, chars: str) -> None:
        """Type `chars` on the guest's serial console (QEMU's stdin)."""
        self.runstate.require(*ATTACHED)
        process = self.process
        if process is None or process.stdin is None or process.poll() is not None:
            raise MachineError(f"{self.name}: the machine is not running")
        try:
            process.stdin.write(chars.encode())
            process.stdin.flush()
        except (BrokenPipeError, ValueError) as error:
            raise MachineDied(f"{self.name}: {self.is_dead() or 'QEMU closed its console'}") from error

    def console_interact(self) -> None:
        raise MachineError(
            f"{self.name}: console_interact() is not available in vmtui; "
            "use the node's console pane (or send_console())"
        )

    def shell_interact(self, address: str | None = None) -> None:
        raise MachineError(
            f"{self.name}: shell_interact() is not available in vmtui; "
            "use the node's shell pane, which has a channel of its own"
        )

    # -- monitor, keys, screen ------------------------------------------------------------

    def send_monitor_command(self, command: object) -> str:
        """Run an HMP command; returns its output."""
        command = f"{command}"
        self._run_callbacks()
        if not self.booted:
            self.start()
        try:
            return self._require_monitor().send(command)
        except MachineDied:
            self._settle_exit()
            raise

    def send_key(self, key: str, delay: Duration | None = 0.01, log: bool = True) -> None:
        """Press a key: a character (`A`, `!`, newline) or a QEMU key name."""
        name = key_name(key)
        context = self.nested(f"sending key {name!r}") if log else contextlib.nullcontext()
        with context:
            self.send_monitor_command(f"sendkey {name}")
            if delay is not None:
                self._sleep(delay)

    def send_chars(self, chars: str, delay: Duration | None = 0.01) -> None:
        """Type `chars`, one key per character."""
        with self.nested(f"sending keys {chars!r}"):
            for char in chars:
                self.send_key(char, delay, log=False)

    def is_graphical(self) -> bool:
        """Whether QEMU has a display device to take a screenshot of.

        Asked quietly (no log block): a dump of the screen to /dev/null,
        which QEMU refuses when it has no console to dump.
        """
        if not self.booted or self.is_dead() is not None:
            return False
        return not self._require_monitor().send("screendump /dev/null").strip()

    @contextlib.contextmanager
    def _screendump(self) -> Iterator[Path]:
        """Dump the screen through HMP, as NixOS does; the PPM's path, removed afterwards."""
        with screen.dump_file(self.state_dir, "screendump") as dump:
            answer = self.send_monitor_command(f"screendump {dump}")
            if not dump.exists():
                raise MachineError(
                    f"{self.name}: screendump failed: {answer.strip() or 'QEMU wrote no image'}"
                )
            yield dump

    @contextlib.contextmanager
    def _fresh_screendump(self) -> Iterator[Path]:
        """A dump for an OCR worker thread: straight to the monitor (thread
        safe), without the polling callbacks, which belong to the script."""
        with screen.dump_file(self.state_dir, "screendump") as dump:
            answer = self._require_monitor().send(f"screendump {dump}")
            if not dump.exists():
                raise MachineError(
                    f"{self.name}: screendump failed: {answer.strip() or 'QEMU wrote no image'}"
                )
            yield dump

    def _publish_screen(self, title: str, png: bytes, size: tuple[int, int], path: Path | None = None) -> None:
        current = getattr(self.logger, "current_block_id", None)
        block_id = current() if callable(current) else None
        self.bus.publish(
            ScreenCaptured(self.name, title, size[0], size[1], png, str(path) if path else None, block_id)
        )

    def screenshot(self, filename: str) -> None:
        """Save the screen as PNG (`.png` is added to a name without a dot;
        a name without `/` goes into the output directory)."""
        path = screen.screenshot_path(filename, self.out_dir)
        with self.nested(f"making screenshot {path}", {"image": path.name}):
            with self._screendump() as dump:
                try:
                    frame = screen.frame_from_ppm(dump.read_bytes())
                except ValueError as error:
                    raise MachineError(f"{self.name}: cannot convert the screendump: {error}") from error
            png = frame.png()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            self._publish_screen(f"screenshot {path.name}", png, (frame.width, frame.height), path)

    def get_screen_text_variants(self) -> list[str]:
        """What OCR reads on the screen: the plain screenshot and two
        pre-processed variants (order unspecified, as in NixOS)."""
        with self._screendump() as dump:
            return ocr.screen_text_variants(dump)

    def get_screen_text(self) -> str:
        """What OCR reads on the plain screenshot."""
        with self._screendump() as dump:
            return ocr.screen_text(dump)

    def wait_for_text(self, regex: str, timeout: Duration = 900) -> None:
        """Wait until OCR reads text matching `regex` on the screen.

        Each attempt stops at the first variant whose text matches (NixOS
        reads all three first), and also reads fresh screenshots a few
        seconds into the attempt (OCR_RETRY_DELAYS); the screen it matched
        on is published.
        """
        ocr.require_tesseract()
        pattern = re.compile(regex)

        def check(last_try: bool) -> bool:
            with self._screendump() as dump:
                outcome = ocr.first_match(
                    dump, pattern, fresh=self._fresh_screendump, retry_delays=OCR_RETRY_DELAYS
                )
                if outcome.matched:
                    frame = screen.frame_from_ppm(outcome.fresh_image or dump.read_bytes())
                    self._publish_screen(f"matched {regex}", frame.png(), (frame.width, frame.height))
            if not outcome.matched and last_try:
                self.log(f"Last OCR attempt failed. Text was: {outcome.texts}")
            return outcome.matched

        what = f"waiting for {regex} to appear on screen"
        with self.nested(what):
            self._poll(what, check, timeout)

    # -- the screen for viewers (no polling callbacks, no log entries) -------------------

    def screen_frame(self) -> screen.Frame:
        """The screen now, through QMP: for a viewer polling it while a
        script runs (HMP may be busy with the script's commands)."""
        client = self.qmp_client
        if client is None or not client.connected:
            raise MachineError(f"{self.name}: the machine is not running")
        return screen.grab_qmp(client.execute, self.state_dir)

    def press_key(self, key: str) -> None:
        """Press one key (a `sendkey` name such as `ctrl-c`), through QMP,
        without a log entry: for typing into a screen viewer."""
        client = self.qmp_client
        if client is None or not client.connected:
            raise MachineError(f"{self.name}: the machine is not running")
        client.execute("human-monitor-command", {"command-line": f"sendkey {key_name(key)}"})

    def get_tty_text(self, tty: str) -> str:
        """The text on virtual terminal `tty`, folded to its width."""
        _status, output = self.execute(
            f"fold -w$(stty -F /dev/tty{tty} size | awk '{{print $2}}') /dev/vcs{tty}"
        )
        return output

    def wait_until_tty_matches(self, tty: str, regexp: str, timeout: Duration = 900) -> None:
        pattern = re.compile(regexp)

        def check(last_try: bool) -> bool:
            text = self.get_tty_text(tty)
            if last_try:
                self.log(f"Last chance to match /{regexp}/ on TTY{tty}, which currently contains: {text}")
            return pattern.search(text) is not None

        what = f"waiting for {regexp} to appear on tty {tty}"
        with self.nested(what):
            self._poll(what, check, timeout)

    def dump_tty_contents(self, tty: str) -> None:
        """Copy the text of a virtual terminal into the guest's journal."""
        self.execute(f"fold -w 80 /dev/vcs{tty} | systemd-cat")

    def wait_for_x(self, timeout: Duration = 900) -> None:
        """Wait until the X server is up (journal message and socket)."""

        def check(_last_try: bool) -> bool:
            status, _ = self.execute(
                'journalctl -b SYSLOG_IDENTIFIER=systemd | grep "Reached target Current graphical"'
            )
            if status != 0:
                return False
            status, _ = self.execute("[ -e /tmp/.X11-unix/X0 ]")
            return status == 0

        with self.nested("waiting for the X11 server"):
            self._poll("waiting for the X11 server", check, timeout)

    def get_window_names(self) -> list[str]:
        return self.succeed(
            r"xwininfo -root -tree | sed 's/.*0x[0-9a-f]* \"\([^\"]*\)\".*/\1/; t; d'"
        ).splitlines()

    def wait_for_window(self, regexp: str, timeout: Duration = 900) -> None:
        pattern = re.compile(regexp)

        def check(last_try: bool) -> bool:
            names = self.get_window_names()
            if last_try:
                self.log(f"Last chance to match {regexp} on the window list, which currently contains: {', '.join(names)}")
            return any(pattern.search(name) for name in names)

        what = "waiting for a window to appear"
        with self.nested(what):
            self._poll(what, check, timeout)

    # -- network ---------------------------------------------------------------------------

    def forward_port(self, host_port: int = 8080, guest_port: int = 80) -> None:
        """Forward a host TCP port to the guest through the user-mode NIC."""
        self.send_monitor_command(f"hostfwd_add tcp::{host_port}-:{guest_port}")

    def _vlan_nic(self) -> str:
        """The first NIC plugged into a VDE switch (NixOS: `virtio-net-pci.1`)."""
        listing = self.send_monitor_command("info network")
        nic = None
        for line in listing.splitlines():
            if not line.startswith((" ", "\t")):
                nic = line.split(":", 1)[0].strip()
            elif "type=vde" in line and nic:
                return nic
        return "virtio-net-pci.1"

    def block(self) -> None:
        """Unplug the first VLAN NIC (eth1); the user-mode NIC stays up."""
        self.send_monitor_command(f"set_link {self._vlan_nic()} off")

    def unblock(self) -> None:
        self.send_monitor_command(f"set_link {self._vlan_nic()} on")

    # -- QMP ---------------------------------------------------------------------------------

    def wait_for_qmp_event(
        self, event_filter: Callable[[dict[str, Any]], bool], timeout: Duration = 60 * 10
    ) -> dict[str, Any]:
        """Skip QMP events until `event_filter(event)` is true; return that event."""
        if not self.booted:
            self.start()
        if self.qmp_client is None:
            raise MachineError(f"{self.name}: QMP is not connected")
        return self.qmp_client.wait_for_event(
            event_filter, as_seconds(timeout), cancel=self._cancel(), is_dead=self.is_dead
        )

    # -- files -------------------------------------------------------------------------------

    def _guest_shared_path(self, host_path: Path) -> Path:
        return Path("/tmp/shared") / host_path.relative_to(self.shared_dir)

    def copy_from_host(self, source: str, target: str) -> None:
        """Copy a host file or directory to `target` in the guest, through the
        shared directory (guest `/tmp/shared`)."""
        host_source = Path(source)
        guest_target = Path(target)
        with tempfile.TemporaryDirectory(dir=self.shared_dir) as temp:
            host_temp = Path(temp)
            guest_temp = self._guest_shared_path(host_temp)
            self.succeed(f"mkdir -p {shlex.quote(str(guest_temp))}")
            intermediate = host_temp / host_source.name
            if host_source.is_dir():
                shutil.copytree(host_source, intermediate)
            else:
                shutil.copy(host_source, intermediate)
            self.succeed(f"mkdir -p {shlex.quote(str(guest_target.parent))}")
            self.succeed(
                f"cp -r {shlex.quote(str(guest_temp / host_source.name))} {shlex.quote(str(guest_target))}"
            )

    def copy_from_host_via_shell(self, source: str, target: str) -> None:
        """Copy a host file into the guest inside a command line (no shared
        directory needed; the size is bounded by what a command line holds)."""
        content = base64.b64encode(Path(source).read_bytes()).decode()
        quoted = shlex.quote(target)
        self.succeed(
            f"mkdir -p $(dirname {quoted})",
            f"echo -n {content} | base64 -d > {quoted}",
        )

    def copy_from_machine(self, source: str | Path, target_dir: str | Path = "") -> None:
        """Copy a guest file or directory to `<out_dir>/<target_dir>/`."""
        guest_source = Path(source)
        with tempfile.TemporaryDirectory(dir=self.shared_dir) as temp:
            host_temp = Path(temp)
            guest_temp = self._guest_shared_path(host_temp)
            status, _ = self.execute(f"mkdir -p {shlex.quote(str(guest_temp))}")
            if status != 0:
                raise MachineError(
                    f"{self.name}: cannot create {guest_temp} in the guest: is the shared directory mounted?"
                )
            self.succeed(
                f"cp -r {shlex.quote(str(guest_source))} {shlex.quote(str(guest_temp / guest_source.name))}"
            )
            intermediate = host_temp / guest_source.name
            target = self.out_dir / target_dir / guest_source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if intermediate.is_dir():
                shutil.copytree(intermediate, target, dirs_exist_ok=True)
            else:
                shutil.copy(intermediate, target)

    def copy_from_vm(self, source: str | Path, target_dir: str | Path = "") -> None:
        """Deprecated name of `copy_from_machine`."""
        deprecated("copy_from_vm() is deprecated; use copy_from_machine()")
        self.copy_from_machine(source, target_dir)

    # -- initrd backdoor ----------------------------------------------------------------------

    def switch_root(self) -> None:
        """Leave stage 1 (`testing.initrdBackdoor`) and reconnect in stage 2."""
        self.wait_for_unit("initrd.target")
        self.execute(
            "systemctl isolate --no-block initrd-switch-root.target 2>/dev/null >/dev/null",
            check_return=False,
            check_output=False,
        )
        self._forget_shell("switching root")
        self.connect()

    def ssh_backdoor_command(self, *args: Any, **kwargs: Any) -> str:
        raise MachineError(
            f"{self.name}: vmtui has no SSH backdoor; use the node's shell pane"
        )
