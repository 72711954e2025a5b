"""Small files that let a session pick up where the last one stopped.

Breakpoints are kept per script (by absolute path), the REPL history for all
scripts, both under `$XDG_STATE_HOME/vmtui` (`~/.local/state/vmtui`).  They are
conveniences: an unreadable or unwritable file is ignored, never an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable


def default_state_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "vmtui"


def repl_history_path(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()) / "repl-history"


class BreakpointStore:
    """`breakpoints.json`: {absolute script path: [line, ...]}."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = (state_dir or default_state_dir()) / "breakpoints.json"

    def _read_all(self) -> dict[str, list[int]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, script: Path) -> list[int]:
        lines = self._read_all().get(str(script.resolve()), [])
        return sorted(line for line in lines if isinstance(line, int) and line > 0)

    def save(self, script: Path, lines: Iterable[int]) -> None:
        data = self._read_all()
        key = str(script.resolve())
        kept = sorted(set(lines))
        if kept:
            data[key] = kept
        else:
            data.pop(key, None)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
            temporary.replace(self.path)
        except OSError:
            pass
