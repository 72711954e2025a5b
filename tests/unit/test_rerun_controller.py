"""RerunController with a real ScriptRunner and real file saves (no VMs: the
statements record what ran in a list instead of talking to nodes)."""

from __future__ import annotations

import queue
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from driver.errors import ScriptCancelled
from driver.events import Event, EventBus, ScriptFinished, ScriptStarted
from driver.logger import Logger
from driver.runner import ScriptRunner
from vmtui.rerun import BOOT_CHECKPOINT, RerunController, RerunMode
from vmtui.watch import FileWatcher


class Host:
    """The ScriptHost a runner needs, with a `trace` the script appends to."""

    def __init__(self, bus: EventBus) -> None:
        self.logger = Logger(bus)
        self.cancel_event = threading.Event()
        self.trace: list[str] = []
        self.release = threading.Event()

    def test_symbols(self) -> dict[str, Any]:
        def block() -> None:
            # A statement that waits for a long time, like a slow VM command
            # (which ends with ScriptCancelled when the run is cancelled).
            while not self.release.wait(0.01):
                if self.cancel_event.is_set():
                    raise ScriptCancelled("cancelled")

        return {"trace": self.trace, "subtest": self.logger.subtest, "block": block}

    @property
    def node_names(self) -> list[str]:
        return []


@dataclass
class FakeCheckpoint:
    name: str
    statement_index: int | None


@dataclass
class FakeCheckpoints:
    saved: list[FakeCheckpoint] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)

    @property
    def checkpoints(self) -> list[FakeCheckpoint]:
        return list(self.saved)

    def save(self, name: str | None = None, statement_index: int | None = None) -> FakeCheckpoint:
        checkpoint = FakeCheckpoint(name or f"cp{len(self.saved) + 1}", statement_index)
        self.saved = [c for c in self.saved if c.name != checkpoint.name] + [checkpoint]
        return checkpoint

    def restore(self, name: str) -> None:
        self.restored.append(name)


class Harness:
    def __init__(self, tmp_path: Path, source: str, checkpoints: FakeCheckpoints | None = None,
                 nodes_up: bool = False) -> None:
        self.bus = EventBus()
        self.host = Host(self.bus)
        self.runner = ScriptRunner(self.host, self.bus)
        self.path = tmp_path / "test.py"
        self.path.write_text(textwrap.dedent(source))
        self.runner.load(self.path.read_text(), str(self.path))
        self.finished: queue.Queue[ScriptFinished] = queue.Queue()
        self.started: list[ScriptStarted] = []
        self.threads: list[threading.Thread] = []
        self.log: list[str] = []
        self.controller = RerunController(
            self.runner, self.path, start_run=self.start_run, cancel_event=self.host.cancel_event,
            checkpoints=checkpoints, all_nodes_up=lambda: nodes_up, log=self.log.append,
        )
        self.bus.subscribe(self.controller.on_event)
        self.bus.subscribe(self._event)

    def _event(self, event: Event) -> None:
        if isinstance(event, ScriptFinished):
            self.finished.put(event)
        elif isinstance(event, ScriptStarted):
            self.started.append(event)

    def start_run(self, start: int, stop: int | None) -> None:
        thread = threading.Thread(target=self.runner.run, args=(start, stop), daemon=True)
        self.threads.append(thread)
        thread.start()

    def wait_finished(self) -> ScriptFinished:
        return self.finished.get(timeout=30)  # a hang guard, not a speed check

    def edit(self, old: str, new: str) -> None:
        self.path.write_text(self.path.read_text().replace(old, new))

    def close(self) -> None:
        self.host.release.set()
        self.runner.cancel()
        for thread in self.threads:
            thread.join(10)


SCRIPT = """\
trace.append("one")
x = 1
trace.append("two")
with subtest("check"):
    trace.append("three")
    assert x == 1
trace.append("four")
"""


