"""`test_driver.duration`: the `Duration` type of timeouts and durations."""

from driver.duration import Duration, as_seconds, as_timedelta

__all__ = ["Duration", "as_seconds", "as_timedelta"]
