"""Rerun planning: after a save, which statements of the script run again.

The VMs stay up between runs, so a rerun does not have to start from the
top.  The script is a sequence of top-level statements (`driver.runner`);
comparing the statements of the old and the new source tells which ones the
edit touched, and the record of the last run tells which ones had passed.

Modes (`RerunMode`):

- CHANGED (the default): from the first statement that changed, or from the
  first one that did not pass last time if that comes earlier.  The unchanged
  prefix already ran against the live VMs and its names are still in the
  namespace.  A save with no change reruns what failed, and nothing at all
  when everything passed.
- ALL: the whole script, in a fresh namespace (the VMs stay up).
- FAILED: only the top-level statement that failed last time (the one holding
  the failed subtest), then stop.
- CHECKPOINT: restore the newest checkpoint taken before the first change,
  then run from the statement it was taken at.

`plan_rerun` is a pure function and `RunTracker` only listens to driver
events; `RerunController` puts them to work: it reacts to a save (from
`vmtui.watch.FileWatcher`), cancels the run in flight, restores a checkpoint
if asked, and starts the rerun through the front end.
"""

from __future__ import annotations

import difflib
import enum
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from driver.checkpoint import Checkpoint, RestoreReport
from driver.errors import ScriptCancelled, ScriptSyntaxError
from driver.events import (
    BlockClosed,
    BlockOpened,
    Event,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
)
from driver.runner import Statement, compile_script, first_changed_statement


class RerunMode(enum.Enum):
    CHANGED = "changed"
    ALL = "all"
    FAILED = "failed"
    CHECKPOINT = "checkpoint"

    @property
    def label(self) -> str:
        return {
            RerunMode.CHANGED: "from the first change",
            RerunMode.ALL: "the whole script",
            RerunMode.FAILED: "only the failed subtest",
            RerunMode.CHECKPOINT: "from a checkpoint",
        }[self]


DEFAULT_MODE = RerunMode.CHANGED


def split_statements(source: str, filename: str) -> list[Statement]:
    """The top-level statements of `source`, as `ScriptRunner.load` splits them.

    Raises `ScriptSyntaxError` (with the line) when the source does not parse.
    Unlike `load`, this touches no runner state, so it is safe while a run is
    in flight.
    """
    return compile_script(source, filename).statements


# -- what changed ---------------------------------------------------------------


@dataclass(frozen=True)
class StatementChange:
    """One edit between two versions of the script, in new-source lines.

    `kind` is "changed", "added" or "removed"; a removed statement has the
    line where it used to be in the *old* source.
    """

    kind: str
    line: int
    end_line: int
    summary: str


def _summary(statement: Statement) -> str:
    first = statement.text.strip().splitlines()[0] if statement.text.strip() else ""
    return first if len(first) <= 60 else first[:57] + "..."


def describe_changes(old: Sequence[Statement], new: Sequence[Statement]) -> list[StatementChange]:
    """The statements an edit changed, added or removed (for the "what changed" view)."""
    matcher = difflib.SequenceMatcher(a=[s.text for s in old], b=[s.text for s in new], autojunk=False)
    changes: list[StatementChange] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(a1 - a0, b1 - b0) if tag == "replace" else 0
        for offset in range(paired):
            s = new[b0 + offset]
            changes.append(StatementChange("changed", s.line, s.end_line, _summary(s)))
        for s in new[b0 + paired : b1]:
            changes.append(StatementChange("added", s.line, s.end_line, _summary(s)))
        for s in old[a0 + paired : a1]:
            changes.append(StatementChange("removed", s.line, s.end_line, _summary(s)))
    return changes


