"""The driver's logger: messages and nested, timed blocks, published as events.

It plays the part of the NixOS driver's logger (`log`, `nested`, `subtest`,
`info`/`warning`/`error`) but prints nothing itself: every call becomes an
event on the bus, and the front end (headless terminal log, JUnit, TUI)
decides how to show it.  Unlike NixOS, `Logger.error()` does not exit:
whether a failure ends the run is the runner's decision.  The script's `log`
is a `ScriptLogger`, whose `error()` ends the test as NixOS's does.

Blocks nest per thread (a REPL evaluation in a paused frame may log from
another thread while the script thread sits inside a block), and each block
remembers the script line that was running when it opened, so a UI can jump
from a log entry to the script.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Callable, Iterator, Mapping

from driver.errors import ScriptCancelled
from driver.events import (
    BlockClosed,
    BlockOpened,
    EventBus,
    LogLevel,
    LogMessage,
    new_block_id,
)

LineProvider = Callable[[], int | None]


class Logger:
    """Publishes `LogMessage`, `BlockOpened` and `BlockClosed` on a bus."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        # Whether front ends print serial console lines (serial_stdout_on/off).
        self.serial_stdout = True
        self._line_provider: LineProvider | None = None
        self._local = threading.local()

    # -- configuration -------------------------------------------------

    def set_line_provider(self, provider: LineProvider | None) -> None:
        """Install the callable that tells which script line runs right now."""
        self._line_provider = provider

    def current_script_line(self) -> int | None:
        provider = self._line_provider
        if provider is None:
            return None
        try:
            return provider()
        except Exception:  # a log call must never fail because of bookkeeping
            return None

    # -- plain messages --------------------------------------------------

    def log(
        self, msg: str, machine: str | Mapping[str, str] | None = None, level: LogLevel = LogLevel.INFO
    ) -> None:
        # A mapping is NixOS's attributes argument (`log.log(msg, {"machine": name})`).
        self.bus.publish(LogMessage(message=str(msg), machine=_machine_of(machine), level=level))

    def debug(self, msg: str, machine: str | None = None) -> None:
        self.log(msg, machine, LogLevel.DEBUG)

    def info(self, msg: str, machine: str | None = None) -> None:
        self.log(msg, machine, LogLevel.INFO)

    def warning(self, msg: str, machine: str | None = None) -> None:
        self.log(msg, machine, LogLevel.WARNING)

    def error(self, msg: str, machine: str | None = None) -> None:
        self.log(msg, machine, LogLevel.ERROR)

    # NixOS spelling, used by some scripts and by the runner's failure report.
    def log_test_error(self, msg: str, machine: str | None = None) -> None:
        self.error(msg, machine)

    # -- blocks -----------------------------------------------------------

    def _stack(self) -> list[int]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        return stack

    def current_block_id(self) -> int | None:
        """The innermost open block of the calling thread, if any."""
        stack = self._stack()
        return stack[-1] if stack else None

    @contextlib.contextmanager
    def adopt_parent(self, block_id: int | None) -> Iterator[None]:
        """Make blocks opened by this (helper) thread children of `block_id`.

        `start_all()` boots machines in threads of their own; this keeps
        their blocks nested under the block that started them.
        """
        if block_id is None:
            yield
            return
        stack = self._stack()
        stack.append(block_id)
        try:
            yield
        finally:
            stack.pop()

    @contextlib.contextmanager
    def nested(
        self,
        msg: str,
        machine: str | None = None,
        attrs: dict[str, str] | None = None,
        *,
        kind: str = "nested",
    ) -> Iterator[None]:
        """A timed block: `BlockOpened` now, `BlockClosed` when the body ends.

        `attrs` is accepted for NixOS compatibility (`{"machine": name}` is
        honoured); other attributes have no event field and are dropped.
        """
        machine = _machine_of(machine)
        if machine is None and attrs:
            machine = attrs.get("machine")
        stack = self._stack()
        block_id = new_block_id()
        self.bus.publish(
            BlockOpened(
                block_id=block_id,
                parent_id=stack[-1] if stack else None,
                title=str(msg),
                machine=machine,
                kind=kind,
                script_line=self.current_script_line(),
            )
        )
        stack.append(block_id)
        started = time.monotonic()
        try:
            yield
        except ScriptCancelled:
            self._close(block_id, started, ok=False, error="cancelled", cancelled=True)
            raise
        except BaseException as exc:
            self._close(block_id, started, ok=False, error=_one_line(exc))
            raise
        else:
            self._close(block_id, started, ok=True, error=None)

    def _close(self, block_id: int, started: float, *, ok: bool, error: str | None, cancelled: bool = False) -> None:
        stack = self._stack()
        if stack and stack[-1] == block_id:
            stack.pop()
        elif block_id in stack:  # a generator-based block closed out of order
            stack.remove(block_id)
        self.bus.publish(
            BlockClosed(block_id=block_id, duration=time.monotonic() - started, ok=ok, error=error,
                        cancelled=cancelled)
        )

    @contextlib.contextmanager
    def subtest(self, name: str) -> Iterator[None]:
        """A `subtest: <name>` block (a JUnit test case); failures are logged."""
        with self.nested(f"subtest: {name}", kind="subtest"):
            try:
                yield
            except ScriptCancelled:
                raise
            except Exception as exc:
                self.error(f'Test "{name}" failed with error: "{exc}"')
                raise


def _machine_of(machine: str | Mapping[str, str] | None) -> str | None:
    """The machine name from a name or from NixOS-style attributes."""
    if isinstance(machine, Mapping):
        return machine.get("machine")
    return machine


class ScriptLogger:
    """`log` as a test script sees it: the driver's logger with NixOS's
    `error()`, which logs and then ends the test (`sys.exit(1)`).

    Everything else is the driver's `Logger`; vmtui's own code keeps a
    logger whose `error()` only logs.
    """

    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def error(self, msg: str, machine: str | Mapping[str, str] | None = None) -> None:
        self._logger.error(msg, machine)  # type: ignore[arg-type]
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    # Newlines only: a lone `\r` (a progress line in guest output) stays in the line.
    text = str(exc).strip().split("\n") if str(exc).strip() else []
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
