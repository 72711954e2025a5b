"""run_each: one thread per item, everything waited for, every failure kept."""

from __future__ import annotations

import threading
import time

import pytest

from driver.parallel import run_each, run_each_or_raise


def test_items_run_at_once_and_outcomes_keep_item_order() -> None:
    barrier = threading.Barrier(3, timeout=5)  # deadlocks unless all three run together

    def work(item: int) -> int:
        barrier.wait()
        return item * 10

    outcomes = run_each([1, 2, 3], work, thread_name=lambda item: f"work-{item}")
    assert [(o.item, o.value, o.error) for o in outcomes] == [(1, 10, None), (2, 20, None), (3, 30, None)]


def test_every_failure_is_returned_after_all_items_finished() -> None:
    finished: list[str] = []

    def work(item: str) -> str:
        if item == "slow":
            time.sleep(0.2)
            finished.append(item)
            return item
        raise ValueError(item)

    outcomes = run_each(["a", "slow", "b"], work)
    assert finished == ["slow"]  # the failures did not cut the slow one short
    assert [type(o.error) for o in outcomes] == [ValueError, type(None), ValueError]
    assert [str(o.error) for o in outcomes if o.error] == ["a", "b"]


def test_or_raise_raises_the_first_items_error_once_all_ended() -> None:
    finished: list[int] = []

    def work(item: int) -> int:
        if item == 1:
            raise KeyError("first")
        time.sleep(0.1)
        finished.append(item)
        return item

    with pytest.raises(KeyError, match="first"):
        run_each_or_raise([1, 2], work)
    assert finished == [2]
    assert run_each_or_raise([4, 5], lambda item: item + 1) == [5, 6]
