"""A vmtui run record (driver/record.py) -> the events it stored, in order.

`events.jsonl` holds every event; a ConsoleOutput names a range of lines of
`consoles/<node>.log`, read here as the events come.  Rotated files
(`<name>.1`, then `<name>` starting with the rotation note) are read in
order; lines a rotation dropped are skipped, with a note in the pane.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from driver.event_codec import EventDecodeError, decode_event
from driver.events import ConsoleOutput, Event
from driver.record import ROTATION_NOTE_RE, safe_name


def _rotated_parts(path: Path) -> list[Path]:
    older = path.with_name(path.name + ".1")
    return [p for p in (older, path) if p.is_file()]


def _starting_line(first_line: str) -> int | None:
    match = ROTATION_NOTE_RE.match(first_line.rstrip("\n"))
    return int(match.group(1)) if match else None


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a capped log, across its rotation."""
    for part in _rotated_parts(path):
        with open(part, encoding="utf-8", errors="replace", newline="\n") as stream:
            number = 0
            first = True
            for raw in stream:
                if first:
                    first = False
                    start = _starting_line(raw)
                    if start is not None:
                        number = start
                        continue
                yield number, raw.rstrip("\n")
                number += 1


class _ConsoleCursor:
    """Reads one node's console log forward, by line number."""

    def __init__(self, path: Path) -> None:
        self._lines = read_lines(path)
        self._pending: tuple[int, str] | None = None

    def take(self, first: int, count: int) -> tuple[str, ...]:
        end = first + count
        out: list[str] = []
        while True:
            item = self._pending or next(self._lines, None)
            self._pending = None
            if item is None:
                break
            number, text = item
            if number < first:
                continue
            if number >= end:
                self._pending = item
                break
            out.append(text)
        if not out and count:
            return (f"[vmtui: {count} console lines here were rotated out of the record]",)
        return tuple(out)


class RecordReader:
    """Streams the events of one record directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bad_lines = 0

    def events(self) -> Iterator[Event]:
        cursors: dict[str, _ConsoleCursor] = {}
        for _, line in read_lines(self.directory / "events.jsonl"):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise EventDecodeError("not an object")
                if data.get("type") == "ConsoleOutput":
                    machine = str(data.get("machine", "?"))
                    cursor = cursors.get(machine)
                    if cursor is None:
                        cursor = cursors[machine] = _ConsoleCursor(self._console_path(machine))
                    lines = cursor.take(int(data.get("first", 0)), int(data.get("count", 0)))
                    yield ConsoleOutput(machine=machine, lines=lines, timestamp=float(data.get("t", 0.0)))
                    continue
                yield decode_event(data)
            except (ValueError, EventDecodeError):
                # A line cut by a crash, or from a newer vmtui: skip it, count it.
                self.bad_lines += 1

    def _console_path(self, machine: str) -> Path:
        return self.directory / "consoles" / f"{safe_name(machine)}.log"
