"""The replay session: streams a source's events to a front end and keeps what jumps and search need.

Nothing here imports Textual.  `ReplaySession.stream(publish)` runs in a
worker thread and calls `publish(event)` for every event, as the driver's bus
would.  Memory stays bounded whatever the log's size: console lines go to a
spool file per node on disk (with a sparse index of line offsets) and every
non-console line to a spool of its own; what stays in memory is, per block,
the console line counts at the moment it opened.

- `moment_of(block_id)` -> lines each node had printed when the block opened;
- `console_window(machine, line, before, after)` -> lines around that moment;
- `search(term)` -> hits in every console and in the driver's own lines.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from driver.events import BlockClosed, BlockOpened, ConsoleOutput, Event, LogLevel, LogMessage, ScriptFinished
from vmtui.replay.source import ReplaySource

INDEX_STEP = 256
MAX_ERROR_LINES = 400
DRIVER_LOG = "(driver)"
SCRIPT = "(script)"


class LineSpool:
    """Lines appended to a file, read back by number; an offset kept every INDEX_STEP lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write: IO[bytes] = open(path, "wb")
        self._offsets: list[int] = []
        self._size = 0
        self.count = 0
        self._lock = threading.Lock()

    def append(self, lines: tuple[str, ...] | list[str]) -> None:
        with self._lock:
            for line in lines:
                if self.count % INDEX_STEP == 0:
                    self._offsets.append(self._size)
                data = line.replace("\n", " ").encode("utf-8", "replace") + b"\n"
                self._write.write(data)
                self._size += len(data)
                self.count += 1

    def read(self, start: int, end: int) -> list[str]:
        """Lines start <= n < end."""
        start, end = max(0, start), min(end, self.count)
        if start >= end:
            return []
        with self._lock:
            self._write.flush()
            offset = self._offsets[start // INDEX_STEP]
        out: list[str] = []
        with open(self.path, "rb") as stream:
            stream.seek(offset)
            number = (start // INDEX_STEP) * INDEX_STEP
            for raw in stream:
                if number >= end:
                    break
                if number >= start:
                    out.append(raw[:-1].decode("utf-8", "replace"))
                number += 1
        return out

    def scan(self, needle: str, limit: int, cancel: threading.Event | None = None) -> Iterator[tuple[int, str]]:
        """(line number, line) of lines containing `needle` (case-insensitive)."""
        with self._lock:
            self._write.flush()
            count = self.count
        wanted = needle.lower().encode("utf-8", "replace")
        found = 0
        with open(self.path, "rb") as stream:
            for number, raw in enumerate(stream):
                if number >= count or (cancel is not None and cancel.is_set()):
                    return
                if wanted in raw.lower():
                    yield number, raw[:-1].decode("utf-8", "replace")
                    found += 1
                    if found >= limit:
                        return

    def close(self) -> None:
        with self._lock:
            self._write.close()


@dataclass(frozen=True)
class SearchHit:
    where: str  # a node's name, or DRIVER_LOG
    line: int  # line number in that node's console (or in the driver's lines)
    text: str
    block_id: int | None = None  # for the driver's lines: the block they belong to
    term: str = ""


class ReplaySession:
    """See the module docstring."""

    def __init__(self, source: ReplaySource, spool_dir: Path) -> None:
        self.source = source
        self.spool_dir = spool_dir
        self.consoles: dict[str, LineSpool] = {}
        self.driver_lines = LineSpool(spool_dir / "driver.spool")
        # Block -> block id of each driver line, sparse: the id changes rarely.
        self._driver_blocks: list[tuple[int, int | None]] = []
        self._driver_starts: list[int] = []
        self._node_order: list[str] = []
        self._moments: dict[int, tuple[int, ...]] = {}
        self._open: list[int] = []
        self.events_seen = 0
        self.finished = threading.Event()
        self.result: ScriptFinished | None = None
        self.error: str | None = None
        # The error lines (tracebacks), newest last; a bounded tail.
        self.error_lines: list[str] = []

    # -- streaming ----------------------------------------------------------------

    def stream(self, publish: Callable[[Event], None], cancel: threading.Event | None = None) -> None:
        """Publish every event of the source (call in a worker thread)."""
        try:
            for event in self.source.events():
                if cancel is not None and cancel.is_set():
                    return
                self._keep(event)
                publish(event)
        except OSError as exc:
            self.error = f"reading {self.source.path} failed: {exc}"
        finally:
            self.finished.set()

    def _keep(self, event: Event) -> None:
        self.events_seen += 1
        if isinstance(event, ConsoleOutput):
            self._spool(event.machine).append(event.lines)
        elif isinstance(event, BlockOpened):
            self._moments[event.block_id] = tuple(self.consoles[n].count for n in self._node_order)
            self._driver_line(f"{event.machine}: {event.title}" if event.machine else event.title, event.block_id)
            self._open.append(event.block_id)
        elif isinstance(event, BlockClosed):
            if event.block_id in self._open:
                self._open.remove(event.block_id)
            if not event.ok and event.error:
                self._driver_line(f"failed: {event.error}", event.block_id)
        elif isinstance(event, LogMessage):
            if event.level >= LogLevel.ERROR:
                self.error_lines.extend(event.message.splitlines() or [""])
                del self.error_lines[:-MAX_ERROR_LINES]
            prefix = f"{event.machine}: " if event.machine else ""
            for line in event.message.splitlines() or [""]:
                self._driver_line(prefix + line, self._open[-1] if self._open else None)
        elif isinstance(event, ScriptFinished):
            self.result = event

    def _spool(self, machine: str) -> LineSpool:
        spool = self.consoles.get(machine)
        if spool is None:
            spool = LineSpool(self.spool_dir / f"console-{len(self.consoles)}.spool")
            self.consoles[machine] = spool
            self._node_order.append(machine)
        return spool

    def _driver_line(self, text: str, block_id: int | None) -> None:
        if not self._driver_blocks or self._driver_blocks[-1][1] != block_id:
            self._driver_blocks.append((self.driver_lines.count, block_id))
            self._driver_starts.append(self.driver_lines.count)
        self.driver_lines.append([text])

    # -- jumps --------------------------------------------------------------------

    def moment_of(self, block_id: int) -> dict[str, int] | None:
        """Console lines each node had printed when the block opened."""
        counts = self._moments.get(block_id)
        if counts is None:
            return None
        return {name: counts[i] if i < len(counts) else 0 for i, name in enumerate(self._node_order)}

    def console_window(self, machine: str, line: int, *, before: int, after: int) -> tuple[int, list[str]]:
        """(number of the first line, lines) around console line `line` of a node."""
        spool = self.consoles.get(machine)
        if spool is None:
            return 0, []
        start = max(0, line - before)
        return start, spool.read(start, line + after)

    def console_count(self, machine: str) -> int:
        spool = self.consoles.get(machine)
        return spool.count if spool is not None else 0

    def block_of_driver_line(self, number: int) -> int | None:
        index = bisect.bisect_right(self._driver_starts, number) - 1
        return self._driver_blocks[index][1] if index >= 0 else None

    def search(
        self, term: str, *, limit: int = 500, cancel: threading.Event | None = None, script: str | None = None
    ) -> list[SearchHit]:
        """Lines containing `term`: in the script (if given), the driver's lines, every console."""
        hits: list[SearchHit] = []
        if not term:
            return hits
        wanted = term.lower()
        for number, text in enumerate((script or "").splitlines()):
            if wanted in text.lower() and len(hits) < limit:
                hits.append(SearchHit(SCRIPT, number, text, None, term))
        for number, text in self.driver_lines.scan(term, limit - len(hits), cancel):
            hits.append(SearchHit(DRIVER_LOG, number, text, self.block_of_driver_line(number), term))
        for machine in list(self._node_order):
            if len(hits) >= limit:
                break
            for number, text in self.consoles[machine].scan(term, limit - len(hits), cancel):
                hits.append(SearchHit(machine, number, text, None, term))
        return hits

    def close(self) -> None:
        for spool in (*self.consoles.values(), self.driver_lines):
            spool.close()
