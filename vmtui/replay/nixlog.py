"""A NixOS driver's terminal log (what `nix log`, Hydra or `nix build -L` show) -> driver events.

The log is one interleaved stream on stderr (reference §4):

    server: must succeed: curl -f localhost      a block opens (bright green when coloured)
    server # [    3.21] nginx[712]: started       a serial line of node `server` (dimmed)
    server: (finished: must succeed: ..., in 0.52 seconds)
    (0.52 seconds)                               the same, in logs of the env-var era
    !!! Traceback (most recent call last):       a test error (red `!!! `)

Blocks nest by sequence only.  A block left by an exception has no
"finished" line: blocks still open when the driver's `cleanup` block starts,
or when the log ends, failed.  Lines may carry the `vm-test-run-<name>> `
prefix of `nix build -L` or the `       > ` of Nix's last-lines excerpt.

`NixosLogParser.feed(line)` returns the events of one line, so a reader can
stream a log of any size; `finish()` closes what is still open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    Event,
    LogLevel,
    LogMessage,
    MachineState,
    MachineStateChanged,
    ScriptFinished,
    ScriptStarted,
)
from driver.terminal_text import plain_line
from vmtui.replay.script_match import ScriptMatcher, failing_line_of

_BUILD_PREFIX = re.compile(r"^(?:vm-test-run-[^>\s]*> |\s{0,8}> )")
# What moves the cursor back to redraw a row, and the prefixes a redraw must not overwrite.
_REDRAW = re.compile(r"[\r\b]")
_LINE_PREFIX = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*: |!!! )")
_NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Serial lines held before they are published as one ConsoleOutput per node.
MAX_HELD_LINES = 2048
_MACHINE_PREFIX = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*): (.*)$")
_FINISHED = re.compile(r"^\(finished: (.*), in (\d+(?:\.\d+)?) seconds\)$")
_OLD_FINISHED = re.compile(r"^\((\d+(?:\.\d+)?) seconds\)$")
_QEMU_RUNNING = re.compile(r"^QEMU running \(pid (\d+)\)$")
# colorama's BRIGHT + GREEN: how the terminal logger paints a block title.
_GREEN_TITLE = "\x1b[1m\x1b[32m"
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
# Block titles of the NixOS driver (and of vmtui), for logs without colours.
_BLOCK_PREFIXES = (
    "must succeed: ", "must fail: ", "waiting for", "wait for", "subtest: ", "checking if unit ",
    "checking polling condition", "making screenshot", "sending key", "start all VMs",
    "start all VLans", "run the VM test script", "cleanup", "rebooting", "restarting ",
    "simulate forced crash", "timeout reached", "copying ", "cleaning up",
)
# The driver's last block; blocks still open when it starts were left by the failure.
_CLEANUP_TITLES = ("cleanup", "cleaning up")
# Messages that show a name before ": " is a node, not a word like "error".
_MACHINE_MESSAGES = ("QEMU running", "connected to guest root shell", "(connecting took", "starting vm")


def strip_build_prefix(line: str) -> str:
    return _BUILD_PREFIX.sub("", line, count=1)


@dataclass
class _Open:
    block_id: int
    title: str
    machine: str | None
    # Painted as a block title; an uncoloured log's blocks are guessed from their titles.
    coloured: bool = False


@dataclass
class NixosLogParser:
    """See the module docstring.  One parser per log."""

    filename: str = "log"
    script: ScriptMatcher | None = None
    machines: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    ok: bool = True
    _stack: list[_Open] = field(default_factory=list)
    _next_id: int = 1
    _started: bool = False
    _elapsed: float = 0.0
    _in_plain_traceback: bool = False
    _pending: dict[str, list[str]] = field(default_factory=dict)
    _held: int = 0

    def feed(self, raw: str) -> list[Event]:
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(ScriptStarted(filename=self.filename, run_id=1, timestamp=0.0))
        line = raw.rstrip("\r\n")
        if line[:1] in ("v", " "):
            line = strip_build_prefix(line)
        serial = _split_serial(line)
        if serial is not None:
            # Serial lines are most of a log: held and published per node in
            # runs, the way a serial reader publishes them.
            machine, text = serial
            held = self._pending.get(machine)
            if held is None:
                held = self._pending[machine] = []
                self.machines.add(machine)
            held.append(text)
            self._held += 1
            if self._held >= MAX_HELD_LINES:
                events.extend(self._flush())
            return events
        events.extend(self._flush())
        events.extend(self._other(line))
        return events

    def _flush(self) -> list[Event]:
        if not self._held:
            return []
        events: list[Event] = [ConsoleOutput(machine=m, lines=tuple(lines), timestamp=0.0)
                               for m, lines in self._pending.items()]
        self._pending, self._held = {}, 0
        return events

    def _other(self, line: str) -> list[Event]:
        events: list[Event] = []
        # The driver's own lines as a terminal would show them (a `\r`-redrawn
        # line by its last drawing), with no escape or control left for a widget.
        plain = _driver_plain(line)
        if plain.startswith("!!! ") or plain == "!!!":
            message = plain[4:]
            self._error(message)
            events.append(LogMessage(message=message, level=LogLevel.ERROR, timestamp=0.0))
            return events
        machine, text = self._split_machine(plain)
        if self._in_plain_traceback or text.startswith("Traceback (most recent call last):"):
            # An uncaught exception (older drivers): Python's own traceback on stderr.
            self._in_plain_traceback = not _ends_traceback(text)
            self._error(text)
            events.append(LogMessage(message=plain, level=LogLevel.ERROR, timestamp=0.0))
            return events
        finished = _FINISHED.match(text)
        if finished:
            events.extend(self._close(finished.group(1), machine, float(finished.group(2))))
            return events
        old = _OLD_FINISHED.match(text)
        if old and self._stack:
            events.extend(self._close(self._stack[-1].title, self._stack[-1].machine, float(old.group(1))))
            return events
        coloured = line.find(_GREEN_TITLE) != -1
        if coloured or text.startswith(_BLOCK_PREFIXES):
            if text in _CLEANUP_TITLES and machine is None:
                # The script's blocks that never finished were left by the failure.
                events.extend(self._fail_open("the test failed before this block finished"))
            events.append(self._open(text, machine, coloured=coloured))
            return events
        events.extend(self._machine_state(machine, text))
        events.append(LogMessage(message=text, machine=machine, timestamp=0.0))
        return events

    def finish(self) -> list[Event]:
        """Close what is still open; the run's verdict."""
        events: list[Event] = []
        if not self._started:
            events.append(ScriptStarted(filename=self.filename, run_id=1, timestamp=0.0))
        events.extend(self._flush())
        events.extend(self._fail_open("the log ends before this block finished"))
        error = self.errors[-1] if self.errors else None
        line = failing_line_of(self.errors)
        events.append(
            ScriptFinished(run_id=1, ok=self.ok, duration=self._elapsed, error=None if self.ok else error,
                           error_line=None if self.ok else line, timestamp=0.0)
        )
        return events

    # -- pieces ---------------------------------------------------------------------

    def _split_machine(self, plain: str) -> tuple[str | None, str]:
        match = _MACHINE_PREFIX.match(plain)
        if match is None:
            return None, plain
        name, rest = match.group(1), match.group(2)
        if name in self.machines or _FINISHED.match(rest) or rest.startswith(_BLOCK_PREFIXES + _MACHINE_MESSAGES):
            self.machines.add(name)
            return name, rest
        return None, plain

    def _open(self, title: str, machine: str | None, *, coloured: bool = False) -> BlockOpened:
        block_id = self._next_id
        self._next_id += 1
        parent = self._stack[-1].block_id if self._stack else None
        self._stack.append(_Open(block_id, title, machine, coloured))
        line = self.script.line_for(title) if self.script is not None else None
        kind = "subtest" if title.startswith("subtest: ") else "nested"
        return BlockOpened(block_id=block_id, parent_id=parent, title=title, machine=machine, kind=kind,
                           script_line=line, timestamp=0.0)

    def _close(self, title: str, machine: str | None, duration: float) -> list[Event]:
        events: list[Event] = []
        index = next((i for i in range(len(self._stack) - 1, -1, -1)
                      if self._stack[i].title == title and self._stack[i].machine == machine), None)
        if index is None:
            # A title this parser took for a message: show it as a block that just ended.
            opened = self._open(title, machine)
            self._stack.pop()
            return [opened, BlockClosed(block_id=opened.block_id, duration=duration, timestamp=0.0)]
        # Blocks opened after it and never finished are inside it and ended
        # with it: by an exception the script caught (a painted block), or
        # they were messages whose titles only looked like blocks.
        while len(self._stack) > index + 1:
            inner = self._stack.pop()
            events.append(BlockClosed(block_id=inner.block_id, duration=None, ok=not inner.coloured,
                                      error="an exception left it" if inner.coloured else None, timestamp=0.0))
        block = self._stack.pop()
        if not self._stack:
            self._elapsed += duration
        events.append(BlockClosed(block_id=block.block_id, duration=duration, timestamp=0.0))
        return events

    def _fail_open(self, why: str) -> list[Event]:
        events: list[Event] = []
        if self._stack:
            self.ok = False
        error = self.errors[-1] if self.errors else why
        while self._stack:
            block = self._stack.pop()
            events.append(BlockClosed(block_id=block.block_id, duration=None, ok=False, error=error, timestamp=0.0))
        return events

    def _error(self, message: str) -> None:
        self.ok = False
        if message.strip():
            self.errors.append(message)

    def _machine_state(self, machine: str | None, text: str) -> list[Event]:
        if machine is None:
            return []
        running = _QEMU_RUNNING.match(text)
        if running:
            return [MachineStateChanged(machine=machine, state=MachineState.BOOTING, pid=int(running.group(1)),
                                        detail="waiting for the backdoor", timestamp=0.0)]
        if text == "connected to guest root shell":
            return [MachineStateChanged(machine=machine, state=MachineState.CONNECTED, timestamp=0.0)]
        return []


