"""Replay in the TUI, driven with Pilot: the samples in tests/data, read-only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vmtui.replay.app import ReplayApp, make_replay_app
from widgets.console_pane import ConsolePane
from widgets.run_status import RunStatus
from widgets.script_view import ScriptView
from widgets.timeline import Timeline

DATA = Path(__file__).resolve().parents[1] / "data"


async def wait_streamed(app: ReplayApp, pilot: object) -> None:
    for _ in range(200):
        if app.streamed and not app._flush_pending:
            break
        await asyncio.sleep(0.02)
    await pilot.pause()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


def pane(app: ReplayApp, machine: str) -> ConsolePane:
    return next(p for p in app.query(ConsolePane) if p.machine == machine)


@pytest.mark.asyncio
async def test_a_nixos_log_becomes_panes_timeline_and_a_marked_failing_line(tmp_path: Path) -> None:
    app = make_replay_app(DATA / "nixos-json-era.log", DATA / "storefront.py", tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_streamed(app, pilot)
        assert {p.machine for p in app.query(ConsolePane)} == {"store", "gateway"}
        store = pane(app, "store").view.lines
        assert store[0] == "[    0.000000] Linux version 6.12.40 (nixbld@localhost)"
        assert "storefront[733]: panic: database is locked" in store[-2]
        # The failing statement is marked in the script, from the traceback.
        assert app.query_one(ScriptView).error_line == 8
        assert app.query_one(RunStatus).state == "failed"
        labels = [str(node.label) for node in app.query_one(Timeline).root.children[0].children]
        assert any("run the VM test script" in label for label in labels)
    app.replay.close()


@pytest.mark.asyncio
async def test_choosing_a_timeline_block_jumps_to_its_line_and_the_consoles_then(tmp_path: Path) -> None:
    app = make_replay_app(DATA / "nixos-json-era.log", DATA / "storefront.py", tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_streamed(app, pilot)
        timeline = app.query_one(Timeline)
        # Block 7: `store: waiting for unit multi-user.target`, before store booted.
        node = timeline.block_node(7)
        assert node is not None
        # It sits in a passed subtest, folded away: unfold it as a user would.
        assert node.parent is not None and not node.parent.is_expanded
        node.parent.expand()
        await pilot.pause()
        timeline.focus()
        timeline.move_cursor(node)
        await pilot.pause()
        assert app.jumped_to == 7
        assert app.script_view.cursor_line == 4
        lines = pane(app, "store").view.lines
        marker = next(i for i, line in enumerate(lines) if "store: waiting for unit multi-user.target" in line)
        assert marker == 0  # nothing printed before that moment
        assert "Linux version" in lines[1]
        # Back to the newest lines.
        await pilot.press("l")
        await pilot.pause()
        assert not app.pinned
        assert "Failed with result" in pane(app, "store").view.lines[-1]
    app.replay.close()


@pytest.mark.asyncio
async def test_replay_is_read_only(tmp_path: Path) -> None:
    app = make_replay_app(DATA / "nixos-logfile.xml", DATA / "mailer.py", tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_streamed(app, pilot)
        for action in ("continue", "step_over", "toggle_breakpoint", "open_shell", "restart", "checkpoint"):
            assert app.check_action(action, ()) is False
        await pilot.press("b")
        await pilot.press("c")
        await pilot.pause()
        assert app.session is None
        assert not app.breakpoint_store.load(app.config.script_path)
    app.replay.close()


@pytest.mark.asyncio
async def test_search_finds_console_and_driver_lines_and_jumps(tmp_path: Path) -> None:
    app = make_replay_app(DATA / "nixos-logfile.xml", DATA / "mailer.py", tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_streamed(app, pilot)
        hits = app.replay.search("postfix", script=app.script_source)
        assert [h.where for h in hits] == ["(script)", "(driver)", "mailer", "mailer", "mailer"]
        sendmail = app.replay.search("sendmail", script=app.script_source)
        assert [(h.where, h.line) for h in sendmail] == [("(script)", 3), ("(driver)", 12)]
        assert sendmail[1].block_id is not None
        await pilot.press("F")
        await pilot.pause()
        await pilot.press(*"deferred", "enter")
        for _ in range(50):
            await pilot.pause()
            if app.screen.query("#search-hits") and app.screen.query_one("#search-hits").option_count:  # type: ignore[attr-defined]
                break
        await pilot.press("enter")
        await pilot.pause()
        assert app.pinned
        view = pane(app, "mailer").view
        assert view.search_term == "deferred"
        assert any("status=deferred" in line for line in view.lines)
    app.replay.close()


def write_record(tmp_path: Path, state: Path | None = None) -> Path:
    """A record as a run writes it: a real RunRecord fed the events of a failed run."""
    from driver.config import NodeConfig, TestConfig
    from driver.events import (BlockClosed, BlockOpened, ConsoleOutput, LogLevel, LogMessage, ScriptFinished,
                               ScriptStarted, StatementFinished, StatementStarted)
    from driver.record import RunRecord

    script = tmp_path / "web.py"
    script.write_text('start_all()\nserver.succeed("true")\nserver.succeed("false")\n')
    config = TestConfig(nodes=[NodeConfig("server", "")], vlans=[], script_path=script, name="web")
    directory = state if state is not None else tmp_path / "vmtui-run"
    record = RunRecord(directory, config, kind="headless")
    record(ScriptStarted(filename=str(script), run_id=1))
    record(ConsoleOutput(machine="server", lines=tuple(f"boot line {i}" for i in range(30))))
    for line, ok in ((1, True), (2, True), (3, False)):
        record(StatementStarted(run_id=1, line=line, end_line=line))
        record(BlockOpened(block_id=line, parent_id=None, title=f"must succeed: step {line}", machine="server",
                           script_line=line))
        record(ConsoleOutput(machine="server", lines=(f"during step {line}",)))
        record(BlockClosed(block_id=line, duration=0.25 * line, ok=ok, error=None if ok else "exit 1"))
        record(StatementFinished(run_id=1, line=line, end_line=line, ok=ok, duration=0.25 * line))
    record(LogMessage("Traceback (most recent call last):", level=LogLevel.ERROR))
    record(ScriptFinished(run_id=1, ok=False, duration=1.5, error="RequestedAssertionFailed: exit 1", error_line=3))
    record.close(ok=False)
    return directory


@pytest.mark.asyncio
async def test_a_record_replays_with_its_statement_marks_and_moments(tmp_path: Path) -> None:
    record = write_record(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    app = make_replay_app(record, None, spool)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_streamed(app, pilot)
        script = app.query_one(ScriptView)
        assert script.error_line == 3
        assert app.config.script_path == record / "web.py"
        lines = pane(app, "server").view.lines
        assert lines[0] == "boot line 0" and lines[-1] == "during step 3"
        timeline = app.query_one(Timeline)
        timeline.focus()
        node = timeline.block_node(2)
        assert node is not None
        timeline.move_cursor(node)
        await pilot.pause()
        assert script.cursor_line == 2
        shown = pane(app, "server").view.lines
        at = next(i for i, line in enumerate(shown) if "server: must succeed: step 2" in line)
        assert shown[at - 1] == "during step 1" and shown[at + 1] == "during step 2"
    app.replay.close()


@pytest.mark.asyncio
async def test_the_live_app_lists_past_runs_of_its_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from driver.config import TestConfig
    from driver.record import new_tui_record_directory
    from vmtui.app import VmtuiApp
    from vmtui.replay.past_runs import PastRunsScreen, replay_command

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    older = write_record(tmp_path, new_tui_record_directory("web", keep=5))
    newer = write_record(tmp_path, new_tui_record_directory("web", keep=5))
    config = TestConfig(nodes=[], vlans=[], script_path=tmp_path / "web.py", name="web")
    app = VmtuiApp(config, None, autostart=False, clock=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("P")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PastRunsScreen)
        assert screen.runs == [newer, older]
        labels = [str(screen.query_one("#past-runs").get_option_at_index(i).prompt) for i in range(2)]  # type: ignore[attr-defined]
        assert labels[0] == f"{newer.name}  failed: RequestedAssertionFailed: exit 1"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, PastRunsScreen)
    assert replay_command(newer)[-2:] == ["replay", str(newer)]


@pytest.mark.asyncio
async def test_without_the_script_the_traceback_shows_the_failing_line(tmp_path: Path) -> None:
    app = make_replay_app(DATA / "nixos-json-era.log", None, tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_streamed(app, pilot)
        script = app.query_one(ScriptView)
        assert script.line_text(8) == 'store.wait_for_unit("storefront.service")'
        assert script.line_text(1).startswith("# This log names no test script")
        assert script.error_line == 8 and script.cursor_line == 8
    app.replay.close()
