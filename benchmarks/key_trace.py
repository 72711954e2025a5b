"""Where the time of a slow key goes: a timeline of the app's busy spans.

`install()` (in bench_keys.py's child, with --trace) wraps Textual's
message dispatch, the screen's frame update and the write to the terminal,
and hooks the garbage collector, recording every span of at least
`MIN_SPAN` seconds on `time.perf_counter()` (the same monotonic clock in
parent and child).  `explain()` (in the parent) takes the spans that
overlap each slow key's wait and sums them by what they were, so the report
says "the keys over 50 ms waited on: console frames N ms, highlighting M ms,
full garbage collections K ms" instead of a guess.

The spans nest (a frame update runs inside the dispatch of the message that
triggered it); `explain` counts the innermost named span, its parent only
for the rest of its time.
"""

from __future__ import annotations

import gc
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIN_SPAN = 0.002  # seconds; shorter spans are noise next to a 50 ms target

Span = tuple[float, float, str]  # start, end, what
IDLE = "no span of the app's (small work, other threads, other processes)"


class Recorder:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._gc_started = 0.0

    def add(self, start: float, end: float, what: str) -> None:
        if end - start >= MIN_SPAN:
            self.spans.append((start, end, what))

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.add(self._gc_started, time.perf_counter(), f"gc generation {info['generation']}")

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.spans), encoding="utf-8")


def _timed(recorder: Recorder, function: Callable[..., Any], name: Callable[..., str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            recorder.add(started, time.perf_counter(), name(*args, **kwargs))
    return wrapper


def _timed_async(recorder: Recorder, function: Callable[..., Any], name: Callable[..., str]) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            recorder.add(started, time.perf_counter(), name(*args, **kwargs))
    return wrapper


def install() -> Recorder:
    """Record the app's busy spans from now on (call before the app runs)."""
    from textual.app import App
    from textual.message_pump import MessagePump
    from textual.screen import Screen
    from textual.widgets import TextArea

    recorder = Recorder()
    MessagePump._dispatch_message = _timed_async(  # type: ignore[method-assign]
        recorder, MessagePump._dispatch_message,
        lambda pump, message: f"{type(message).__name__} -> {type(pump).__name__}")
    Screen._on_timer_update = _timed(  # type: ignore[method-assign]
        recorder, Screen._on_timer_update, lambda screen: "frame: compose and write the screen update")
    App._display = _timed(  # type: ignore[method-assign]
        recorder, App._display, lambda app, screen, renderable: "frame: write to the terminal")
    TextArea._build_highlight_map = _timed(  # type: ignore[method-assign]
        recorder, TextArea._build_highlight_map, lambda area: "editor: highlight map")
    gc.callbacks.append(recorder.gc_callback)
    return recorder


def explain(spans: list[Span], waits: list[tuple[float, float]]) -> dict[str, float]:
    """Seconds of each kind of span inside the given waits (innermost span counted)."""
    spans = sorted(spans)
    totals: dict[str, float] = defaultdict(float)
    for wait_start, wait_end in waits:
        inside = [(max(s, wait_start), min(e, wait_end), what) for s, e, what in spans if s < wait_end and e > wait_start]
        # Time each instant to the innermost (latest-starting) span covering it.
        edges = sorted({t for s, e, _ in inside for t in (s, e)})
        for left, right in zip(edges, edges[1:]):
            covering = [(s, what) for s, e, what in inside if s <= left and e >= right]
            if covering:
                totals[max(covering)[1]] += right - left
            else:
                totals[IDLE] += right - left
        if not edges:
            totals[IDLE] += wait_end - wait_start
        else:
            totals[IDLE] += (edges[0] - wait_start) + (wait_end - edges[-1])
    return dict(totals)


def by_kind(spans: list[Span]) -> dict[str, list[float]]:
    """The durations (seconds) of the spans of each kind."""
    kinds: dict[str, list[float]] = defaultdict(list)
    for start, end, what in spans:
        kinds[what].append(end - start)
    return dict(kinds)
