"""A machine's serial console: reader thread, bounded log, text waits.

QEMU runs with `-serial stdio`, so the guest's ttyS0 is QEMU's stdout (its
stderr is merged in by the machine, so QEMU's own complaints show up here
too).  One thread per machine reads it in chunks, splits complete lines,
keeps the last `max_lines` lines (carriage returns dropped, as NixOS does),
and publishes one `ConsoleOutput` event per chunk (a flooding guest yields
few, large events) whose lines keep any `\r` not part of a `\r\n`: they are
raw guest text, which front ends decode with `driver.terminal_text`.

Lines are also queued for `wait_for_text`, which consumes them as NixOS's
`wait_for_console_text` does: the queue holds every line since the reader
started that no earlier wait consumed, so output printed before the call
can match.
"""

from __future__ import annotations

import codecs
import collections
import os
import re
import threading
import time
from typing import Callable

from driver.errors import MachineDied, RequestedAssertionFailed, ScriptCancelled
from driver.events import ConsoleOutput, EventBus

DEFAULT_MAX_LINES = 100_000
_READ_SIZE = 65536
# How often a waiting caller re-checks cancel and the deadline.
_WAIT_SLICE = 0.1
# Every search of a text wait covers all the text it consumed (a match may
# span lines), so searching on every new line costs time quadratic in the
# output: a flooding console would starve the script.  A wait searches when
# its text grew by SEARCH_GROWTH since the last search, else at most every
# SEARCH_INTERVAL seconds: linear-ish work, a match seen at most that late.
SEARCH_GROWTH = 1.25
SEARCH_INTERVAL = 0.05


def _search(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """One search of a text wait (a seam for tests that count the work)."""
    return pattern.search(text)


def _search_due(length: int, searched: int, last_search: float) -> bool:
    """Whether a text wait searches now (see SEARCH_GROWTH)."""
    if length <= searched:
        return False
    return length >= searched * SEARCH_GROWTH or time.monotonic() - last_search >= SEARCH_INTERVAL


class ConsoleReader:
    """Reads one machine's serial output from a file descriptor on a thread."""

    def __init__(
        self,
        machine: str,
        fd: int,
        *,
        bus: EventBus | None = None,
        max_lines: int = DEFAULT_MAX_LINES,
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        self.machine = machine
        self._fd = fd
        self._bus = bus
        self._on_eof = on_eof
        self._log: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._unconsumed: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._changed = threading.Condition()
        self._eof = False
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._thread = threading.Thread(
            target=self._run, name=f"console-{machine}", daemon=True
        )

    # -- reader side -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self._fd, _READ_SIZE)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.feed(chunk)
        finally:
            self._finish()

    def feed(self, chunk: bytes) -> None:
        """Add raw console bytes (the reader thread calls this per chunk)."""
        # A `\r\n` split across two reads meets again here: the partial line keeps its `\r`.
        text = (self._partial + self._decoder.decode(chunk)).replace("\r\n", "\n")
        *complete, self._partial = text.split("\n")
        if complete:
            self._add_lines(complete, "\r" in text)

    def _finish(self) -> None:
        tail = (self._partial + self._decoder.decode(b"", final=True)).replace("\r\n", "\n")
        self._partial = ""
        if tail:
            self._add_lines([tail], "\r" in tail)
        with self._changed:
            self._eof = True
            self._changed.notify_all()
        if self._on_eof is not None:
            self._on_eof()

    def _add_lines(self, lines: list[str], has_carriage_return: bool) -> None:
        # The log and the waits see lines without any `\r`, as NixOS keeps
        # them; the event keeps a lone `\r`, so a view can show a redrawn
        # progress line the way a terminal would (the last text drawn wins).
        kept = [line.replace("\r", "") for line in lines] if has_carriage_return else lines
        with self._changed:
            self._log.extend(kept)
            self._unconsumed.extend(kept)
            self._changed.notify_all()
        if self._bus is not None:
            self._bus.publish(ConsoleOutput(self.machine, tuple(lines)))

    # -- consumer side -----------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        return self._eof

    def lines(self) -> list[str]:
        """The kept lines, oldest first (at most `max_lines`)."""
        with self._changed:
            return list(self._log)

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait_for_text(
        self,
        regex: str,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Consume queued lines until `regex` matches; returns the match.

        Lines consumed here are gone for later waits, as in NixOS.  The regex
        is searched in the consumed lines joined by newlines and, for scripts
        written against NixOS (which joins without separators), joined by
        nothing.  Raises `RequestedAssertionFailed` at the timeout,
        `MachineDied` when QEMU exited and no more output can come,
        `ScriptCancelled` when `cancel` is set.
        """
        pattern = re.compile(regex)
        deadline = None if timeout is None else time.monotonic() + timeout
        consumed: list[str] = []
        length = 0                # characters consumed (joined by newlines)
        searched = 0              # `length` at the last search
        last_search = float("-inf")

        def search() -> str | None:
            nonlocal searched, last_search
            searched, last_search = length, time.monotonic()
            found = _search(pattern, "\n".join(consumed)) or _search(pattern, "".join(consumed))
            return None if found is None else found.group(0)

        def check() -> float:
            """Raise on cancel or timeout; return how long to wait at most."""
            if cancel is not None and cancel.is_set():
                raise ScriptCancelled(f"{self.machine}: cancelled while waiting for console text")
            slice_ = _WAIT_SLICE
            if length > searched:
                # Text not searched yet: wake up when its search is due.
                slice_ = max(0.001, min(slice_, last_search + SEARCH_INTERVAL - time.monotonic()))
            if deadline is None:
                return slice_
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestedAssertionFailed(
                    f"{self.machine}: console text matching {regex!r} "
                    f"did not appear within {timeout} seconds"
                )
            return min(remaining, slice_)

        while True:
            try:
                # Checked here too, not only while idle: a console that never
                # stops printing must not defeat the timeout.
                check()
                with self._changed:
                    while not self._unconsumed and not self._eof and not _search_due(length, searched, last_search):
                        self._changed.wait(check())
                    fresh = list(self._unconsumed)
                    self._unconsumed.clear()
                    ended = self._eof
            except RequestedAssertionFailed:
                # Text consumed but not searched yet still counts.
                if length > searched and (found := search()) is not None:
                    return found
                raise
            for line in fresh:
                consumed.append(line.rstrip())
                length += len(consumed[-1]) + 1
            if length > searched and (ended or _search_due(length, searched, last_search)):
                if (found := search()) is not None:
                    return found
            if ended and not fresh:
                raise MachineDied(
                    f"{self.machine}: QEMU exited before the console showed text matching {regex!r}"
                )

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader thread to end (a no-op on the thread itself,
        where an exit callback may ask for it)."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
