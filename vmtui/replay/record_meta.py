"""A run record's meta.json, checked before replay trusts any of it.

vmtui writes meta.json whole (a temp file, then a rename), so a record of a
run that crashed still has a sound one.  A meta.json that is not JSON, lacks
a key vmtui always writes, or has a value of the wrong type was edited or
comes from elsewhere; replaying it would open panes named after the
characters of a string or a script pane showing a file outside the record.
Replay refuses such a record with one line naming the file and the first
bad field (the user can fix or delete it); unknown extra keys are ignored,
so a newer vmtui may add fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from driver.errors import ConfigError
from driver.record import RECORD_FORMAT, RECORD_VERSION

__all__ = ["RecordMeta", "load_record_meta"]

# Keys that may be missing or null, and the type of their value otherwise.
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "ok": (bool,),
    "error": (str,),
    "error_line": (int,),
    "started": (str,),
    "ended": (str,),
    "kind": (str,),
}


@dataclass(frozen=True)
class RecordMeta:
    """What replay uses of meta.json: the test's name, its nodes, the copied script and source."""

    test: str
    nodes: list[str]
    script: Path | None
    source: Path | None


def load_record_meta(directory: Path) -> RecordMeta:
    """Read and check `<directory>/meta.json`; a ConfigError with one line if anything is off."""
    path = directory / "meta.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{directory}: not a vmtui run record (no meta.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({_reason(exc)})") from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"{path}: not valid JSON{where}, so not a record replay can open") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: not a JSON object, so not a record replay can open")
    if meta.get("format") != RECORD_FORMAT:
        raise ConfigError(f'{path}: not the meta.json of a vmtui run record (no "format": "{RECORD_FORMAT}")')
    return _checked(path, directory, meta)


def _checked(path: Path, directory: Path, meta: dict[str, Any]) -> RecordMeta:
    version = _required(path, meta, "version")
    if not _is_int(version) or version < 1:
        _bad(path, "version", "a positive whole number", version)
    if version > RECORD_VERSION:
        raise ConfigError(f"{path}: record version {version} was written by a newer vmtui (this one reads {RECORD_VERSION})")
    test = _required(path, meta, "test")
    if not isinstance(test, str) or not test.strip():
        _bad(path, "test", "the test's name", test)
    nodes = _required(path, meta, "nodes")
    if not isinstance(nodes, list) or not all(_is_node_name(node) for node in nodes):
        _bad(path, "nodes", "a list of node names", nodes)
    if len(set(nodes)) != len(nodes):
        raise ConfigError(f'{path}: "nodes" names a node twice')
    for key, types in _OPTIONAL.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, types) or (int in types and isinstance(value, bool))):
            _bad(path, key, f"{' or '.join(t.__name__ for t in types)} or null", value)
    return RecordMeta(
        test=test,
        nodes=list(nodes),
        script=_file_in_record(path, directory, meta, "script"),
        source=_file_in_record(path, directory, meta, "source"),
    )


def _file_in_record(path: Path, directory: Path, meta: dict[str, Any], key: str) -> Path | None:
    """A copied file named by meta.json: a plain file name inside the record, never a path out of it."""
    name = meta.get(key)
    if name is None:
        return None
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\x00" in name:
        _bad(path, key, "the name of a file in the record", name)
    return directory / name


def _required(path: Path, meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ConfigError(f'{path}: "{key}" is missing (vmtui writes it in every record)')
    return meta[key]


def _bad(path: Path, key: str, wanted: str, value: Any) -> NoReturn:
    shown = json.dumps(value, ensure_ascii=True)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    raise ConfigError(f'{path}: "{key}" should be {wanted}, not {shown}')


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_node_name(value: Any) -> bool:
    # A node name becomes a pane title and a console file name: printable, one line.
    return isinstance(value, str) and bool(value.strip()) and value.isprintable()


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