def _driver_plain(line: str) -> str:
    """A driver line as the terminal shows it, each redraw kept after its prefix.

    A `\\r` (or backspace) inside a node's message or an error returns the
    terminal's cursor to the start of the row, so the message's last drawing
    would overwrite `server: ` or `!!! `; the pane shows the prefix apart, so
    the message is played on its own row.
    """
    redraw = _REDRAW.search(line)
    if redraw is None:
        return plain_line(line)
    prefix = _LINE_PREFIX.match(plain_line(line[: redraw.start()]))
    if prefix is not None:
        at = line.find(prefix.group(1))
        if at != -1:
            return prefix.group(1) + plain_line(line[at + len(prefix.group(1)):])
    return plain_line(line)


def _split_serial(line: str) -> tuple[str, str] | None:
    """(node, the guest's text) of a serial line `<node> # <text>`, else None.

    The logger dims serial lines (the guest's own colours inside stay); a
    node name has no spaces or colons, which tells `server: echo a # b` apart.
    """
    if line.startswith(_DIM):
        line = line[len(_DIM):]
        if line.endswith(_RESET):
            line = line[: -len(_RESET)]
    elif line.startswith("\x1b"):
        return None
    cut = line.find(" #")
    if cut <= 0 or not _NODE_NAME.fullmatch(line, 0, cut):
        return None
    rest = line[cut + 2:]
    if rest and rest[0] != " ":
        return None
    return line[:cut], rest[1:]


def _ends_traceback(text: str) -> bool:
    # The exception line: `AssertionError: ...`, `test_driver.errors.RequestedAssertionFailed: ...`.
    return bool(re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Exit|Interrupt)\b", text))
