"""Events the driver core publishes, and the bus that carries them.

Everything a front end needs to show a test run (console output, machine
state, the nested log blocks, the step position, results) is published here as
a plain, immutable dataclass.  The driver never knows who listens: the
headless runner subscribes a terminal/JUnit logger, the TUI subscribes its
widgets.

Subscribers are called synchronously on the publishing thread (a serial
reader thread, the script thread, ...), so they must be quick and thread
safe: a UI buffers events and draws them on its own timer.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeAlias


class MachineState(enum.Enum):
    """Lifecycle of one QEMU node, as a UI shows it."""

    CREATED = "created"
    BOOTING = "booting"
    CONNECTED = "connected"
    SHUTTING_DOWN = "shutting down"
    EXITED = "exited"


class LogLevel(enum.IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class ConsoleOutput:
    """Complete lines read from a machine's serial console (ttyS0).

    Lines are raw guest text: they keep their escapes and any carriage
    return not part of a `\r\n`, and lose the line terminator.  Never print
    them as they are: `driver.terminal_text` keeps their text and colours
    and drops whatever could act on a terminal.  A reader publishes one event per
    chunk it reads, so a flooding guest yields few, large events.
    """

    machine: str
    lines: tuple[str, ...]
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class MachineStateChanged:
    machine: str
    state: MachineState
    pid: int | None = None
    exit_code: int | None = None
    # Why the machine is in this state, e.g. "waiting for the backdoor" or
    # "QEMU killed by signal 9"; empty when there is nothing to add.
    detail: str = ""
    timestamp: float = field(default_factory=_now)
    # "kvm" or "tcg": how QEMU runs this guest, as QEMU itself answered once
    # QMP was up (a start script may ask for accel=kvm:tcg, so only QEMU
    # knows).  None when this event does not say (not asked yet, or unknown).
    accelerator: str | None = None


@dataclass(frozen=True)
class LogMessage:
    """One log line: `name: message` in the NixOS terminal format."""

    message: str
    machine: str | None = None
    level: LogLevel = LogLevel.INFO
    timestamp: float = field(default_factory=_now)


_block_ids = itertools.count(1)


def new_block_id() -> int:
    return next(_block_ids)


@dataclass(frozen=True)
class BlockOpened:
    """A nested log block began (`must succeed: ...`, `subtest: ...`)."""

    block_id: int
    parent_id: int | None
    title: str
    machine: str | None = None
    # "nested" for ordinary blocks, "subtest" for subtest blocks.
    kind: str = "nested"
    # Line of the test script that was executing when the block opened, so a
    # UI can jump from a log entry to the script.
    script_line: int | None = None
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class BlockClosed:
    block_id: int
    # Seconds; None when unknown (a replayed log that never said how long).
    duration: float | None
    ok: bool = True
    error: str | None = None
    # The run was stopped inside the block (`error` then reads "cancelled").
    cancelled: bool = False
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class ScriptStarted:
    """A run of the test script began (the first run or a rerun)."""

    filename: str
    run_id: int
    first_line: int | None = None
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class StatementStarted:
    """A top-level statement of the script started to run."""

    run_id: int
    line: int
    end_line: int
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class StatementFinished:
    run_id: int
    line: int
    end_line: int
    ok: bool
    duration: float
    error: str | None = None
    timestamp: float = field(default_factory=_now)
    # The run was stopped during the statement (`error` then reads "cancelled").
    cancelled: bool = False


@dataclass(frozen=True)
class ScriptFinished:
    run_id: int
    ok: bool
    duration: float
    # The one-line reason and the script line it points at, on failure.
    error: str | None = None
    error_line: int | None = None
    cancelled: bool = False
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class FrameSummary:
    """One frame of the paused script's stack (innermost last)."""

    filename: str
    line: int
    function: str
    in_script: bool


@dataclass(frozen=True)
class DebuggerPaused:
    """The stepper stopped the script; the VMs keep running."""

    run_id: int
    line: int
    # "breakpoint", "step", "pause", "run-to-line", "exception" (post-mortem)
    reason: str
    stack: tuple[FrameSummary, ...] = ()
    error: str | None = None
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class DebuggerResumed:
    run_id: int
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class WaitProgress:
    """A long-running wait (wait_for_unit, wait_until_succeeds ...) polled again.

    Lets a UI show what a step waits for and for how long.
    """

    machine: str | None
    what: str
    elapsed: float
    timeout: float | None
    attempts: int
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True)
class ScreenCaptured:
    """A picture of a machine's screen that the test script took or read.

    Published by `screenshot()` (with the file it wrote) and by
    `wait_for_text()` for the screen its text matched on, inside the block
    of that call, so a UI can show the picture next to the step.
    """

    machine: str
    title: str
    width: int
    height: int
    png: bytes = field(repr=False)
    path: str | None = None
    block_id: int | None = None
    timestamp: float = field(default_factory=_now)


Event: TypeAlias = (
    ConsoleOutput
    | MachineStateChanged
    | LogMessage
    | BlockOpened
    | BlockClosed
    | ScriptStarted
    | StatementStarted
    | StatementFinished
    | ScriptFinished
    | DebuggerPaused
    | DebuggerResumed
    | WaitProgress
    | ScreenCaptured
)

Subscriber: TypeAlias = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, callable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        # The tuple is replaced, never mutated, so iterating it needs no lock.
        for subscriber in self._subscribers:
            subscriber(event)
