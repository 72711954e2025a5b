"""The decisions of live iteration (vmtui/live.py), without a screen."""

from __future__ import annotations

from pathlib import Path

from driver.config import NodeConfig, TestConfig
from driver.runner import ScriptSyntaxError, Statement
from vmtui.live import (
    LiveState,
    ScriptSwap,
    checkpoint_notice,
    next_rerun_mode,
    rewind_notice,
    save_view,
    saved_files,
    statement_at,
)
from vmtui.nix import ConfigChange
from vmtui.rebuild import RebuildResult
from vmtui.rerun import RerunMode, RerunPlan, SaveOutcome


def _config(script: str = "/t/test.py") -> TestConfig:
    return TestConfig(nodes=[NodeConfig("server", "run-server-vm")], vlans=[1], script_path=Path(script))


def _result(*, script_changed: bool = False, restartable: dict[str, str] | None = None,
            needs_new_session: list[str] | None = None, script_moved: bool = False,
            script: str = "/t/test.py") -> RebuildResult:
    change = ConfigChange(script_changed=script_changed, changed_nodes=sorted(restartable or {}),
                          new_config=_config(script))
    return RebuildResult(change, dict(restartable or {}), list(needs_new_session or []), script_moved)


def test_a_script_only_change_swaps_the_script_and_reruns() -> None:
    live = LiveState()
    decision = live.rebuilt(_result(script_changed=True, script_moved=True, script="/new/test.py"))
    assert decision.swap == ScriptSwap(Path("/new/test.py"), run=True)
    assert [n.message for n in decision.notices] == ["only the test script changed: it reruns on the running VMs"]
    assert live.pending_restart == {}


def test_changed_nodes_wait_for_the_restart_key_named_as_remapped() -> None:
    live = LiveState(restart_key=lambda: "ctrl+r")
    decision = live.rebuilt(_result(script_changed=True, restartable={"server": "new-cmd"}, script="/new/test.py"))
    assert decision.swap is None  # the new script comes with the restart
    assert live.pending_restart == {"server": "new-cmd"} and live.pending_script == Path("/new/test.py")
    assert decision.status is not None and decision.status.detail == "server: ctrl+r restarts them"
    assert "Press ctrl+r to restart only them and run the new script" in decision.notices[0].message
    assert decision.warnings == (decision.notices[0].message,)


def test_a_moved_but_unchanged_script_is_followed_quietly_even_with_restarts_pending() -> None:
    live = LiveState()
    decision = live.rebuilt(_result(restartable={"server": "c"}, script_moved=True, script="/moved.py"))
    assert decision.swap == ScriptSwap(Path("/moved.py"), run=False)
    quiet = LiveState().rebuilt(_result(script_moved=True, script="/moved.py"))
    assert quiet.swap == ScriptSwap(Path("/moved.py"), run=False) and quiet.notices == ()


def test_what_needs_a_new_session_is_only_reported() -> None:
    live = LiveState()
    decision = live.rebuilt(_result(needs_new_session=["node x is new"]))
    assert decision.swap is None and decision.status is None
    assert decision.notices[0].severity == "warning"
    assert decision.notices[0].message == "node x is new: quit and open the test again to apply this"
    nothing = LiveState().rebuilt(_result())
    assert nothing.status is not None and nothing.status.state == "rebuilt"


def test_a_rebuild_that_changed_no_node_clears_an_earlier_pending_restart() -> None:
    live = LiveState()
    live.rebuilt(_result(restartable={"server": "c"}))
    live.rebuilt(_result(script_changed=True))
    assert live.take_restart() is None


def test_a_newer_rebuild_supersedes_and_cancels_the_older_one() -> None:
    live = LiveState()
    first = live.begin_rebuild()
    second = live.begin_rebuild()
    assert first.is_set() and not second.is_set() and live.rebuilding
    assert not live.finish_rebuild(first)  # a late answer of the old one is dropped
    assert live.rebuilding
    assert live.finish_rebuild(second) and not live.rebuilding


def test_a_failed_restart_can_be_retried_unless_a_newer_rebuild_spoke() -> None:
    live = LiveState()
    live.rebuilt(_result(restartable={"server": "c1"}))
    request = live.take_restart()
    assert request is not None and request.names == "server" and live.take_restart() is None
    live.restart_failed(request)
    assert live.pending_restart == {"server": "c1"}
    retry = live.take_restart()
    assert retry is not None
    live.rebuilt(_result(restartable={"server": "c2"}))  # newer, while the retry ran
    live.restart_failed(retry)
    assert live.pending_restart == {"server": "c2"}


def test_run_to_cursor_runs_on_from_the_first_step_pause_only() -> None:
    live = LiveState()
    live.run_started(run_to_line=7)
    assert live.first_pause("breakpoint") is None
    assert live.first_pause("step") == 7
    assert live.first_pause("step") is None


def test_a_restart_asked_for_during_a_run_happens_once_when_it_ends() -> None:
    live = LiveState()
    assert not live.run_ended()
    live.restart_when_idle = True
    assert live.run_ended() and not live.run_ended()


def test_saved_files_sorts_a_burst_into_script_and_source(tmp_path: Path) -> None:
    script, source = tmp_path / "t.py", tmp_path / "t.nix"
    assert saved_files({script.resolve()}, script, source).script
    both = saved_files({script.resolve(), source.resolve()}, script, source)
    assert both.script and both.source
    assert not saved_files({source.resolve()}, script, None).source


def test_rerun_modes_cycle_through_every_mode() -> None:
    seen = [RerunMode.CHANGED]
    while (mode := next_rerun_mode(seen[-1])) is not RerunMode.CHANGED:
        seen.append(mode)
    assert seen == list(RerunMode)


def test_statement_at_finds_the_statement_covering_a_line() -> None:
    statements = [Statement(0, 1, 1, "a"), Statement(1, 3, 5, "with b:")]
    assert statement_at(statements, 4) == 1
    assert statement_at(statements, 2) is None


def test_how_save_outcomes_show() -> None:
    error = save_view(SaveOutcome(syntax_error=ScriptSyntaxError("t.py", None, "invalid syntax")))
    assert error.syntax_error == "SyntaxError: invalid syntax" and error.syntax_error_line is None
    failed = save_view(SaveOutcome(error="cannot restore"))
    assert failed.notice is not None and failed.notice.severity == "error" and not failed.hide_error
    plan = RerunPlan(RerunMode.CHANGED, 2, reason="from line 3")
    ran = save_view(SaveOutcome(plan=plan))
    assert ran.notice is not None and ran.notice.message == "from line 3" and ran.hide_error
    assert rewind_notice(SaveOutcome()) is None
    assert checkpoint_notice(None).message == "taken when the running statement ends"
    assert checkpoint_notice("k1", 0.5).message == "'k1' saved in 0.50 s"
