"""`Patience`: a retried wait gives up no sooner than either NixOS retry would."""

from __future__ import annotations

import pytest

from driver import patience
from driver.patience import Patience


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    now = {"t": 0.0}
    monkeypatch.setattr(patience.time, "monotonic", lambda: now["t"])
    return now


def test_fast_checks_give_up_after_the_timeout(clock: dict[str, float]) -> None:
    account = Patience(10)
    while not account.exhausted():
        clock["t"] += 0.2  # a 0.2 s pause, the check itself takes no time
        account.record_attempt(0.0)
    assert 10.0 <= clock["t"] <= 10.2
    assert account.attempts >= 10


def test_slow_checks_get_every_attempt_and_every_pause(clock: dict[str, float]) -> None:
    account = Patience(5)
    while not account.exhausted():
        clock["t"] += 4.0  # the check
        account.record_attempt(4.0)
        clock["t"] += 1.0  # the pause
    # NixOS (counting): 5 attempts of 4 s plus 5 pauses of 1 s = 25 s.
    assert account.attempts == 5 and clock["t"] >= 25.0


def test_zero_timeout_goes_straight_to_the_last_call(clock: dict[str, float]) -> None:
    assert Patience(0).exhausted()


def test_remaining_counts_the_mean_check_time(clock: dict[str, float]) -> None:
    account = Patience(4)
    clock["t"] = 2.0
    account.record_attempt(2.0)
    assert account.remaining() == pytest.approx(4 * 3.0 - 2.0)


def test_a_timedelta_timeout_is_seconds(clock: dict[str, float]) -> None:
    import datetime

    assert Patience(datetime.timedelta(minutes=2)).timeout == 120.0  # type: ignore[arg-type]
