"""When a retried check may give up: never sooner than the NixOS driver would.

The NixOS driver's `retry(fn, timeout)` (behind every `wait_*`) has counted
its attempts in some versions and measured wall time in others: `timeout`
calls of `fn(False)` one second apart, however long each call takes, then one
last `fn(True)`; or calls until `timeout` seconds have passed.  vmtui polls
faster at first (a condition that comes true is noticed sooner), so it must
make sure that a slow check still gets every attempt, and every second of
patience, that either NixOS version would have given it.

`Patience` keeps the account: the number of failed attempts and the time the
checks themselves took.  The wait is over only when all three hold:

- at least `timeout` failed attempts were made (the counting driver's number);
- at least `timeout` seconds have passed (the timing driver's limit);
- at least `timeout` seconds plus `timeout` times the mean check time have
  passed: what the counting driver spends (a one-second pause per attempt
  plus the attempts themselves).

Then one last check, told it is the last, follows.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field


@dataclass
class Patience:
    """The attempt and time account of one retried wait (`timeout` in
    seconds, or a `datetime.timedelta`)."""

    timeout: float
    started: float = field(default_factory=lambda: time.monotonic())
    attempts: int = 0
    checking_time: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.timeout, datetime.timedelta):
            self.timeout = self.timeout.total_seconds()

    def record_attempt(self, duration: float) -> None:
        """A check returned false after `duration` seconds."""
        self.attempts += 1
        self.checking_time += duration

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def exhausted(self) -> bool:
        """True once NixOS would have stopped retrying (time for the last call)."""
        if self.attempts < self.timeout:
            return False
        elapsed = self.elapsed()
        if elapsed < self.timeout:
            return False
        mean_check = self.checking_time / self.attempts if self.attempts else 0.0
        return elapsed >= self.timeout * (1.0 + mean_check)

    def remaining(self) -> float:
        """Seconds until the time conditions alone would allow giving up."""
        mean_check = self.checking_time / self.attempts if self.attempts else 0.0
        return max(0.0, self.timeout * (1.0 + mean_check) - self.elapsed())