def map_index(old: Sequence[Statement], new: Sequence[Statement], index: int) -> int | None:
    """Where statement `index` of `old` sits in `new` (edited in place counts as the same)."""
    matcher = difflib.SequenceMatcher(a=[s.text for s in old], b=[s.text for s in new], autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if a0 <= index < a1:
            if tag == "equal":
                return b0 + (index - a0)
            if tag == "replace":
                return min(b0 + (index - a0), b1 - 1)
            return None  # deleted
    return None


# -- the record of the last run ---------------------------------------------------


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class RunRecord:
    """What the runs so far did with the *currently loaded* statements."""

    # Statement index -> how it ended the last time it ran.
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    # The innermost subtest that failed in the last run, and its statement.
    failed_subtest: str | None = None
    failed_index: int | None = None
    failed_error: str | None = None

    def first_not_passed(self, count: int) -> int | None:
        """The first of `count` statements that did not pass (or never ran)."""
        for index in range(count):
            if self.outcomes.get(index) is not Outcome.PASSED:
                return index
        return None

    def carried_over(self, old: Sequence[Statement], new: Sequence[Statement]) -> RunRecord:
        """The record for `new`: outcomes survive for the unchanged prefix only.

        After the first change, later statements may behave differently
        (they may use what the changed one defines), so they count as not run.
        """
        first = first_changed_statement(list(old), list(new))
        keep = len(new) if first is None else first
        record = RunRecord(outcomes={i: o for i, o in self.outcomes.items() if i < keep})
        if self.failed_index is not None:
            index = map_index(old, new, self.failed_index)
            if index is not None:
                record.failed_index = index
                record.failed_subtest = self.failed_subtest
                record.failed_error = self.failed_error
        return record


class RunTracker:
    """A bus subscriber that keeps the `RunRecord` of the loaded script.

    Statements are recognised by their first line; call `reload()` whenever
    the runner loads a new version of the script.
    """

    def __init__(self, statements: Sequence[Statement] = ()) -> None:
        self._lock = threading.Lock()
        self._statements: list[Statement] = list(statements)
        self._by_line = {s.line: s.index for s in self._statements}
        self._record = RunRecord()
        self._open_subtests: dict[int, tuple[str, int | None]] = {}
        self._current_index: int | None = None
        self.running = False

    @property
    def statements(self) -> list[Statement]:
        return list(self._statements)

    @property
    def record(self) -> RunRecord:
        with self._lock:
            return RunRecord(
                outcomes=dict(self._record.outcomes),
                failed_subtest=self._record.failed_subtest,
                failed_index=self._record.failed_index,
                failed_error=self._record.failed_error,
            )

    def reload(self, statements: Sequence[Statement]) -> None:
        with self._lock:
            old = self._statements
            self._record = self._record.carried_over(old, statements)
            self._statements = list(statements)
            self._by_line = {s.line: s.index for s in self._statements}

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        if isinstance(event, ScriptStarted):
            self.running = True
            self._record.failed_subtest = None
            self._record.failed_index = None
            self._record.failed_error = None
            self._open_subtests.clear()
        elif isinstance(event, StatementStarted):
            self._current_index = self._by_line.get(event.line)
            if self._current_index is not None:
                # Everything after it is stale until it runs again.
                for stale in [i for i in self._record.outcomes if i >= self._current_index]:
                    del self._record.outcomes[stale]
        elif isinstance(event, StatementFinished):
            index = self._by_line.get(event.line)
            if index is None:
                return
            if event.ok:
                outcome = Outcome.PASSED
            elif event.cancelled:
                outcome = Outcome.CANCELLED
            else:
                outcome = Outcome.FAILED
                self._record.failed_index = index
                self._record.failed_error = event.error
            self._record.outcomes[index] = outcome
        elif isinstance(event, BlockOpened) and event.kind == "subtest":
            self._open_subtests[event.block_id] = (event.title, event.script_line)
        elif isinstance(event, BlockClosed):
            opened = self._open_subtests.pop(event.block_id, None)
            # The first subtest to close failed is the innermost one.
            failed = not event.ok and not event.cancelled
            if opened is not None and failed and self._record.failed_subtest is None:
                self._record.failed_subtest = _subtest_name(opened[0])
        elif isinstance(event, ScriptFinished):
            self.running = False


def _subtest_name(title: str) -> str:
    return title.removeprefix("subtest: ")


# -- the plan --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointMark:
    """A checkpoint as the planner sees it: taken before statement `statement_index` ran."""

    name: str
    statement_index: int


@dataclass(frozen=True)
class RerunPlan:
    mode: RerunMode
    # First statement to run; None: nothing to run.
    start: int | None
    # Stop before this statement (exclusive); None: run to the end.
    stop: int | None = None
    # Restore this checkpoint before running.
    checkpoint: str | None = None
    changes: tuple[StatementChange, ...] = ()
    # One line for the user: what changed and what (re)runs.
    reason: str = ""

    @property
    def runs_anything(self) -> bool:
        return self.start is not None


def _where(statements: Sequence[Statement], index: int) -> str:
    if index >= len(statements):
        return "the end of the script"
    return f"line {statements[index].line}"


def _change_text(changes: Sequence[StatementChange]) -> str:
    if not changes:
        return "no statement changed"
    lines = sorted({c.line for c in changes if c.kind != "removed"})
    removed = sum(1 for c in changes if c.kind == "removed")
    parts = []
    if lines:
        shown = ", ".join(str(n) for n in lines[:5]) + (" ..." if len(lines) > 5 else "")
        parts.append(f"changed at line{'s' if len(lines) > 1 else ''} {shown}")
    if removed:
        parts.append(f"{removed} statement{'s' if removed > 1 else ''} removed")
    return "; ".join(parts)


def plan_rerun(
    old: Sequence[Statement],
    new: Sequence[Statement],
    record: RunRecord,
    mode: RerunMode = DEFAULT_MODE,
    checkpoints: Sequence[CheckpointMark] = (),
    checkpoints_refused: str | None = None,
) -> RerunPlan:
    """Decide what to run after the script went from `old` to `new`.

    `record` describes the last run in terms of `old` (as `RunTracker.record`
    returns it before `reload`).  A mode that cannot apply (no failure to
    rerun, no usable checkpoint) falls back to CHANGED and says so;
    `checkpoints_refused` is why this test can have no checkpoints at all
    (a node QEMU cannot save), said instead of "no checkpoint taken yet".
    """
    changes = tuple(describe_changes(old, new))
    what = _change_text(changes)
    first_change = first_changed_statement(list(old), list(new))
    carried = record.carried_over(old, new)
    first_not_passed = carried.first_not_passed(len(new))

    if mode is RerunMode.ALL:
        return RerunPlan(mode, 0 if new else None, changes=changes,
                         reason=f"{what}; rerunning the whole script")

    if mode is RerunMode.FAILED:
        if carried.failed_index is not None:
            index = carried.failed_index
            name = f"subtest '{carried.failed_subtest}'" if carried.failed_subtest else "statement"
            return RerunPlan(mode, index, stop=index + 1, changes=changes,
                             reason=f"{what}; rerunning only the failed {name} ({_where(new, index)})")
        fallback = "no failed subtest to rerun"
        return _from_change(new, first_change, first_not_passed, changes, what, note=fallback)

    if mode is RerunMode.CHECKPOINT:
        limit = len(new) if first_change is None else first_change
        if first_not_passed is not None:
            limit = min(limit, first_not_passed)
        usable = [c for c in checkpoints if c.statement_index <= limit]
        if usable:
            chosen = max(usable, key=lambda c: c.statement_index)
            return RerunPlan(mode, chosen.statement_index, checkpoint=chosen.name, changes=changes,
                             reason=f"{what}; restoring checkpoint '{chosen.name}' and rerunning from "
                                    f"{_where(new, chosen.statement_index)}")
        if checkpoints:
            note = "no checkpoint before the change"
        elif checkpoints_refused:
            note = f"no checkpoints in this test: {checkpoints_refused}; a plain rerun instead"
        else:
            note = "no checkpoint taken yet"
        return _from_change(new, first_change, first_not_passed, changes, what, note=note)

    return _from_change(new, first_change, first_not_passed, changes, what)


def _from_change(
    new: Sequence[Statement],
    first_change: int | None,
    first_not_passed: int | None,
    changes: tuple[StatementChange, ...],
    what: str,
    note: str = "",
) -> RerunPlan:
    candidates = [i for i in (first_change, first_not_passed) if i is not None and i < len(new)]
    prefix = f"{note}; " if note else ""
    if not candidates:
        return RerunPlan(RerunMode.CHANGED, None, changes=changes,
                         reason=f"{prefix}{what}; the last run passed, nothing to rerun")
    start = min(candidates)
    because = "the first change" if start == first_change else "the first statement that did not pass"
    return RerunPlan(RerunMode.CHANGED, start, changes=changes,
                     reason=f"{prefix}{what}; rerunning from {_where(new, start)} ({because})")


def plan_rewind(statement_index: int, checkpoints: Sequence[CheckpointMark]) -> RerunPlan | None:
    """"Rewind to before this statement": restore the newest checkpoint at or
    before it, then replay the statements in between, stopping before it.

    None when no checkpoint was taken at or before that statement.
    """
    usable = [c for c in checkpoints if c.statement_index <= statement_index]
    if not usable:
        return None
    chosen = max(usable, key=lambda c: c.statement_index)
    replay = statement_index - chosen.statement_index
    reason = f"restoring checkpoint '{chosen.name}'"
    if replay:
        reason += f", then replaying {replay} statement{'s' if replay > 1 else ''} up to the chosen one"
    return RerunPlan(RerunMode.CHECKPOINT, chosen.statement_index if replay else None,
                     stop=statement_index, checkpoint=chosen.name, reason=reason)


# -- the controller: saves become reruns against the live VMs ------------------------


@dataclass(frozen=True)
class SaveOutcome:
    """What one save led to (for the UI: a summary line, a syntax error mark)."""

    plan: RerunPlan | None = None
    syntax_error: ScriptSyntaxError | None = None
    # Something went wrong before anything ran (a checkpoint could not be restored ...).
    error: str | None = None
    # The statements now loaded (after a successful save).
    statements: tuple[Statement, ...] = ()


class Checkpointing(Protocol):
    """The part of driver.checkpoint.Checkpoints the controller uses."""

    @property
    def checkpoints(self) -> Sequence[Checkpoint]: ...

    def save(self, name: str | None = None, statement_index: int | None = None) -> Checkpoint: ...

    def restore(self, name: str) -> RestoreReport: ...

    # Why no node set of this test can be checkpointed (None: they may be).
    refused: str | None


class ScriptControl(Protocol):
    """The part of driver.runner.ScriptRunner the controller uses."""

    statements: list[Statement]
    filename: str

    @property
    def is_running(self) -> bool: ...

    def load(self, source: str, filename: str) -> None: ...

    def cancel(self) -> None: ...


BOOT_CHECKPOINT = "boot"


class RerunController:
    """Turns saves of the test script into reruns against the running VMs.

    - `saved()` (from a worker thread, never the UI thread) reads the script,
      plans, cancels the run in flight, loads the new version, restores a
      checkpoint when the plan says so, and calls `start_run(start, stop)`,
      which the front end implements by running `runner.run(start, until=stop)`
      in its script worker.  A syntax error changes nothing at all.
    - Subscribed to the bus (`controller.on_event`), it keeps the record of
      what passed, takes the automatic "boot" checkpoint at the first
      statement boundary where every node is up, and takes checkpoints asked
      for while a statement runs at the next boundary.
    """

    def __init__(
        self,
        runner: ScriptControl,
        script_path: Path,
        *,
        start_run: Callable[[int, int | None], None],
        cancel_event: threading.Event | None = None,
        checkpoints: Checkpointing | None = None,
        all_nodes_up: Callable[[], bool] = lambda: False,
        log: Callable[[str], None] = lambda message: None,
        mode: RerunMode = DEFAULT_MODE,
        auto_boot_checkpoint: bool = True,
    ) -> None:
        self.runner = runner
        self.script_path = script_path
        self.mode = mode
        self._start_run = start_run
        self._cancel_event = cancel_event
        self.checkpoints = checkpoints
        self._all_nodes_up = all_nodes_up
        self._log = log
        self.auto_boot_checkpoint = auto_boot_checkpoint and checkpoints is not None
        self.tracker = RunTracker(runner.statements)
        self._save_lock = threading.Lock()
        self._pending_checkpoints: list[str | None] = []
        self._pending_lock = threading.Lock()
        self.last_outcome: SaveOutcome | None = None

    # -- saves -----------------------------------------------------------------

    def saved(self) -> SaveOutcome:
        """Handle a save of the script (blocking; call from a worker thread)."""
        with self._save_lock:
            outcome = self._saved()
            self.last_outcome = outcome
            return outcome

    def swap_script(self, script_path: Path, mode: RerunMode | None = None) -> SaveOutcome:
        """The test now lives in another file (a rebuild gave it a new store path):
        load it from there and rerun as for a save (in `mode`, else the current
        one).  Breakpoints (lines) and the record of what passed carry over, as
        they do for a save."""
        with self._save_lock:
            self.script_path = script_path
            outcome = self._saved(filename=str(script_path), mode=mode)
            self.last_outcome = outcome
            return outcome

    def _saved(self, filename: str | None = None, mode: RerunMode | None = None) -> SaveOutcome:
        filename = filename or self.runner.filename or str(self.script_path)
        try:
            source = self.script_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            return SaveOutcome(error=f"cannot read {self.script_path}: {error}")
        try:
            new = split_statements(source, filename)
        except ScriptSyntaxError as error:
            self._log(f"{error}; nothing reruns until it is fixed")
            return SaveOutcome(syntax_error=error)
        old = self.runner.statements
        if self.runner.is_running and first_changed_statement(list(old), new) is None:
            return SaveOutcome(plan=RerunPlan(self.mode, None, reason="no statement changed; the run continues"),
                               statements=tuple(old))
        record = self.tracker.record
        plan = plan_rerun(old, new, record, mode or self.mode, self.checkpoint_marks(), self.checkpoints_refused)
        self._log(f"script saved: {plan.reason}")
        self.stop_run()
        return self._execute(plan, source, filename)

    def _execute(self, plan: RerunPlan, source: str | None, filename: str) -> SaveOutcome:
        if source is not None:
            try:
                self.runner.load(source, filename)
            except ScriptSyntaxError as error:  # split_statements let it pass: be safe
                return SaveOutcome(syntax_error=error)
            self.tracker.reload(self.runner.statements)
        statements = tuple(self.runner.statements)
        if plan.checkpoint is not None:
            if self.checkpoints is None:
                return SaveOutcome(plan=plan, error="no checkpoints in this session", statements=statements)
            try:
                self.checkpoints.restore(plan.checkpoint)
            except Exception as error:  # noqa: BLE001 - reported, the VMs stay as they are
                self._log(f"restoring checkpoint '{plan.checkpoint}' failed: {error}")
                return SaveOutcome(plan=plan, error=str(error), statements=statements)
        if plan.start is not None:
            self._start_run(plan.start, plan.stop)
        return SaveOutcome(plan=plan, statements=statements)

    def stop_run(self, timeout: float = 60.0) -> None:
        """Cancel the run in flight and wait until it has ended (VMs stay up)."""
        if self.runner.is_running:
            self.runner.cancel()
            deadline = time.monotonic() + timeout
            while self.runner.is_running:
                if time.monotonic() > deadline:
                    raise RuntimeError("the script did not stop after being cancelled")
                time.sleep(0.005)
        # The run is over: guest commands of checkpoints and reruns must not
        # see the cancellation meant for it.
        if self._cancel_event is not None:
            self._cancel_event.clear()

    # -- explicit actions --------------------------------------------------------------

    def rerun(self, mode: RerunMode | None = None) -> SaveOutcome:
        """Rerun now as if the file had been saved unchanged, in `mode`."""
        with self._save_lock:
            statements = self.runner.statements
            plan = plan_rerun(statements, statements, self.tracker.record, mode or self.mode,
                              self.checkpoint_marks(), self.checkpoints_refused)
            self._log(f"rerun: {plan.reason}")
            self.stop_run()
            outcome = self._execute(plan, None, self.runner.filename)
            self.last_outcome = outcome
            return outcome

    def rewind(self, statement_index: int) -> SaveOutcome:
        """Put the VMs back to how they were just before statement `statement_index` ran."""
        with self._save_lock:
            plan = plan_rewind(statement_index, self.checkpoint_marks())
            if plan is None and self.checkpoints_refused:
                # Nothing can put the VMs back: rerun from that statement
                # against them as they are, and say why (by the line the gutter shows).
                line = self.runner.statements[statement_index].line
                plan = RerunPlan(RerunMode.CHANGED, statement_index,
                                 reason=f"cannot rewind, no checkpoints in this test: {self.checkpoints_refused}; "
                                        f"a plain rerun from line {line} instead, "
                                        "the VMs as they are")
            if plan is None:
                return SaveOutcome(error="no checkpoint was taken at or before that statement")
            self._log(f"rewind: {plan.reason}")
            self.stop_run()
            outcome = self._execute(plan, None, self.runner.filename)
            self.last_outcome = outcome
            return outcome

    # -- checkpoints -----------------------------------------------------------------

    @property
    def checkpoints_refused(self) -> str | None:
        """Why this test can have no checkpoints (None: it may have them)."""
        return getattr(self.checkpoints, "refused", None)

    def describe_mode(self) -> str:
        """What a save reruns in the current mode, and why not when it cannot."""
        text = f"a save reruns {self.mode.label}"
        if self.mode is RerunMode.CHECKPOINT and self.checkpoints_refused:
            text += f"; but this test can have no checkpoints ({self.checkpoints_refused}): a plain rerun instead"
        return text

    def checkpoint_marks(self) -> list[CheckpointMark]:
        if self.checkpoints is None:
            return []
        return [CheckpointMark(c.name, c.statement_index) for c in self.checkpoints.checkpoints
                if c.statement_index is not None]

    def checkpoint_now(self, name: str | None = None) -> Checkpoint | None:
        """Take a checkpoint now, or at the next statement boundary if a statement runs.

        Returns the checkpoint, or None when it was scheduled.
        """
        if self.checkpoints is None:
            raise RuntimeError("checkpoints are not available in this session")
        if self.checkpoints_refused:
            # Known since the first refusal: say so now, not at the statement's end.
            raise RuntimeError(self.checkpoints_refused)
        if self.runner.is_running:
            with self._pending_lock:
                self._pending_checkpoints.append(name)
            self._log("checkpoint: taken when the running statement ends")
            return None
        next_index = self.tracker.record.first_not_passed(len(self.runner.statements))
        if next_index is None:
            next_index = len(self.runner.statements)
        return self.checkpoints.save(name, statement_index=next_index)

    def on_event(self, event: Event) -> None:
        """Bus subscriber (runs on the publishing thread)."""
        self.tracker(event)
        if isinstance(event, StatementFinished) and event.ok and self.checkpoints is not None:
            # The script thread is between two statements: the one place
            # where a checkpoint marks a point a rerun can start from.
            self._at_boundary(event)

    def _at_boundary(self, event: StatementFinished) -> None:
        assert self.checkpoints is not None
        index = next((s.index for s in self.tracker.statements if s.line == event.line), None)
        if index is None:
            return
        with self._pending_lock:
            wanted, self._pending_checkpoints = self._pending_checkpoints, []
        if (self.auto_boot_checkpoint and not any(c.name == BOOT_CHECKPOINT for c in self.checkpoints.checkpoints)
                and self._all_nodes_up()):
            wanted.insert(0, BOOT_CHECKPOINT)
            self.auto_boot_checkpoint = False
        for name in wanted:
            try:
                self.checkpoints.save(name, statement_index=index + 1)
            except (Exception, ScriptCancelled) as error:  # noqa: BLE001 - it must not fail the run
                # (The run goes on, or ends through its own cancellation.)
                self._log(f"checkpoint {name or ''} not taken: {error}".replace("  ", " "))