@pytest.fixture
def harness(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Harness] = []

    def make(source: str = SCRIPT, **kwargs: Any) -> Harness:
        made.append(Harness(tmp_path, source, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_an_edit_reruns_from_the_first_changed_statement(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    h.start_run(0, None)
    assert h.wait_finished().ok
    h.host.trace.clear()
    h.edit('trace.append("four")', 'trace.append("FOUR")')
    outcome = h.controller.saved()
    assert outcome.plan is not None and outcome.plan.start == 4
    assert h.wait_finished().ok
    assert h.host.trace == ["FOUR"]
    assert "line 7" in outcome.plan.reason


def test_a_syntax_error_changes_nothing(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness("trace.append('a')\nblock()\ntrace.append('b')\n")
    h.start_run(0, None)
    while "a" not in h.host.trace:
        time.sleep(0.01)
    before = list(h.runner.statements)
    h.path.write_text("trace.append('a')\nblock(\ntrace.append('b')\n")
    outcome = h.controller.saved()
    assert outcome.syntax_error is not None and outcome.syntax_error.line == 2
    assert h.runner.statements == before
    assert h.runner.is_running  # the run in flight goes on
    h.host.release.set()
    assert h.wait_finished().ok
    assert h.host.trace == ["a", "b"]


def test_a_change_cancels_the_statement_in_flight_and_reruns(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness("trace.append('a')\nblock()\ntrace.append('b')\n")
    h.start_run(0, None)
    while "a" not in h.host.trace:
        time.sleep(0.01)
    h.path.write_text("trace.append('a')\ntrace.append('instead')\ntrace.append('b')\n")
    outcome = h.controller.saved()
    first = h.wait_finished()
    assert first.cancelled
    assert outcome.plan is not None and outcome.plan.start == 1
    assert h.wait_finished().ok
    assert h.host.trace == ["a", "instead", "b"]


def test_an_unchanged_save_during_a_run_leaves_it_alone(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness("block()\n")
    h.start_run(0, None)
    while not h.runner.is_running:
        time.sleep(0.01)
    h.path.write_text(h.path.read_text() + "\n# just a comment\n")
    outcome = h.controller.saved()
    assert outcome.plan is not None and not outcome.plan.runs_anything
    assert h.runner.is_running


def test_failed_mode_reruns_only_the_failed_subtest(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(SCRIPT.replace("assert x == 1", "assert x == 2"))
    h.controller.mode = RerunMode.FAILED
    h.start_run(0, None)
    assert not h.wait_finished().ok
    assert h.controller.tracker.record.failed_subtest == "check"
    h.host.trace.clear()
    h.edit("assert x == 2", "assert x == 1")
    outcome = h.controller.saved()
    assert outcome.plan is not None and (outcome.plan.start, outcome.plan.stop) == (3, 4)
    assert h.wait_finished().ok
    assert h.host.trace == ["three"]  # "four" did not run


def test_all_mode_reruns_everything_in_a_fresh_namespace(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    h.controller.mode = RerunMode.ALL
    h.start_run(0, None)
    assert h.wait_finished().ok
    h.runner.namespace["stale"] = True  # type: ignore[index]
    h.host.trace.clear()
    h.edit('trace.append("four")', 'trace.append("FOUR")')
    h.controller.saved()
    assert h.wait_finished().ok
    assert h.host.trace == ["one", "two", "three", "FOUR"]
    assert "stale" not in h.runner.namespace  # type: ignore[operator]


def test_checkpoint_mode_restores_then_runs_from_it(harness) -> None:  # type: ignore[no-untyped-def]
    checkpoints = FakeCheckpoints()
    h = harness(checkpoints=checkpoints, nodes_up=True)
    h.controller.mode = RerunMode.CHECKPOINT
    h.start_run(0, None)
    assert h.wait_finished().ok
    # The boot checkpoint came automatically after the first statement.
    assert [(c.name, c.statement_index) for c in checkpoints.saved] == [(BOOT_CHECKPOINT, 1)]
    h.host.trace.clear()
    h.edit('trace.append("four")', 'trace.append("FOUR")')
    outcome = h.controller.saved()
    assert outcome.plan is not None and outcome.plan.checkpoint == BOOT_CHECKPOINT
    assert h.wait_finished().ok
    assert checkpoints.restored == [BOOT_CHECKPOINT]
    assert h.host.trace == ["two", "three", "FOUR"]


def test_checkpoint_requested_mid_statement_is_taken_at_the_boundary(harness) -> None:  # type: ignore[no-untyped-def]
    checkpoints = FakeCheckpoints()
    h = harness("trace.append('a')\nblock()\ntrace.append('b')\n", checkpoints=checkpoints)
    h.start_run(0, None)
    while not h.runner.is_running or "a" not in h.host.trace:
        time.sleep(0.01)
    assert h.controller.checkpoint_now("mid") is None
    assert checkpoints.saved == []
    h.host.release.set()
    assert h.wait_finished().ok
    assert [(c.name, c.statement_index) for c in checkpoints.saved] == [("mid", 2)]
    # Idle: taken at once, before the first statement that has not passed.
    taken = h.controller.checkpoint_now("idle")
    assert (taken.name, taken.statement_index) == ("idle", 3)


def test_rewind_restores_and_replays_up_to_the_statement(harness) -> None:  # type: ignore[no-untyped-def]
    checkpoints = FakeCheckpoints()
    h = harness(checkpoints=checkpoints, nodes_up=True)
    h.start_run(0, None)
    assert h.wait_finished().ok
    h.host.trace.clear()
    outcome = h.controller.rewind(3)
    assert outcome.plan is not None and (outcome.plan.start, outcome.plan.stop) == (1, 3)
    assert h.wait_finished().ok
    assert checkpoints.restored == [BOOT_CHECKPOINT]
    assert h.host.trace == ["two"]  # statements 1 and 2 ("x = 1", "two"); not the subtest
    assert h.controller.rewind(0).error is not None


def test_a_save_through_the_watcher_starts_the_rerun(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    h.start_run(0, None)
    assert h.wait_finished().ok
    h.host.trace.clear()
    with FileWatcher([h.path], lambda paths: h.controller.saved()):
        temp = h.path.with_name(".test.py.tmp")
        temp.write_text(h.path.read_text().replace('trace.append("two")', 'trace.append("TWO")'))
        temp.replace(h.path)
        assert h.wait_finished().ok
    assert h.host.trace == ["TWO", "three", "four"]


@dataclass
class RefusingCheckpoints(FakeCheckpoints):
    """Nodes QEMU cannot save (as driver.checkpoint.Checkpoints reports them)."""

    refused: str | None = None

    def save(self, name: str | None = None, statement_index: int | None = None) -> FakeCheckpoint:
        self.refused = "node cannot be checkpointed: a vhost-user-fs device"
        raise RuntimeError(self.refused)


def test_without_checkpoints_rewind_and_checkpoint_mode_say_so_and_rerun(harness) -> None:  # type: ignore[no-untyped-def]
    checkpoints = RefusingCheckpoints()
    h = harness(checkpoints=checkpoints, nodes_up=True)
    h.start_run(0, None)
    assert h.wait_finished().ok  # the refused boot checkpoint does not fail the run
    assert any("checkpoint boot not taken" in line for line in h.log)

    h.host.trace.clear()
    outcome = h.controller.rewind(2)
    assert outcome.error is None and outcome.plan is not None
    assert outcome.plan.reason.startswith("cannot rewind, no checkpoints in this test: node cannot be checkpointed")
    assert (outcome.plan.start, outcome.plan.checkpoint) == (2, None)
    assert h.wait_finished().ok
    assert h.host.trace == ["two", "three", "four"]  # from statement 2 on, nothing restored
    assert checkpoints.restored == []

    h.controller.mode = RerunMode.CHECKPOINT
    assert "this test can have no checkpoints (node cannot be checkpointed" in h.controller.describe_mode()
    h.host.trace.clear()
    h.edit('trace.append("four")', 'trace.append("FOUR")')
    outcome = h.controller.saved()
    assert outcome.plan is not None and outcome.plan.checkpoint is None
    assert "no checkpoints in this test" in outcome.plan.reason
    assert h.wait_finished().ok
    assert h.host.trace == ["FOUR"]


def test_a_checkpoint_asked_for_mid_run_says_at_once_why_there_are_none(harness) -> None:  # type: ignore[no-untyped-def]
    # `k` while a statement runs (or the run waits in post-mortem) must not
    # promise a checkpoint "when the running statement ends" once the test
    # is known to have none.
    checkpoints = RefusingCheckpoints()
    h = harness("trace.append('a')\nblock()\ntrace.append('b')\n", checkpoints=checkpoints, nodes_up=True)
    with pytest.raises(RuntimeError):
        checkpoints.save("probe")  # as the boot checkpoint of such a test is refused
    h.start_run(0, None)
    while "a" not in h.host.trace:
        time.sleep(0.01)
    assert h.runner.is_running
    with pytest.raises(RuntimeError, match="node cannot be checkpointed: a vhost-user-fs device"):
        h.controller.checkpoint_now()
    assert not any("taken when the running statement ends" in line for line in h.log)
    h.host.release.set()
    assert h.wait_finished().ok


def test_the_plain_rerun_instead_of_a_rewind_names_the_line_the_user_sees(harness) -> None:  # type: ignore[no-untyped-def]
    h = harness(checkpoints=RefusingCheckpoints(), nodes_up=True)
    h.start_run(0, None)
    assert h.wait_finished().ok
    outcome = h.controller.rewind(3)  # the subtest, on line 4
    assert outcome.plan is not None
    assert "a plain rerun from line 4 instead" in outcome.plan.reason, outcome.plan.reason
    assert h.wait_finished().ok
