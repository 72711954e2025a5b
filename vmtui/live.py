"""The decisions of live iteration, kept apart from the view.

Rebuilding the source, restarting the nodes a rebuild changed, swapping the
script, applying a save, rerunning after a stop: the app asks this module
what to do and shows the answer.  Nothing here imports Textual, so every
decision is unit tested without a screen (tests/unit/test_live.py).

`LiveState` lives on the UI thread only: the app calls it from its message
handlers, never from a worker.  The functions below it are pure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from driver.runner import Statement
from vmtui.rebuild import RebuildResult
from vmtui.rerun import RerunMode, SaveOutcome

Severity = Literal["information", "warning", "error"]


@dataclass(frozen=True)
class Notice:
    """A toast: what the user is told, and how loudly."""

    message: str
    title: str = ""
    severity: Severity = "information"
    timeout: float = 5.0


@dataclass(frozen=True)
class StatusLine:
    """The run status line's state word and detail."""

    state: str
    detail: str = ""


@dataclass(frozen=True)
class ScriptSwap:
    """Point every holder of the config at `path`; rerun it when `run`."""

    path: Path
    run: bool


@dataclass(frozen=True)
class RebuildDecision:
    """What the app does with a finished rebuild."""

    warnings: tuple[str, ...] = ()       # for the driver log (the timeline)
    notices: tuple[Notice, ...] = ()
    status: StatusLine | None = None
    swap: ScriptSwap | None = None


@dataclass(frozen=True)
class RestartRequest:
    """Nodes to restart (name -> new start command) and the script to swap in with them."""

    nodes: Mapping[str, str]
    script: Path | None = None

    @property
    def names(self) -> str:
        return ", ".join(sorted(self.nodes))


@dataclass(frozen=True)
class SavedFiles:
    """Which watched files a save touched."""

    script: bool = False
    source: bool = False


@dataclass(frozen=True)
class SaveView:
    """How a `SaveOutcome` shows: a syntax error in the banner, or a toast."""

    syntax_error: str | None = None       # set: the save does not compile
    syntax_error_line: int | None = None
    notice: Notice | None = None
    hide_error: bool = False


