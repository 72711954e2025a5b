"""Durations as test scripts give them: a `datetime.timedelta`, or seconds.

Since the late-2026 NixOS driver, every timeout and duration of the script
API is a `timedelta`; bare numbers (seconds) still work.  Every public entry
point of vmtui converts once, at its edge, with `as_seconds`, so the code
beneath keeps working in float seconds.

Deprecated keyword spellings (`retry(timeout_seconds=...)`,
`sleep(secs=...)`, `polling_condition(seconds_interval=...)`) go through
`deprecated()`, which writes one line to the test's log (the Driver installs
the sink) or, without a driver, a Python `DeprecationWarning`.
"""

from __future__ import annotations

import datetime
import warnings
from typing import Callable, TypeAlias

Duration: TypeAlias = datetime.timedelta | int | float

_deprecation_sink: Callable[[str], None] | None = None


def as_seconds(duration: Duration) -> float:
    """`duration` in seconds (a float); TypeError for anything else.

    `bool` is refused although it is an int: `timeout=True` is a mistake,
    never a duration of one second.
    """
    if isinstance(duration, datetime.timedelta):
        return duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise TypeError(
            f"expected a duration (datetime.timedelta or seconds), got {type(duration).__name__}: {duration!r}"
        )
    return float(duration)


def optional_seconds(duration: Duration | None) -> float | None:
    """`as_seconds`, keeping None (no timeout) as None."""
    return None if duration is None else as_seconds(duration)


def as_timedelta(duration: Duration) -> datetime.timedelta:
    if isinstance(duration, datetime.timedelta):
        return duration
    return datetime.timedelta(seconds=as_seconds(duration))


def format_duration(duration: Duration) -> str:
    """A duration for messages: `30` for whole seconds, `0.5` otherwise."""
    seconds = as_seconds(duration)
    return f"{seconds:.0f}" if seconds == int(seconds) else f"{seconds:g}"


def set_deprecation_sink(sink: Callable[[str], None] | None) -> None:
    """Where deprecation lines go (the Driver installs its logger's `warning`)."""
    global _deprecation_sink
    _deprecation_sink = sink


def deprecated(message: str) -> None:
    sink = _deprecation_sink
    if sink is not None:
        sink(message)
    else:
        warnings.warn(message, DeprecationWarning, stacklevel=3)


def renamed_argument(
    function: str, old: str, new: str, old_value: Duration | None, new_value: Duration | None
) -> Duration | None:
    """Resolve a deprecated keyword (`old`) against its replacement (`new`).

    Both given is a TypeError, as in NixOS; the old one alone works and logs
    a deprecation line.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"{function}() got both {new!r} and {old!r}: pass only {new!r}")
    deprecated(f"{function}(): the {old!r} argument is deprecated; use {new!r} (a datetime.timedelta) instead")
    return old_value
