"""Rerun planning: statement diffing, the run record, and each rerun mode."""

from __future__ import annotations

import textwrap

import pytest

from driver.events import (
    BlockClosed,
    BlockOpened,
    EventBus,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
)
from driver.runner import ScriptRunner, ScriptSyntaxError
from vmtui.rerun import (
    CheckpointMark,
    Outcome,
    RerunMode,
    RunRecord,
    RunTracker,
    describe_changes,
    map_index,
    plan_rerun,
    plan_rewind,
    split_statements,
)

SCRIPT = textwrap.dedent(
    """\
    start_all()

    def check(m):
        m.succeed("true")

    with subtest("server"):
        check(server)

    with subtest("client"):
        client.succeed("curl server")

    client.succeed("echo done")
    """
)


def statements(source: str = SCRIPT):  # type: ignore[no-untyped-def]
    return split_statements(source, "test.py")


def passed_record(count: int) -> RunRecord:
    return RunRecord(outcomes={i: Outcome.PASSED for i in range(count)})


def test_split_matches_the_runner() -> None:
    class NoDriver:  # load() needs no driver
        pass

    runner = ScriptRunner(NoDriver(), EventBus())  # type: ignore[arg-type]
    runner.load(SCRIPT, "test.py")
    assert statements() == runner.statements


def test_split_reports_syntax_errors_with_their_line() -> None:
    with pytest.raises(ScriptSyntaxError) as caught:
        split_statements("start_all()\nif True\n    pass\n", "t.py")
    assert caught.value.line == 2
    with pytest.raises(ScriptSyntaxError) as caught:
        split_statements("x = 1\nreturn x\n", "t.py")  # only the compiler rejects this
    assert caught.value.line == 2


def test_decorated_function_starts_at_its_decorator() -> None:
    found = statements("@retry\ndef f():\n    pass\n")
    assert (found[0].line, found[0].end_line) == (1, 3)


def test_describe_changes_names_changed_added_removed() -> None:
    old = statements()
    new_source = SCRIPT.replace('"curl server"', '"curl -f server"').replace(
        'client.succeed("echo done")\n', 'client.succeed("echo done")\nclient.succeed("echo more")\n'
    )
    changes = describe_changes(old, statements(new_source))
    assert [(c.kind, c.line) for c in changes] == [("changed", 9), ("added", 13)]
    removed = describe_changes(old, statements(SCRIPT.replace("start_all()\n", "")))
    assert [c.kind for c in removed] == ["removed"]


def test_blank_lines_and_comments_between_statements_are_no_change() -> None:
    moved = "# a comment\n\n" + SCRIPT.replace("\n\n", "\n\n\n")
    plan = plan_rerun(statements(), statements(moved), passed_record(5))
    assert plan.changes == ()
    assert not plan.runs_anything
    assert "nothing to rerun" in plan.reason


def test_changed_mode_starts_at_the_first_change() -> None:
    new = statements(SCRIPT.replace('"curl server"', '"curl -f server"'))
    plan = plan_rerun(statements(), new, passed_record(5))
    assert plan.mode is RerunMode.CHANGED
    assert plan.start == 3 and plan.stop is None
    assert "line 9" in plan.reason


def test_changed_mode_starts_earlier_when_an_earlier_statement_failed() -> None:
    record = RunRecord(outcomes={0: Outcome.PASSED, 1: Outcome.PASSED, 2: Outcome.FAILED})
    new = statements(SCRIPT.replace('"echo done"', '"echo finished"'))
    plan = plan_rerun(statements(), new, record)
    assert plan.start == 2
    assert "did not pass" in plan.reason


def test_unchanged_save_reruns_what_did_not_pass() -> None:
    record = RunRecord(outcomes={0: Outcome.PASSED, 1: Outcome.PASSED, 2: Outcome.CANCELLED})
    plan = plan_rerun(statements(), statements(), record)
    assert plan.start == 2


def test_all_mode_runs_everything() -> None:
    plan = plan_rerun(statements(), statements(), passed_record(5), RerunMode.ALL)
    assert (plan.start, plan.stop) == (0, None)


def test_failed_mode_reruns_only_the_failed_statement_even_after_edits() -> None:
    record = RunRecord(
        outcomes={0: Outcome.PASSED, 1: Outcome.PASSED, 2: Outcome.PASSED, 3: Outcome.FAILED},
        failed_subtest="client",
        failed_index=3,
    )
    # The fix edits the failing subtest and inserts a statement above it.
    fixed = SCRIPT.replace('"curl server"', '"curl -f server"').replace(
        "start_all()\n", "start_all()\nserver.wait_for_open_port(80)\n"
    )
    plan = plan_rerun(statements(), statements(fixed), record, RerunMode.FAILED)
    assert (plan.start, plan.stop) == (4, 5)
    assert "subtest 'client'" in plan.reason


def test_failed_mode_without_a_failure_falls_back() -> None:
    plan = plan_rerun(statements(), statements(), RunRecord(), RerunMode.FAILED)
    assert plan.mode is RerunMode.CHANGED and plan.start == 0
    assert "no failed subtest" in plan.reason


