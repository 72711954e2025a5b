"""The NixOS driver's XML log (`LOGFILE`) -> driver events, streaming.

Shape (reference §4): `<logfile>` holding `<nest>` blocks, each a
`<head machine=…>title</head>`, its content and a closing
`<line>(finished: title, in N.NN seconds)</line>`; plain messages are
`<line machine=…>text</line>`, serial lines `<line machine=… type="serial">`.

A test that failed leaves the XML broken: the driver's nested blocks do not
close their elements when an exception passes through them, so the
`cleanup` block lands inside the failed ones and `</logfile>` mismatches.
Like the terminal log, blocks still open when `cleanup` starts (or when the
document stops parsing) failed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import IO, Iterator

from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    Event,
    LogLevel,
    LogMessage,
    ScriptFinished,
    ScriptStarted,
)
from driver.terminal_text import plain_line
from vmtui.replay.script_match import ScriptMatcher, failing_line_of

_FINISHED = re.compile(r"^\(finished: (.*), in (\d+(?:\.\d+)?) seconds\)$")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Exit|Interrupt)\b")
CHUNK = 256 * 1024


@dataclass
class _Nest:
    block_id: int | None = None  # None until its <head> ended
    duration: float | None = None
    closed: bool = False


@dataclass
class XmlLogParser:
    filename: str = "log.xml"
    script: ScriptMatcher | None = None
    machines: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    ok: bool = True
    broken: str | None = None
    _nests: list[_Nest] = field(default_factory=list)
    _next_id: int = 1
    _elapsed: float = 0.0
    _in_traceback: bool = False

    def parse(self, stream: IO[bytes]) -> Iterator[Event]:
        yield ScriptStarted(filename=self.filename, run_id=1, timestamp=0.0)
        parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
        root: ET.Element | None = None
        while True:
            chunk = stream.read(CHUNK)
            try:
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
                for item in parser.read_events():
                    kind, element = item  # type: ignore[misc]  # typeshed: a tuple of any length
                    if not isinstance(element, ET.Element):
                        continue  # only "start"/"end" were asked for: always elements
                    if root is None and kind == "start":
                        root = element
                    yield from self._element(kind, element)
                    if kind == "end" and element.tag in ("line", "nest"):
                        # Keep memory flat: drop finished elements from the tree.
                        element.clear()
                        if root is not None and element.tag == "nest":
                            root.clear()
            except ET.ParseError as exc:
                # The usual end of a failed test's log (see the module docstring).
                self.broken = str(exc)
                break
            if not chunk:
                break
        yield from self._fail_open("the log ends before this block finished")
        error = self.errors[-1] if self.errors else None
        yield ScriptFinished(run_id=1, ok=self.ok, duration=self._elapsed, error=None if self.ok else error,
                             error_line=None if self.ok else failing_line_of(self.errors), timestamp=0.0)

    def _element(self, kind: str, element: ET.Element) -> Iterator[Event]:
        tag = element.tag
        if kind == "start":
            if tag == "nest":
                self._nests.append(_Nest())
            return
        machine = element.get("machine")
        if machine:
            self.machines.add(machine)
        text = element.text or ""
        if not (tag == "line" and element.get("type") == "serial"):
            # The driver's own text as a terminal shows it (C1 controls are
            # legal XML; ESC is not); serial lines stay raw for the panes.
            text = plain_line(text)
        if tag == "head":
            if text == "cleanup" and machine is None:
                yield from self._fail_open("the test failed before this block finished")
            open_ids = [n.block_id for n in self._nests[:-1] if n.block_id is not None and not n.closed]
            block_id = self._next_id
            self._next_id += 1
            if self._nests:
                self._nests[-1].block_id = block_id
            line = self.script.line_for(text) if self.script is not None else None
            yield BlockOpened(block_id=block_id, parent_id=open_ids[-1] if open_ids else None, title=text,
                              machine=machine, kind="subtest" if text.startswith("subtest: ") else "nested",
                              script_line=line, timestamp=0.0)
        elif tag == "line":
            if element.get("type") == "serial":
                yield ConsoleOutput(machine=machine or "?", lines=(text,), timestamp=0.0)
                return
            finished = _FINISHED.match(text)
            if finished and self._nests:
                self._nests[-1].duration = float(finished.group(2))
                return
            if self._is_error(text):
                self.ok = False
                if text.strip():
                    self.errors.append(text)
                yield LogMessage(message=text, machine=machine, level=LogLevel.ERROR, timestamp=0.0)
            else:
                yield LogMessage(message=text, machine=machine, timestamp=0.0)
        elif tag == "nest" and self._nests:
            nest = self._nests.pop()
            if nest.block_id is None or nest.closed:
                return
            ok = nest.duration is not None
            if not ok:
                self.ok = False
            elif not any(n.block_id is not None and not n.closed for n in self._nests):
                self._elapsed += nest.duration or 0.0
            yield BlockClosed(block_id=nest.block_id, duration=nest.duration, ok=ok,
                              error=None if ok else (self.errors[-1] if self.errors else "no finished line"),
                              timestamp=0.0)

    def _is_error(self, text: str) -> bool:
        # The XML log has no `!!!`: a traceback runs from its header to the exception line.
        if text.startswith("Traceback (most recent call last):"):
            self._in_traceback = True
            return True
        if self._in_traceback:
            if _EXCEPTION.match(text):
                self._in_traceback = False
            return True
        return text.startswith("Test \"") and "\" failed with error: " in text

    def _fail_open(self, why: str) -> Iterator[Event]:
        error = self.errors[-1] if self.errors else why
        for nest in reversed(self._nests):
            if nest.block_id is not None and not nest.closed:
                nest.closed = True
                self.ok = False
                yield BlockClosed(block_id=nest.block_id, duration=nest.duration, ok=False, error=error,
                                  timestamp=0.0)
