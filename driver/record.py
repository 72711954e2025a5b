"""The run record: everything a run published, kept on disk.

A `RunRecord` is a bus subscriber writing one directory:

    meta.json               what ran, when, the nodes, the outcome
    consoles/<node>.log     the node's serial console, line by line as received
    driver.log              the NixOS terminal format (what `nix log` shows), no colours
    events.jsonl            every event, one JSON object a line (driver/event_codec.py)
    <script>, <source>      the test script and its .toml/.nix source, by their own names
    failure/                on failure: failure.txt (statement, error, traceback),
                            screenshot-<node>.png of graphical nodes, and for a
                            failed wait for a unit unit-<node>-<unit>.txt

Every file is bounded (`max_file_bytes`): when one reaches its cap it is
renamed to `<name>.1` (replacing an older one) and a new file starts with a
note saying where it cut, so a flooding guest costs at most twice the cap per
file.  Nothing here knows about a UI.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

from driver.config import TestConfig
from driver.event_codec import encode_event
from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    Event,
    LogLevel,
    LogMessage,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
)

RECORD_FORMAT = "vmtui-run"
RECORD_VERSION = 1
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
# The note that starts a file continued after a rotation; replay reads the
# line number back from it.
ROTATION_NOTE = "[vmtui record: cut here: {bytes} bytes reached; the part before is in {older} (older output dropped); this file starts at line {first}]"
ROTATION_NOTE_RE = re.compile(r"^\[vmtui record: cut here: .*this file starts at line (\d+)\]$")
_UNIT_WAIT = re.compile(r"^waiting for unit (\S+)")
_JOURNAL_LINES = 200
_FAILURE_COMMAND_TIMEOUT = 30


class CappedLog:
    """A text file of lines that never grows past `max_bytes` (one rotation kept)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max(1024, max_bytes)
        self.lines_written = 0
        self.rotations = 0
        self._size = 0
        self._file: IO[str] | None = open(path, "w", encoding="utf-8", errors="replace")

    def write_lines(self, lines: list[str] | tuple[str, ...]) -> None:
        if self._file is None or not lines:
            return
        text = "".join(line + "\n" for line in lines)
        if self._size + len(text) > self.max_bytes and self._size > 0:
            self._rotate()
        assert self._file is not None
        self._file.write(text)
        self._file.flush()
        self._size += len(text)
        self.lines_written += len(lines)

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        older = self.path.with_name(self.path.name + ".1")
        os.replace(self.path, older)
        self.rotations += 1
        self._file = open(self.path, "w", encoding="utf-8", errors="replace")
        note = ROTATION_NOTE.format(bytes=self.max_bytes, older=older.name, first=self.lines_written)
        self._file.write(note + "\n")
        self._size = len(note) + 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def nixos_log_lines(event: Event, titles: dict[int, tuple[str, str | None]]) -> list[str]:
    """An event as lines of the NixOS driver's terminal log, without colours.

    `titles` carries block titles from BlockOpened to BlockClosed (the
    caller keeps it per run).
    """
    if isinstance(event, LogMessage):
        prefix = "!!! " if event.level >= LogLevel.ERROR else ""
        return [prefix + _prefixed(line, event.machine) for line in (event.message.splitlines() or [""])]
    if isinstance(event, BlockOpened):
        titles[event.block_id] = (event.title, event.machine)
        return [_prefixed(event.title, event.machine)]
    if isinstance(event, BlockClosed):
        title, machine = titles.pop(event.block_id, ("?", None))
        if not event.ok or event.duration is None:
            # NixOS prints no "finished" line for a block left by an exception.
            return []
        return [_prefixed(f"(finished: {title}, in {event.duration:.2f} seconds)", machine)]
    if isinstance(event, ConsoleOutput):
        return [f"{event.machine} # {strip_ansi(line)}" for line in event.lines]
    return []


# OSC (titles, hyperlinks) up to BEL or ST, CSI, charset selection, other two-byte escapes.
_ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    # Only the escapes go: driver.log keeps a console line's own bytes (tabs,
    # a `\r` redraw) as NixOS's log does, so replaying it gives the record's
    # console lines back exactly; a reader decodes them (driver.terminal_text).
    return _ANSI.sub("", text)


def _prefixed(text: str, machine: str | None) -> str:
    return f"{machine}: {text}" if machine else text


class FailureMachine(Protocol):
    """What a failure bundle needs from a machine (driver.machine.Machine fits)."""

    name: str

    def is_up(self) -> bool: ...
    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: float | None = 900) -> tuple[int, str]: ...
    def screenshot(self, filename: str) -> None: ...
    def is_graphical(self) -> bool: ...


@dataclass
class FailureInfo:
    """What the record saw of the last failed run."""

    run_id: int
    error: str | None
    error_line: int | None
    statement: tuple[int, int] | None = None
    traceback: list[str] = field(default_factory=list)
    # (machine, unit) of a failed `waiting for unit ...` block.
    unit_wait: tuple[str, str] | None = None