def test_checkpoint_mode_uses_the_newest_checkpoint_before_the_change() -> None:
    marks = [CheckpointMark("boot", 1), CheckpointMark("after-server", 3), CheckpointMark("late", 5)]
    new = statements(SCRIPT.replace('"curl server"', '"curl -f server"'))  # statement 3 changed
    plan = plan_rerun(statements(), new, passed_record(5), RerunMode.CHECKPOINT, marks)
    assert (plan.checkpoint, plan.start) == ("after-server", 3)
    earlier = statements(SCRIPT.replace("check(server)", "check(server); check(server)"))  # statement 2
    plan = plan_rerun(statements(), earlier, passed_record(5), RerunMode.CHECKPOINT, marks)
    assert (plan.checkpoint, plan.start) == ("boot", 1)


def test_checkpoint_mode_without_checkpoints_falls_back() -> None:
    new = statements(SCRIPT.replace('"echo done"', '"echo finished"'))
    plan = plan_rerun(statements(), new, passed_record(5), RerunMode.CHECKPOINT, [])
    assert plan.mode is RerunMode.CHANGED and plan.checkpoint is None and plan.start == 4
    assert "no checkpoint" in plan.reason


def test_rewind_restores_and_replays_up_to_the_statement() -> None:
    marks = [CheckpointMark("boot", 1)]
    plan = plan_rewind(3, marks)
    assert plan is not None
    assert (plan.checkpoint, plan.start, plan.stop) == ("boot", 1, 3)
    exact = plan_rewind(1, marks)
    assert exact is not None and exact.checkpoint == "boot" and not exact.runs_anything
    assert plan_rewind(0, marks) is None


def test_map_index_follows_statements_across_edits() -> None:
    old = statements()
    inserted = statements(SCRIPT.replace("start_all()\n", "start_all()\nx = 1\n"))
    assert map_index(old, inserted, 3) == 4
    assert map_index(old, statements(SCRIPT.replace("start_all()\n", "")), 0) is None


def _publish_run(tracker: RunTracker, statements_, failing: int | None, subtest: str | None = None) -> None:  # type: ignore[no-untyped-def]
    tracker(ScriptStarted(filename="t.py", run_id=1, first_line=1))
    for s in statements_:
        tracker(StatementStarted(run_id=1, line=s.line, end_line=s.end_line))
        if s.index == failing:
            if subtest:
                tracker(BlockOpened(block_id=900, parent_id=None, title=f"subtest: {subtest}", kind="subtest"))
                tracker(BlockOpened(block_id=901, parent_id=900, title="must succeed: false"))
                tracker(BlockClosed(block_id=901, duration=0.1, ok=False, error="boom"))
                tracker(BlockClosed(block_id=900, duration=0.1, ok=False, error="boom"))
            tracker(StatementFinished(run_id=1, line=s.line, end_line=s.end_line, ok=False, duration=0.1, error="X: boom"))
            break
        tracker(StatementFinished(run_id=1, line=s.line, end_line=s.end_line, ok=True, duration=0.1))
    tracker(ScriptFinished(run_id=1, ok=failing is None, duration=1.0))


def test_tracker_records_outcomes_and_the_failed_subtest() -> None:
    old = statements()
    tracker = RunTracker(old)
    _publish_run(tracker, old, failing=3, subtest="client")
    record = tracker.record
    assert record.outcomes == {0: Outcome.PASSED, 1: Outcome.PASSED, 2: Outcome.PASSED, 3: Outcome.FAILED}
    assert (record.failed_index, record.failed_subtest) == (3, "client")

    new = statements(SCRIPT.replace('"curl server"', '"curl -f server"'))
    plan = plan_rerun(old, new, record, RerunMode.FAILED)
    assert (plan.start, plan.stop) == (3, 4)
    tracker.reload(new)
    # The unchanged prefix keeps its outcomes; the edited statement lost its own.
    assert tracker.record.outcomes == {0: Outcome.PASSED, 1: Outcome.PASSED, 2: Outcome.PASSED}
    assert tracker.record.failed_index == 3


def test_a_rerun_forgets_outcomes_from_where_it_starts() -> None:
    old = statements()
    tracker = RunTracker(old)
    _publish_run(tracker, old, failing=None)
    tracker(ScriptStarted(filename="t.py", run_id=2, first_line=old[2].line))
    tracker(StatementStarted(run_id=2, line=old[2].line, end_line=old[2].end_line))
    assert set(tracker.record.outcomes) == {0, 1}


def test_cancelled_subtest_is_not_a_failed_one() -> None:
    old = statements()
    tracker = RunTracker(old)
    tracker(ScriptStarted(filename="t.py", run_id=1, first_line=1))
    tracker(StatementStarted(run_id=1, line=old[2].line, end_line=old[2].end_line))
    tracker(BlockOpened(block_id=5, parent_id=None, title="subtest: server", kind="subtest"))
    tracker(BlockClosed(block_id=5, duration=0.1, ok=False, error="cancelled", cancelled=True))
    tracker(StatementFinished(run_id=1, line=old[2].line, end_line=old[2].end_line, ok=False, duration=0.1, error="cancelled", cancelled=True))
    record = tracker.record
    assert record.outcomes[2] is Outcome.CANCELLED
    assert record.failed_subtest is None and record.failed_index is None


def test_checkpoint_mode_in_a_test_that_cannot_have_checkpoints_says_why() -> None:
    new = statements(SCRIPT.replace('"echo done"', '"echo finished"'))
    why = "server cannot be checkpointed: its shared directories 'nix-store' (...) are virtiofs"
    plan = plan_rerun(statements(), new, passed_record(5), RerunMode.CHECKPOINT, [], why)
    assert plan.mode is RerunMode.CHANGED and plan.checkpoint is None and plan.start == 4
    assert plan.reason.startswith(f"no checkpoints in this test: {why}; a plain rerun instead; ")
