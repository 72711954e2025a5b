"""Run one piece of work per node at once, and wait for all of them.

Booting, connecting and snapshotting nodes are slow and independent, so
they run side by side.  Every thread is waited for before anything is
reported: a caller never goes on while a node is still half-way, and it
sees every failure, not only the first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class Outcome(Generic[_T, _R]):
    """What the work did with one item: a value, or the exception it raised."""

    item: _T
    value: _R | None = None
    error: BaseException | None = None


def run_each(
    items: Sequence[_T],
    work: Callable[[_T], _R],
    *,
    thread_name: Callable[[_T], str] | None = None,
) -> list[Outcome[_T, _R]]:
    """`work(item)` for every item, each in its own thread; outcomes in item order.

    What the work raises is caught per item and returned, never raised.
    """
    outcomes = [Outcome[_T, _R](item) for item in items]

    def run(outcome: Outcome[_T, _R]) -> None:
        try:
            outcome.value = work(outcome.item)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome.error = error

    threads = [
        threading.Thread(
            target=run,
            args=(outcome,),
            name=thread_name(outcome.item) if thread_name else None,
            daemon=True,
        )
        for outcome in outcomes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def run_each_or_raise(items: Sequence[_T], work: Callable[[_T], _R]) -> list[_R]:
    """Like run_each, but the values; the first item's error is raised once all ended."""
    outcomes = run_each(items, work)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [outcome.value for outcome in outcomes]  # type: ignore[misc]