class RunRecord:
    """See the module docstring.  Subscribe it to the bus; `close()` at the end."""

    def __init__(
        self,
        directory: Path,
        config: TestConfig,
        *,
        kind: str,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.directory = directory
        self.config = config
        self.max_file_bytes = max_file_bytes
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "consoles").mkdir(exist_ok=True)
        # Reentrant: a signal announcement may be recorded on the main thread
        # while it is inside a write of its own.
        self._lock = threading.RLock()
        self._consoles: dict[str, CappedLog] = {}
        self._driver_log = CappedLog(directory / "driver.log", max_file_bytes)
        self._events = CappedLog(directory / "events.jsonl", max_file_bytes)
        self._titles: dict[int, tuple[str, str | None]] = {}
        self._open_titles: dict[int, tuple[str, str | None]] = {}
        self._run_errors: list[str] = []
        self._failed_statement: tuple[int, int] | None = None
        self._unit_wait: tuple[str, str] | None = None
        self.failure: FailureInfo | None = None
        self.closed = False
        # Monotonic event timestamps become wall-clock ones through this pair.
        self._wall0, self._mono0 = time.time(), time.monotonic()
        self.meta: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "version": RECORD_VERSION,
            "kind": kind,
            "test": config.name,
            "nodes": [node.name for node in config.nodes],
            "started": _iso(self._wall0),
            "monotonic_start": self._mono0,
            "ended": None,
            "ok": None,
            "script": None,
            "source": None,
            "error": None,
            "error_line": None,
        }
        self.meta["script"] = self._copy_source(config.script_path)
        if config.source_path is not None and config.source_path != config.script_path:
            self.meta["source"] = self._copy_source(config.source_path)
        self._write_meta()

    # -- files ------------------------------------------------------------------

    def console_path(self, machine: str) -> Path:
        return self.directory / "consoles" / f"{safe_name(machine)}.log"

    def _copy_source(self, path: Path) -> str | None:
        if not path.is_file():
            return None
        name = path.name
        if name in ("meta.json", "driver.log", "events.jsonl") or name.endswith(".1"):
            name = f"source-{name}"
        try:
            shutil.copyfile(path, self.directory / name)
        except OSError:
            return None
        return name

    def _write_meta(self) -> None:
        tmp = self.directory / "meta.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.directory / "meta.json")

    # -- the subscriber -----------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self.closed:
                return
            first: int | None = None
            if isinstance(event, ConsoleOutput):
                log = self._console(event.machine)
                first = log.lines_written
                log.write_lines(event.lines)
            record = encode_event(event, console_first=first)
            record["wall"] = round(self._wall0 + (event.timestamp - self._mono0), 6)
            self._events.write_lines([json.dumps(record, ensure_ascii=False)])
            self._driver_log.write_lines(nixos_log_lines(event, self._titles))
            self._track_failure(event)

    def _console(self, machine: str) -> CappedLog:
        log = self._consoles.get(machine)
        if log is None:
            log = CappedLog(self.console_path(machine), self.max_file_bytes)
            self._consoles[machine] = log
        return log

    def _track_failure(self, event: Event) -> None:
        if isinstance(event, ScriptStarted):
            self._run_errors = []
            self._failed_statement = None
            self._unit_wait = None
            if self.config.script_path.is_file():
                self.meta["script"] = self._copy_source(self.config.script_path)
        elif isinstance(event, LogMessage) and event.level >= LogLevel.ERROR:
            self._run_errors.extend(_prefixed(line, event.machine) for line in event.message.splitlines())
        elif isinstance(event, BlockOpened):
            self._open_titles[event.block_id] = (event.title, event.machine)
        elif isinstance(event, BlockClosed):
            title, machine = self._open_titles.pop(event.block_id, ("", None))
            match = _UNIT_WAIT.match(title)
            if not event.ok and match and machine and self._unit_wait is None:
                self._unit_wait = (machine, match.group(1))
        elif isinstance(event, StatementFinished) and not event.ok:
            self._failed_statement = (event.line, event.end_line)
        elif isinstance(event, ScriptFinished):
            self.meta["ok"] = event.ok
            self.meta["error"] = event.error
            self.meta["error_line"] = event.error_line
            if not event.ok and not event.cancelled:
                self.failure = FailureInfo(
                    run_id=event.run_id,
                    error=event.error,
                    error_line=event.error_line,
                    statement=self._failed_statement,
                    traceback=list(self._run_errors),
                    unit_wait=self._unit_wait,
                )
            self._write_meta()

    # -- the failure bundle ----------------------------------------------------------

    def write_failure_bundle(self, machines: Sequence[FailureMachine] | None = None) -> Path | None:
        """Write `failure/` for the last failed run; None when no run failed.

        With `machines` (the driver's, still up), also a screenshot of each
        graphical node and, for a failed wait for a unit, its status and
        journal tail.  Blocks on the guests: call it where a run may block.
        """
        info = self.failure
        if info is None:
            return None
        folder = self.directory / "failure"
        folder.mkdir(exist_ok=True)
        lines = [f"run {info.run_id} failed: {info.error or 'unknown error'}"]
        script = self.meta.get("script")
        if info.error_line is not None:
            lines.append(f"failing line: {script or self.config.script_path.name}:{info.error_line}")
            source = _source_line(self.directory / script if script else self.config.script_path, info.error_line)
            if source:
                lines.append(f"    {source}")
        if info.statement is not None:
            lines.append(f"failing statement: lines {info.statement[0]}-{info.statement[1]}")
        if info.unit_wait is not None:
            lines.append(f"failed waiting for unit {info.unit_wait[1]} on {info.unit_wait[0]}")
        lines += ["", *info.traceback]
        notes: list[str] = []
        for machine in machines or []:
            notes.extend(self._collect_from(machine, info, folder))
        if notes:
            lines += ["", *notes]
        (folder / "failure.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return folder

    def _collect_from(self, machine: FailureMachine, info: FailureInfo, folder: Path) -> list[str]:
        notes: list[str] = []
        name = str(getattr(machine, "name", "?"))
        try:
            up = bool(machine.is_up())
        except Exception:  # a broken machine must not lose the rest of the bundle
            up = False
        if not up:
            return [f"{name}: not running, nothing collected"]
        try:
            graphical = machine.is_graphical()
        except Exception as exc:  # a broken monitor must not lose the rest of the bundle
            graphical = False
            notes.append(f"{name}: no screenshot ({_first_line(exc)})")
        else:
            if not graphical:
                notes.append(f"{name}: no screenshot (no display device)")
        if graphical:
            shot = folder / f"screenshot-{safe_name(name)}.png"
            try:
                machine.screenshot(str(shot))
                notes.append(f"{name}: screenshot {shot.name}")
            except Exception as exc:  # the display went away meanwhile
                notes.append(f"{name}: no screenshot ({_first_line(exc)})")
        if info.unit_wait is not None and info.unit_wait[0] == name:
            unit = info.unit_wait[1]
            quoted = shlex.quote(unit)
            parts = []
            for title, command in (
                ("systemctl status", f"systemctl status --no-pager --full {quoted}"),
                ("journal tail", f"journalctl --no-pager -n {_JOURNAL_LINES} -u {quoted}"),
            ):
                try:
                    status, output = machine.execute(command, timeout=_FAILURE_COMMAND_TIMEOUT)
                    parts.append(f"$ {command}   (exit status {status})\n{output}")
                except Exception as exc:
                    parts.append(f"$ {command}\n(could not run: {_first_line(exc)})")
            path = folder / f"unit-{safe_name(name)}-{safe_name(unit)}.txt"
            path.write_text("\n\n".join(parts), encoding="utf-8")
            notes.append(f"{name}: {unit} status and journal in {path.name}")
        return notes

    # -- the end ----------------------------------------------------------------------

    def close(self, ok: bool | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for log in (*self._consoles.values(), self._driver_log, self._events):
                log.close()
            if ok is not None:
                self.meta["ok"] = ok
            self.meta["ended"] = _iso(time.time())
            self.meta["rotated"] = sorted(
                str(log.path.relative_to(self.directory))
                for log in (*self._consoles.values(), self._driver_log, self._events)
                if log.rotations
            )
            self._write_meta()


def _source_line(path: Path, line: int) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", name) or "_"


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec="seconds")


# -- where records live ------------------------------------------------------------


def headless_record_directory(out_dir: Path) -> Path:
    """`<out dir>/vmtui-run`, emptied of an earlier record (only if it is one)."""
    directory = out_dir / "vmtui-run"
    if directory.exists():
        if not is_record(directory):
            from driver.errors import ConfigError

            raise ConfigError(f"{directory} exists and is not a vmtui run record; move it away")
        shutil.rmtree(directory)
    return directory


def runs_root() -> Path:
    """`$XDG_STATE_HOME/vmtui/runs` (default `~/.local/state/vmtui/runs`)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vmtui" / "runs"


def runs_directory_of(test_name: str) -> Path:
    return runs_root() / safe_name(test_name)


def new_tui_record_directory(test_name: str, *, keep: int) -> Path:
    """A fresh `<runs>/<test>/<time>/`; older runs beyond the last `keep` are removed."""
    parent = runs_directory_of(test_name)
    parent.mkdir(parents=True, exist_ok=True)
    # Names sort as the runs started (milliseconds: two sessions in one second).
    while True:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S.%f")[:-3]
        directory = parent / stamp
        if not directory.exists():
            break
        time.sleep(0.001)
    prune_runs(parent, keep=max(0, keep - 1))
    directory.mkdir()
    return directory


def list_runs(parent: Path) -> list[Path]:
    """The records under `parent`, oldest first (names are timestamps)."""
    if not parent.is_dir():
        return []
    return sorted(path for path in parent.iterdir() if path.is_dir() and is_record(path))


def prune_runs(parent: Path, *, keep: int) -> list[Path]:
    """Remove all but the newest `keep` records under `parent`; returns the removed ones."""
    runs = list_runs(parent)
    doomed = runs[: max(0, len(runs) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def is_record(path: Path) -> bool:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == RECORD_FORMAT


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
