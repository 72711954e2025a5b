"""`retry` and `polling_condition`, with the NixOS test driver's semantics.

`retry(fn)` calls `fn(False)` once a second until it returns something
true; when NixOS would give up (`driver.patience`: never fewer attempts or
less time, however long each call takes) it calls `fn(True)` once more (so
the callback can log diagnostics) and raises `RequestedAssertionFailed`
unless that last call succeeded.  Time is measured with a monotonic clock,
and every sleep ends early when the run is cancelled.

A polling condition is a check that must keep holding while a block runs::

    @polling_condition(seconds_interval=5)
    def server_is_up():
        server.succeed("pgrep httpd")

    with server_is_up:
        client.succeed(...)

While a condition is active, the machine layer calls
`check_active_conditions()` before every `execute()` and
`send_monitor_command()`; a condition that is overdue is re-checked there and
raises `PollingConditionError` when it fails.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any, Callable

from driver.duration import Duration, as_seconds, format_duration, renamed_argument
from driver.errors import PollingConditionError, RequestedAssertionFailed, ScriptCancelled
from driver.events import EventBus
from driver.logger import Logger
from driver.patience import Patience

DEFAULT_RETRY_TIMEOUT = 900.0
DEFAULT_CONDITION_INTERVAL = 2.0

# The cancel event of the running test, installed by the Driver: machine
# waits and `retry` end promptly when the user stops a run.
_cancel_event: threading.Event | None = None


def set_cancel_event(event: threading.Event | None) -> None:
    global _cancel_event
    _cancel_event = event


def current_cancel_event() -> threading.Event | None:
    return _cancel_event


def raise_if_cancelled(cancel_event: threading.Event | None = None) -> None:
    event = cancel_event if cancel_event is not None else _cancel_event
    if event is not None and event.is_set():
        raise ScriptCancelled("the run was cancelled")


def cancellable_sleep(seconds: float, cancel_event: threading.Event | None = None) -> None:
    """Sleep, but raise `ScriptCancelled` as soon as the run is cancelled."""
    event = cancel_event if cancel_event is not None else _cancel_event
    if event is None:
        time.sleep(seconds)
        return
    if event.wait(seconds):
        raise ScriptCancelled("the run was cancelled")


def retry(
    fn: Callable[[bool], Any],
    timeout: Duration | None = None,
    *,
    timeout_seconds: Duration | None = None,
    interval: Duration = 1.0,
    cancel_event: threading.Event | None = None,
    on_attempt: Callable[[int, float], None] | None = None,
) -> None:
    """Call `fn(False)` until it returns true, for at most `timeout` (900 s).

    `timeout` is a `timedelta` or seconds; `timeout_seconds` is its
    deprecated spelling (a deprecation line in the log).
    `on_attempt(attempts, elapsed)` runs after each failed attempt (the
    machine layer publishes `WaitProgress` from it).
    """
    chosen = renamed_argument("retry", "timeout_seconds", "timeout", timeout_seconds, timeout)
    timeout_seconds = DEFAULT_RETRY_TIMEOUT if chosen is None else as_seconds(chosen)
    interval = as_seconds(interval)
    # Never fewer attempts, nor less time, than NixOS gives (driver.patience).
    patience = Patience(timeout_seconds)
    raise_if_cancelled(cancel_event)
    while not patience.exhausted():
        began = time.monotonic()
        if fn(False):
            return
        patience.record_attempt(time.monotonic() - began)
        if on_attempt is not None:
            on_attempt(patience.attempts, patience.elapsed())
        cancellable_sleep(interval, cancel_event)
    # The last call is told it is the last one, so it can explain the failure.
    if fn(True):
        return
    raise RequestedAssertionFailed(
        f"action timed out after {patience.elapsed():.2f} seconds (timeout={format_duration(timeout_seconds)})"
    )


# -- polling conditions -------------------------------------------------------

_registry_lock = threading.Lock()
_active: list[PollingCondition] = []


def active_conditions() -> tuple[PollingCondition, ...]:
    with _registry_lock:
        return tuple(_active)


def check_active_conditions() -> None:
    """Re-check every active condition that is overdue; raise on a failure.

    Called by the machine layer before each `execute()` and
    `send_monitor_command()`.
    """
    for condition in active_conditions():
        condition.maybe_raise()


def clear_active_conditions() -> None:
    """Forget all active conditions (the Driver calls this on cleanup)."""
    with _registry_lock:
        _active.clear()


class PollingCondition:
    """A check that keeps being verified while its `with` block runs."""

    def __init__(
        self,
        condition: Callable[[], Any],
        logger: Logger,
        seconds_interval: Duration | None = None,
        description: str | None = None,
        *,
        interval: Duration | None = None,
    ) -> None:
        self.condition = condition
        self.logger = logger
        chosen = renamed_argument("polling_condition", "seconds_interval", "interval", seconds_interval, interval)
        self.seconds_interval = DEFAULT_CONDITION_INTERVAL if chosen is None else as_seconds(chosen)
        # As NixOS: the docstring as it is (not stripped), else the name.
        if description is not None:
            self.description = str(description)
        elif condition.__doc__:
            self.description = condition.__doc__
        else:
            self.description = getattr(condition, "__name__", repr(condition))
        self.last_called = float("-inf")
        # The condition itself usually calls execute(), which checks active
        # conditions again: this guard stops that recursion.
        self._checking = threading.local()

    # -- activation -------------------------------------------------------

    def __enter__(self) -> PollingCondition:
        with _registry_lock:
            _active.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _registry_lock:
            # Remove this very object (the last occurrence: blocks nest).
            for index in range(len(_active) - 1, -1, -1):
                if _active[index] is self:
                    del _active[index]
                    break

    # -- checking ---------------------------------------------------------

    @property
    def overdue(self) -> bool:
        return time.monotonic() - self.last_called > self.seconds_interval

    def _is_checking(self) -> bool:
        return getattr(self._checking, "active", False)

    def check(self, force: bool = False) -> bool:
        """Run the check if it is overdue (or `force`); True when it holds."""
        if self._is_checking() or (not force and not self.overdue):
            return True
        self._checking.active = True
        try:
            with self.logger.nested(f"Checking polling condition {self.description!r}"):
                since = time.monotonic() - self.last_called
                if since == float("inf"):
                    self.logger.info("(not called yet)")
                else:
                    self.logger.info(f"Time since last: {since:.2f}s")
                try:
                    result = self.condition()
                except ScriptCancelled:
                    raise
                except Exception as exc:
                    self.logger.info(f"the check raised {type(exc).__name__}: {exc}")
                    result = False
                # NixOS semantics: returning None (a check written with
                # succeed()) counts as success; only False fails.
                holds = result is None or bool(result)
                self.logger.info(self.status_message(holds))
                return holds
        finally:
            self.last_called = time.monotonic()
            self._checking.active = False

    def status_message(self, holds: bool) -> str:
        verdict = "succeeded" if holds else "failed"
        return f"Polling condition {verdict}: {self.description}"

    def maybe_raise(self) -> None:
        if not self.check():
            raise PollingConditionError(self.status_message(False))

    @property
    def interval(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.seconds_interval)

    def wait(self, timeout: Duration = DEFAULT_RETRY_TIMEOUT) -> None:
        """Block until the condition holds (checked about once a second)."""

        def attempt(last: bool) -> bool:
            if last:
                self.logger.info(f"Last chance for {self.description}")
            holds = self.check(force=True)
            if not holds and not last:
                self.logger.info(f"({self.description} failure not fatal yet)")
            return holds

        with self.logger.nested(f"waiting for {self.description}"):
            retry(attempt, timeout=timeout)


def polling_condition(
    fun: Callable[[], Any] | None = None,
    *,
    seconds_interval: Duration | None = None,
    description: str | None = None,
    logger: Logger | None = None,
    interval: Duration | None = None,
) -> Any:
    """Build a polling condition; usable as `@polling_condition`,
    `@polling_condition(interval=timedelta(...))` or called directly.
    `seconds_interval` is the deprecated spelling of `interval`."""
    log = logger if logger is not None else Logger(EventBus())

    def build(condition: Callable[[], Any]) -> PollingCondition:
        return PollingCondition(condition, log, seconds_interval, description, interval=interval)

    if fun is None:
        return build
    return build(fun)
