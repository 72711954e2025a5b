"""What `vmtui replay PATH` opens: a run record, a NixOS terminal log, or a NixOS XML log.

`open_source(path, script)` looks at the path (a directory with meta.json, or
the first bytes of a file) and returns a `ReplaySource` whose `events()`
streams driver events, the same ones the live UI gets.  Compressed logs
(`.gz`, `.bz2`, `.xz`, as saved from Hydra) are read as they are.  Bad input
is a `ConfigError` with one line.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

from driver.errors import ConfigError
from driver.events import ConsoleOutput, Event
from vmtui.replay.nixlog import NixosLogParser
from vmtui.replay.record_meta import load_record_meta
from vmtui.replay.recordlog import RecordReader
from vmtui.replay.script_match import ScriptMatcher
from vmtui.replay.xmllog import XmlLogParser

_OPENERS: dict[str, Callable[[Path], IO[bytes]]] = {
    ".gz": lambda p: gzip.open(p, "rb"),  # type: ignore[dict-item, return-value]
    ".bz2": lambda p: bz2.open(p, "rb"),
    ".xz": lambda p: lzma.open(p, "rb"),
}
_SNIFF_BYTES = 64 * 1024


@dataclass
class ReplaySource:
    kind: str  # "record", "nixos-log", "xml-log"
    path: Path
    name: str
    nodes: list[str] = field(default_factory=list)
    script_path: Path | None = None
    source_path: Path | None = None
    script_text: str | None = None

    def describe(self) -> str:
        return {"record": "vmtui run record", "nixos-log": "NixOS driver log", "xml-log": "NixOS XML log"}[self.kind]

    def events(self) -> Iterator[Event]:
        if self.kind == "record":
            yield from RecordReader(self.path).events()
            return
        yield from coalesce_console(self._log_events())

    def _log_events(self) -> Iterator[Event]:
        matcher = ScriptMatcher(self.script_text) if self.script_text is not None else None
        with _open_binary(self.path) as stream:
            if self.kind == "xml-log":
                yield from XmlLogParser(filename=self.path.name, script=matcher).parse(stream)
                return
            parser = NixosLogParser(filename=self.path.name, script=matcher)
            for raw in stream:
                events = parser.feed(raw.decode("utf-8", "replace"))
                if events:
                    yield from events
            yield from parser.finish()


def coalesce_console(events: Iterator[Event], max_lines: int = 2048) -> Iterator[Event]:
    """Runs of serial lines as one ConsoleOutput per node, as a serial reader publishes them.

    A log has one event per serial line; merging them is what keeps a big
    log cheap to draw.  Lines are held only until the next other event, so
    every block still sees exactly the console lines printed before it.
    """
    pending: dict[str, list[str]] = {}
    held = 0
    for event in events:
        if isinstance(event, ConsoleOutput):
            pending.setdefault(event.machine, []).extend(event.lines)
            held += len(event.lines)
            if held < max_lines:
                continue
        if pending:
            for machine, lines in pending.items():
                yield ConsoleOutput(machine=machine, lines=tuple(lines), timestamp=0.0)
            pending, held = {}, 0
        if not isinstance(event, ConsoleOutput):
            yield event
    for machine, lines in pending.items():
        yield ConsoleOutput(machine=machine, lines=tuple(lines), timestamp=0.0)


def _open_binary(path: Path) -> IO[bytes]:
    opener = _OPENERS.get(path.suffix)
    return opener(path) if opener is not None else open(path, "rb")


def open_source(path: Path, script: Path | None = None) -> ReplaySource:
    """Recognise what `path` is; raises ConfigError with a one-line reason."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    script_text = _read_script(script) if script is not None else None
    if path.is_dir() or path.name in ("meta.json", "events.jsonl") and (path.parent / "meta.json").is_file():
        directory = path if path.is_dir() else path.parent
        meta = load_record_meta(directory)
        chosen = script if script is not None else meta.script
        return ReplaySource(
            kind="record", path=directory, name=meta.test,
            nodes=meta.nodes,
            script_path=chosen if chosen is not None and chosen.is_file() else None,
            source_path=meta.source if meta.source is not None and meta.source.is_file() else None,
            script_text=script_text,
        )
    try:
        with _open_binary(path) as stream:
            head = stream.read(_SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    if b"\x00" in head:
        raise ConfigError(f"{path}: not a NixOS test log (binary data)")
    stripped = head.lstrip()
    if not stripped:
        raise ConfigError(f"{path}: empty, nothing to replay")
    kind = "xml-log" if stripped.startswith((b"<?xml", b"<logfile")) else "nixos-log"
    return ReplaySource(kind=kind, path=path, name=_test_name(path), script_path=script, script_text=script_text)


def _read_script(script: Path) -> str:
    try:
        return script.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{script}: no such test script") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{script}: cannot read the test script ({exc})") from None


def _test_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".xz", ".log", ".xml", ".txt"):
        name = name.removesuffix(suffix)
    # `nix log` output saved by its derivation name: <hash>-vm-test-run-<name>.drv
    if "vm-test-run-" in name:
        name = name.split("vm-test-run-", 1)[1].removesuffix(".drv")
    return name or "log"
