"""The TUI's run records: one per session under `$XDG_STATE_HOME/vmtui/runs/<test>/<time>/`, and a list to reopen one.

`start_tui_record(config, bus, machines)` creates the record (keeping the
newest `$VMTUI_KEEP_RUNS` of the test, default 20) and subscribes it; on a
failed run it writes the failure bundle from a thread of its own, while the
nodes are still up.  `PastRunsScreen` lists the test's records; choosing one
opens it with `vmtui replay` in the same terminal (the live app is suspended
meanwhile and its VMs keep running).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from driver.config import TestConfig
from driver.errors import ConfigError
from driver.events import Event, EventBus, ScriptFinished
from driver.record import RunRecord, list_runs, new_tui_record_directory, read_meta, runs_directory_of
from vmtui.replay.record_meta import load_record_meta

KEEP_RUNS_ENV = "VMTUI_KEEP_RUNS"
DEFAULT_KEEP_RUNS = 20


def keep_runs() -> int:
    """How many records of a test the TUI keeps (`$VMTUI_KEEP_RUNS`, at least 1)."""
    try:
        return max(1, int(os.environ.get(KEEP_RUNS_ENV, DEFAULT_KEEP_RUNS)))
    except ValueError:
        return DEFAULT_KEEP_RUNS


def start_tui_record(
    config: TestConfig, bus: EventBus, machines: Callable[[], list[Any]], *, warn: Callable[[str], None]
) -> RunRecord | None:
    """A record of this session, subscribed to its bus; None (and a warning) if it cannot be written."""
    try:
        record = RunRecord(new_tui_record_directory(config.name, keep=keep_runs()), config, kind="tui")
    except OSError as exc:
        warn(f"no run record: {exc}")
        return None

    def on_event(event: Event) -> None:
        if isinstance(event, ScriptFinished) and not event.ok and not event.cancelled:
            # After the record saw the event (it subscribed first).
            threading.Thread(
                target=record.write_failure_bundle, args=(machines(),), name="failure-bundle", daemon=True
            ).start()

    bus.subscribe(record)
    bus.subscribe(on_event)
    return record


def describe_run(path: Path) -> str:
    try:
        load_record_meta(path)
    except ConfigError as exc:
        # The list still shows it; opening it says the same.
        return f"{path.name}  unreadable: {str(exc).split(': ', 1)[-1]}"
    meta = read_meta(path)
    outcome = {True: "passed", False: "failed", None: "no verdict"}.get(meta.get("ok"), "?")
    error = f": {meta['error']}" if meta.get("error") and meta.get("ok") is False else ""
    return f"{path.name}  {outcome}{error}"


class PastRunsScreen(ModalScreen[Path | None]):
    """The records of one test, newest first; Enter opens one."""

    DEFAULT_CSS = """
    PastRunsScreen { align: center middle; }
    PastRunsScreen > Vertical { width: 80%; height: 70%; border: round $accent; background: $surface; }
    PastRunsScreen OptionList { height: 1fr; }
    PastRunsScreen Static { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, test_name: str, current: Path | None = None) -> None:
        super().__init__()
        self.test_name = test_name
        self.current = current
        self.runs = [run for run in reversed(list_runs(runs_directory_of(test_name)))]

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.runs:
                yield Static(f"{runs_directory_of(self.test_name)}   Enter: open read-only")
            else:
                yield Static(f"no past runs of {self.test_name} yet")
            yield OptionList(
                # Text, not markup: an error message may hold brackets.
                *(Option(Text(describe_run(run) + ("  (this session)" if run == self.current else "")), id=str(i))
                  for i, run in enumerate(self.runs)),
                id="past-runs",
            )

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = f"Past runs of {self.test_name}"
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.runs[int(event.option.id or 0)])


def replay_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "vmtui", "replay", str(path)]


def open_in_replay(path: Path) -> int:
    """Run `vmtui replay PATH` in this terminal (the caller suspended its own app)."""
    return subprocess.run(replay_command(path), check=False).returncode
