from __future__ import annotations

import threading
from typing import Iterator

import pytest

from driver import polling
from driver.errors import PollingConditionError, RequestedAssertionFailed, ScriptCancelled
from driver.events import BlockOpened, EventBus, LogMessage
from driver.logger import Logger


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    polling.clear_active_conditions()
    polling.set_cancel_event(None)
    yield
    polling.clear_active_conditions()
    polling.set_cancel_event(None)


def test_retry_returns_as_soon_as_fn_succeeds() -> None:
    calls: list[bool] = []

    def fn(last: bool) -> bool:
        calls.append(last)
        return len(calls) == 3

    polling.retry(fn, timeout=60, interval=0)
    assert calls == [False, False, False]


def test_retry_makes_a_last_call_then_raises() -> None:
    calls: list[bool] = []
    with pytest.raises(RequestedAssertionFailed, match=r"^action timed out after \d+\.\d\d seconds \(timeout=0\)$"):
        polling.retry(lambda last: calls.append(last), timeout=0, interval=0)
    assert calls == [True]


def test_retry_last_call_may_still_succeed() -> None:
    polling.retry(lambda last: last, timeout=0)


def test_retry_takes_the_timeout_positionally() -> None:
    calls: list[bool] = []
    with pytest.raises(RequestedAssertionFailed, match="timeout=0"):
        polling.retry(lambda last: calls.append(last), 0)
    assert calls == [True]


def test_retry_reports_each_failed_attempt() -> None:
    seen: list[int] = []
    results = iter([False, False, True])
    polling.retry(lambda _: next(results), timeout=60, interval=0, on_attempt=lambda n, _e: seen.append(n))
    assert seen == [1, 2]


def test_retry_ends_when_the_run_is_cancelled() -> None:
    cancel = threading.Event()
    calls: list[bool] = []

    def fn(last: bool) -> bool:
        calls.append(last)
        cancel.set()  # the user presses stop while the check runs
        return False

    with pytest.raises(ScriptCancelled):
        polling.retry(fn, timeout=900, cancel_event=cancel)
    assert calls == [False]


def test_retry_uses_the_installed_cancel_event() -> None:
    cancel = threading.Event()
    cancel.set()
    polling.set_cancel_event(cancel)
    with pytest.raises(ScriptCancelled):
        polling.retry(lambda _: True)


def make_logger() -> tuple[Logger, list[object]]:
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    return Logger(bus), events


def test_polling_condition_as_bare_decorator_uses_docstring() -> None:
    logger, _ = make_logger()

    @polling.polling_condition
    def healthy() -> None:
        """server answers"""

    assert isinstance(healthy, polling.PollingCondition)
    assert healthy.description == "server answers"

    @polling.polling_condition
    def spaced() -> None:
        """
        the server answers
        """

    # NixOS takes the docstring as it is, and so does the failure message.
    assert spaced.description == "\n        the server answers\n        "


def test_polling_condition_with_arguments_and_direct_call() -> None:
    logger, _ = make_logger()

    @polling.polling_condition(seconds_interval=10, logger=logger)
    def healthy() -> bool:
        return True

    assert healthy.seconds_interval == 10 and healthy.description == "healthy"
    direct = polling.polling_condition(lambda: True, description="always", logger=logger)
    assert direct.description == "always"


def test_active_condition_is_checked_when_overdue_and_raises_on_failure() -> None:
    logger, events = make_logger()
    state = {"ok": True, "calls": 0}

    def check() -> bool:
        state["calls"] += 1
        return state["ok"]

    condition = polling.polling_condition(check, seconds_interval=0, logger=logger)
    polling.check_active_conditions()
    assert state["calls"] == 0  # not active outside its block
    with condition:
        polling.check_active_conditions()
        assert state["calls"] == 1
        state["ok"] = False
        with pytest.raises(PollingConditionError, match="^Polling condition failed: check$"):
            polling.check_active_conditions()
    assert polling.active_conditions() == ()
    titles = [e.title for e in events if isinstance(e, BlockOpened)]
    assert titles[0] == "Checking polling condition 'check'"
    messages = [e.message for e in events if isinstance(e, LogMessage)]
    assert messages[:2] == ["(not called yet)", "Polling condition succeeded: check"]
    assert messages[2].startswith("Time since last: ") and messages[2].endswith("s")


def test_condition_is_not_rechecked_before_its_interval() -> None:
    logger, _ = make_logger()
    calls: list[int] = []
    condition = polling.polling_condition(lambda: calls.append(1), seconds_interval=3600, logger=logger)
    with condition:
        polling.check_active_conditions()
        polling.check_active_conditions()
    assert calls == [1]


def test_none_counts_as_success_and_exceptions_as_failure() -> None:
    logger, events = make_logger()

    def raises() -> None:
        raise RequestedAssertionFailed("nope")

    assert polling.polling_condition(lambda: None, logger=logger).check(force=True)
    assert not polling.polling_condition(raises, logger=logger).check(force=True)
    messages = [e.message for e in events if isinstance(e, LogMessage)]
    assert "the check raised RequestedAssertionFailed: nope" in messages


def test_condition_that_runs_commands_does_not_recurse() -> None:
    logger, _ = make_logger()
    depth: list[int] = []

    def check() -> bool:
        depth.append(1)
        # What execute() does inside the condition: check conditions again.
        polling.check_active_conditions()
        return True

    with polling.polling_condition(check, seconds_interval=0, logger=logger):
        polling.check_active_conditions()
    assert depth == [1]


def test_wait_blocks_until_the_condition_holds() -> None:
    logger, _ = make_logger()
    answers = iter([False, True])
    condition = polling.polling_condition(lambda: next(answers), logger=logger)
    condition.wait(timeout=60)


def test_wait_times_out() -> None:
    logger, _ = make_logger()
    condition = polling.polling_condition(lambda: False, logger=logger)
    with pytest.raises(RequestedAssertionFailed, match="timed out"):
        condition.wait(timeout=0)


def test_wait_logs_last_chance_and_not_fatal_yet_like_nixos() -> None:
    logger, events = make_logger()
    condition = polling.polling_condition(lambda: False, description="db up", logger=logger)
    with pytest.raises(RequestedAssertionFailed, match="action timed out"):
        condition.wait(timeout=1)
    messages = [e.message for e in events if isinstance(e, LogMessage)]
    assert "(db up failure not fatal yet)" in messages
    assert messages.count("Last chance for db up") == 1


def test_retry_gives_a_slow_check_as_many_attempts_as_nixos(monkeypatch: pytest.MonkeyPatch) -> None:
    # NixOS: `timeout` calls of fn(False) one second apart, however long each
    # takes, then fn(True).  A check taking 3 s with timeout=4 gets 4 + 1
    # calls there; a driver that only watched the clock would give 2.
    clock = {"now": 1000.0}
    monkeypatch.setattr(polling.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr("driver.patience.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr(polling, "cancellable_sleep", lambda seconds, _event=None: clock.__setitem__("now", clock["now"] + seconds))
    calls: list[bool] = []

    def slow(last: bool) -> bool:
        calls.append(last)
        clock["now"] += 3.0
        return False

    with pytest.raises(RequestedAssertionFailed):
        polling.retry(slow, timeout_seconds=4)
    assert calls.count(False) >= 4 and calls[-1] is True and calls.count(True) == 1
    # ... and at least as long as NixOS's 4 x (3 s + 1 s).
    assert clock["now"] - 1000.0 >= 16.0
