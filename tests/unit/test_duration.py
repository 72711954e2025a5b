"""Durations as 2026 scripts give them, and the deprecated keyword spellings."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from driver import duration, polling
from driver.duration import as_seconds, renamed_argument
from driver.errors import RequestedAssertionFailed
from driver.events import EventBus, LogMessage
from driver.logger import Logger


@pytest.fixture
def log_lines() -> list[str]:
    lines: list[str] = []
    duration.set_deprecation_sink(lines.append)
    yield lines
    duration.set_deprecation_sink(None)


def test_timedelta_and_numbers_become_seconds() -> None:
    assert as_seconds(datetime.timedelta(minutes=2, milliseconds=500)) == 120.5
    assert as_seconds(3) == 3.0 and as_seconds(0.25) == 0.25


@pytest.mark.parametrize("bad", [True, "10", None, [1]])
def test_anything_else_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="expected a duration"):
        as_seconds(bad)  # type: ignore[arg-type]


def test_the_old_spelling_works_and_logs_one_line(log_lines: list[str]) -> None:
    assert renamed_argument("sleep", "secs", "duration", 5, None) == 5
    assert log_lines == ["sleep(): the 'secs' argument is deprecated; use 'duration' (a datetime.timedelta) instead"]


def test_both_spellings_at_once_are_refused(log_lines: list[str]) -> None:
    with pytest.raises(TypeError, match="got both 'timeout' and 'timeout_seconds'"):
        renamed_argument("retry", "timeout_seconds", "timeout", 5, 6)


def test_retry_takes_a_timedelta(log_lines: list[str]) -> None:
    calls: list[bool] = []
    with pytest.raises(RequestedAssertionFailed, match=r"\(timeout=0\)"):
        polling.retry(lambda last: calls.append(last), timeout=datetime.timedelta(0), interval=0)
    assert calls == [True] and log_lines == []


def test_retry_timeout_seconds_is_deprecated_but_works(log_lines: list[str]) -> None:
    polling.retry(lambda last: True, timeout_seconds=datetime.timedelta(seconds=30))
    assert log_lines == ["retry(): the 'timeout_seconds' argument is deprecated; use 'timeout' (a datetime.timedelta) instead"]


def test_retry_waits_at_most_a_short_timedelta(log_lines: list[str]) -> None:
    attempts: list[bool] = []
    with pytest.raises(RequestedAssertionFailed):
        polling.retry(lambda last: attempts.append(last), datetime.timedelta(milliseconds=300), interval=datetime.timedelta(milliseconds=100))
    assert 2 <= len(attempts) <= 6 and attempts[-1] is True


def test_polling_condition_interval_as_timedelta(log_lines: list[str]) -> None:
    logger = Logger(EventBus())
    condition = polling.polling_condition(lambda: True, interval=datetime.timedelta(seconds=7), logger=logger)
    assert condition.seconds_interval == 7 and condition.interval == datetime.timedelta(seconds=7)
    assert log_lines == []
    old = polling.polling_condition(lambda: True, seconds_interval=3, logger=logger)
    assert old.seconds_interval == 3 and len(log_lines) == 1 and "seconds_interval" in log_lines[0]


def test_polling_condition_wait_takes_a_timedelta(log_lines: list[str]) -> None:
    condition = polling.polling_condition(lambda: False, interval=datetime.timedelta(0), logger=Logger(EventBus()))
    with pytest.raises(RequestedAssertionFailed):
        condition.wait(timeout=datetime.timedelta(0))


def test_a_driver_writes_deprecations_into_the_test_log(tmp_path: Path) -> None:
    from driver.config import TestConfig as Config
    from driver.driver import Driver

    script = tmp_path / "t.py"
    script.write_text("")
    bus = EventBus()
    messages: list[str] = []
    bus.subscribe(lambda e: messages.append(e.message) if isinstance(e, LogMessage) else None)
    with Driver(Config(nodes=[], vlans=[], script_path=script), bus=bus, out_dir=tmp_path / "out", tmp_dir=tmp_path / "s"):
        polling.retry(lambda last: True, timeout_seconds=1)
    assert any("'timeout_seconds' argument is deprecated" in m for m in messages)
    # The sink leaves with the driver: later calls fall back to Python warnings.
    with pytest.warns(DeprecationWarning):
        polling.retry(lambda last: True, timeout_seconds=1)