@dataclass
class LiveState:
    """The flags of live iteration, owned by the UI thread.

    `restart_key()` names the key that restarts changed nodes, as remapped.
    """

    restart_key: Callable[[], str] = lambda: "R"
    # From the last rebuild: nodes waiting for `R`, and the script to swap in with them.
    pending_restart: dict[str, str] = field(default_factory=dict)
    pending_script: Path | None = None
    # The rebuild under way: its cancel event is also its identity, so a
    # late answer from a superseded rebuild is recognised and dropped.
    rebuild_cancel: threading.Event | None = None
    # `r` pressed while a run was in flight: reload and run once it ends.
    restart_when_idle: bool = False
    # A run was asked for before the session was ready.
    run_requested: bool = False
    # Run to this line once the run that was just started first stops (the
    # stepper can only aim at a line while a run exists).
    run_to_after_start: int | None = None

    # -- rebuilds ------------------------------------------------------------

    @property
    def rebuilding(self) -> bool:
        return self.rebuild_cancel is not None

    def begin_rebuild(self) -> threading.Event:
        """A new save of the source: the rebuild under way (if any) is cancelled."""
        if self.rebuild_cancel is not None:
            self.rebuild_cancel.set()
        self.rebuild_cancel = threading.Event()
        return self.rebuild_cancel

    def finish_rebuild(self, cancel: threading.Event) -> bool:
        """True when `cancel` names the current rebuild (which is then over)."""
        if cancel is not self.rebuild_cancel:
            return False
        self.rebuild_cancel = None
        return True

    def cancel_rebuild(self) -> None:
        if self.rebuild_cancel is not None:
            self.rebuild_cancel.set()
            self.rebuild_cancel = None

    def rebuilt(self, result: RebuildResult) -> RebuildDecision:
        """Apply what a rebuild changed, or say what cannot be applied."""
        new_config = result.new_config
        warnings: list[str] = []
        notices: list[Notice] = []
        if result.needs_new_session:
            message = "; ".join(result.needs_new_session) + ": quit and open the test again to apply this"
            warnings.append(message)
            notices.append(Notice(message, "rebuilt", "warning", 10))
        if result.restartable:
            self.pending_restart = dict(result.restartable)
            self.pending_script = new_config.script_path if result.change.script_changed else None
            nodes = ", ".join(sorted(self.pending_restart))
            key = self.restart_key()
            then = "and run the new script" if self.pending_script else "and rerun"
            message = f"must restart to apply the new configuration: {nodes}.  Press {key} to restart only them {then}."
            warnings.append(message)
            notices.append(Notice(message, "rebuilt", "warning", 30))
            swap = None
            if result.script_moved and not result.change.script_changed:
                swap = ScriptSwap(new_config.script_path, run=False)
            return RebuildDecision(tuple(warnings), tuple(notices), StatusLine("nodes changed", f"{nodes}: {key} restarts them"), swap)
        self.pending_restart = {}
        self.pending_script = None
        if result.change.script_changed:
            notices.append(Notice("only the test script changed: it reruns on the running VMs", "rebuilt", timeout=5))
            return RebuildDecision(tuple(warnings), tuple(notices), swap=ScriptSwap(new_config.script_path, run=True))
        if result.script_moved:
            # Same text, another file: follow it quietly.
            return RebuildDecision(tuple(warnings), tuple(notices), swap=ScriptSwap(new_config.script_path, run=False))
        if not result.needs_new_session:
            notices.append(Notice("nothing that runs changed", "rebuilt", timeout=4))
            return RebuildDecision(tuple(warnings), tuple(notices), StatusLine("rebuilt", "nothing that runs changed"))
        return RebuildDecision(tuple(warnings), tuple(notices))

    # -- restarting changed nodes ---------------------------------------------------

    def take_restart(self) -> RestartRequest | None:
        """`R`: the nodes to restart now (None: nothing waits for a restart)."""
        if not self.pending_restart:
            return None
        request = RestartRequest(self.pending_restart, self.pending_script)
        self.pending_restart, self.pending_script = {}, None
        return request

    def restart_failed(self, request: RestartRequest) -> None:
        """Still to do: `R` tries again, unless a newer rebuild said otherwise meanwhile."""
        if not self.pending_restart:
            self.pending_restart, self.pending_script = dict(request.nodes), request.script

    # -- runs ---------------------------------------------------------------------

    def run_started(self, run_to_line: int | None) -> None:
        self.run_requested = False
        self.run_to_after_start = run_to_line

    def first_pause(self, reason: str) -> int | None:
        """The line to run to instead of showing this pause (the start of a run-to-cursor)."""
        if self.run_to_after_start is not None and reason == "step":
            line, self.run_to_after_start = self.run_to_after_start, None
            return line
        return None

    def run_ended(self) -> bool:
        """A run ended: True when `r` asked for a reload and a new run meanwhile."""
        again, self.restart_when_idle = self.restart_when_idle, False
        return again


def saved_files(paths: Iterable[Path], script: Path, source: Path | None) -> SavedFiles:
    """Sort a watcher's burst of paths into the script and the source."""
    resolved = {Path(p) for p in paths}
    return SavedFiles(
        script=script.resolve() in resolved,
        source=source is not None and source.resolve() in resolved,
    )


def next_rerun_mode(mode: RerunMode) -> RerunMode:
    modes = list(RerunMode)
    return modes[(modes.index(mode) + 1) % len(modes)]


def statement_at(statements: Sequence[Statement], line: int) -> int | None:
    """The index of the top-level statement that covers `line`."""
    return next((s.index for s in statements if s.line <= line <= s.end_line), None)


def save_view(outcome: SaveOutcome) -> SaveView:
    error = outcome.syntax_error
    if error is not None:
        return SaveView(syntax_error=f"SyntaxError: {error.msg}", syntax_error_line=error.line)
    if outcome.error is not None:
        return SaveView(notice=Notice(outcome.error, "rerun", "error", 6))
    if outcome.plan is not None:
        return SaveView(notice=Notice(outcome.plan.reason, "saved", timeout=5), hide_error=True)
    return SaveView()


def rewind_notice(outcome: SaveOutcome) -> Notice | None:
    if outcome.error is not None:
        return Notice(outcome.error, "rewind", "error", 6)
    if outcome.plan is not None:
        return Notice(outcome.plan.reason, "rewind", timeout=5)
    return None


def checkpoint_notice(name: str | None, save_seconds: float = 0.0) -> Notice:
    """`name` None: the checkpoint waits for the running statement to end."""
    message = "taken when the running statement ends" if name is None else f"'{name}' saved in {save_seconds:.2f} s"
    return Notice(message, "checkpoint", timeout=4)
