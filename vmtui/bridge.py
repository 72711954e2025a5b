"""Driver events -> the Textual app, in batches.

The driver publishes from its own threads (serial readers, the script
thread).  Calling into widgets from there is not allowed, and one message per
console line would drown the UI.  The bridge appends events to a buffer under
a lock and posts a single `EventsPending` message when the buffer stops being
empty; the app drains the whole buffer at most `max_rate` times a second.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from textual.message import Message

from driver.events import ConsoleOutput, Event


class EventsPending(Message):
    """Events are waiting in the bridge; call `EventBridge.drain()`."""


@dataclass
class Batch:
    """Everything that arrived since the last drain.

    Console lines are merged per machine (one append per pane per frame); the
    other events keep their order.
    """

    console: dict[str, list[str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def console_line_count(self) -> int:
        return sum(map(len, self.console.values()))


class EventBridge:
    """A bus subscriber that buffers events for the UI thread.

    `post` must be thread safe (Textual's `post_message` is).  `max_pending_lines`
    bounds the console lines held per machine while the UI is busy: the oldest
    are dropped, as the panes would drop them anyway.
    """

    def __init__(self, post: Callable[[Message], object], *, max_pending_lines: int = 50_000) -> None:
        self._post = post
        self._max_pending_lines = max_pending_lines
        self._lock = threading.Lock()
        self._batch = Batch()
        self._signalled = False
        self.dropped_lines = 0
        """Console lines dropped because the UI fell more than a pane's scrollback behind."""

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, ConsoleOutput):
                pending = self._batch.console.setdefault(event.machine, [])
                pending.extend(event.lines)
                excess = len(pending) - self._max_pending_lines
                if excess > 0:
                    del pending[:excess]
                    self.dropped_lines += excess
            else:
                self._batch.events.append(event)
            if self._signalled:
                return
            self._signalled = True
        self._post(EventsPending())

    def drain(self) -> Batch:
        """Take everything buffered so far (call on the UI thread)."""
        with self._lock:
            batch, self._batch = self._batch, Batch()
            self._signalled = False
        return batch
