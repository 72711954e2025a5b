"""Pilot tests of the widgets, fed with driver events (no VMs: they only know events)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual import events
from textual.app import App, ComposeResult

from driver.errors import ConfigError
from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    DebuggerPaused,
    EventBus,
    FrameSummary,
    LogMessage,
    MachineState,
    MachineStateChanged,
    ScriptFinished,
    ScriptStarted,
    WaitProgress,
)
from vmtui.bridge import EventBridge
from vmtui.keymap import load_keymap
from vmtui.state_files import BreakpointStore
from widgets.console_pane import ConsolePane
from widgets.console_view import ConsoleView, plain_text
from widgets.debugger import ReplInput
from widgets.machine_status import MachineStatus, format_duration
from widgets.run_status import RunStatus
from widgets.script_view import Mark, ScriptView
from widgets.timeline import Timeline


class OneWidget(App[None]):
    def __init__(self, *widgets: object) -> None:
        super().__init__()
        self._widgets = widgets
        self.messages: list[object] = []

    def compose(self) -> ComposeResult:
        yield from self._widgets  # type: ignore[misc]

    def on_script_view_breakpoint_clicked(self, message: ScriptView.BreakpointClicked) -> None:
        self.messages.append(message)

    def on_timeline_line_selected(self, message: Timeline.LineSelected) -> None:
        self.messages.append(message)

    def on_repl_input_evaluate(self, message: ReplInput.Evaluate) -> None:
        self.messages.append(message)


def numbered(count: int, start: int = 0) -> list[str]:
    return [f"line {n}" for n in range(start, start + count)]


# -- console view ------------------------------------------------------------


async def test_console_follows_new_lines_until_scrolled_up_and_resumes_at_bottom() -> None:
    view = ConsoleView()
    app = OneWidget(view)
    async with app.run_test(size=(60, 12)) as pilot:
        view.append_lines(numbered(100))
        await pilot.pause()
        assert view.follow
        assert view.scroll_y == view.max_scroll_y > 0

        view.scroll_to(y=10, animate=False)
        await pilot.pause()
        assert not view.follow

        view.append_lines(numbered(50, 100))
        await pilot.pause()
        assert view.scroll_y == 10, "new lines must not move a view the user scrolled"
        assert view.unseen_lines == 50

        await pilot.click(ConsoleView)
        await pilot.press("end")
        await pilot.pause()
        assert view.follow
        assert view.unseen_lines == 0
        view.append_lines(numbered(5, 150))
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y


async def test_mouse_wheel_up_stops_follow_mode() -> None:
    view = ConsoleView()
    app = OneWidget(view)
    async with app.run_test(size=(60, 12)) as pilot:
        view.append_lines(numbered(100))
        await pilot.pause()
        await pilot.mouse_down(ConsoleView)  # focus, like a user would
        view.post_message(events.MouseScrollUp(view, 5, 5, 0, -1, 0, False, False, False))
        await pilot.pause()
        assert not view.follow


async def test_console_scrollback_is_bounded_and_drops_oldest_lines() -> None:
    view = ConsoleView(max_lines=1000)
    app = OneWidget(view)
    async with app.run_test(size=(60, 12)) as pilot:
        for start in range(0, 5000, 250):
            view.append_lines(numbered(250, start))
        await pilot.pause()
        assert view.line_count == 1000
        assert view.total_lines == 5000
        assert view.lines[0] == "line 4000"
        assert view.lines[-1] == "line 4999"


async def test_console_keeps_reading_position_when_old_lines_drop() -> None:
    view = ConsoleView(max_lines=200)
    app = OneWidget(view)
    async with app.run_test(size=(60, 12)) as pilot:
        view.append_lines(numbered(200))
        await pilot.pause()
        view.scroll_to(y=100, animate=False)
        await pilot.pause()
        first_visible = view.lines[int(view.scroll_y)]
        view.append_lines(numbered(30, 200))
        await pilot.pause()
        assert view.lines[int(view.scroll_y)] == first_visible


async def test_console_decodes_ansi_colours_and_strips_controls() -> None:
    view = ConsoleView()
    app = OneWidget(view)
    async with app.run_test(size=(60, 6)) as pilot:
        view.append_lines(["\x1b[31mred\x1b[0m plain\x07 \x1b[1;32mgreen\x1b[0m"])
        await pilot.pause()
        strip = view.render_line(0)
        text = "".join(segment.text for segment in strip)
        assert text.startswith("red plain green")
        colours = {segment.text: segment.style.color for segment in strip if segment.text.strip()}
        assert colours["red"] is not None and colours["red"] != colours[" plain "]
    assert plain_text("\x1b[31mred\x1b[0m\x07 \x1b]0;title\x07x") == "red x"


async def test_console_search_moves_to_matches_backwards_and_highlights() -> None:
    view = ConsoleView()
    app = OneWidget(view)
    async with app.run_test(size=(60, 10)) as pilot:
        lines = numbered(300)
        lines[40] = "kernel: \x1b[31mOops\x1b[0m at 0x1"
        lines[250] = "another OOPS here"
        view.append_lines(lines)
        await pilot.pause()
        assert view.find("oops", backwards=True) == 250
        assert not view.follow
        assert view.find(backwards=True) == 40
        assert view.find(backwards=True) is None
        assert view.find() == 250
        await pilot.pause()
        assert view.scroll_y <= 250 < view.scroll_y + view.scrollable_content_region.height


async def test_console_pane_search_box_and_state_line() -> None:
    pane = ConsolePane("server", clock=lambda: 100.0)
    app = OneWidget(pane)
    async with app.run_test(size=(80, 12)) as pilot:
        pane.apply_state(MachineStateChanged("server", MachineState.BOOTING, pid=42, timestamp=10.0))
        pane.append_lines(numbered(100) + ["the needle"] + numbered(100, 100))
        await pilot.pause()
        title = str(pane.border_title)
        assert "server" in title and "booting" in title and "pid 42" in title and "1:30" in title

        pane.view.focus()
        await pilot.press("slash")
        await pilot.press(*"needle", "enter")
        await pilot.pause()
        assert pane.view.search_term == "needle"
        assert not pane.view.follow
        assert "paused" in str(pane.border_subtitle)
        await pilot.press("escape")
        assert pane.view.search_term is None
        assert pane.view.has_focus

        pane.apply_state(MachineStateChanged("server", MachineState.EXITED, exit_code=1))
        assert "code 1" in str(pane.border_title)


async def test_console_pane_maximises_and_restores() -> None:
    panes = [ConsolePane("a", clock=None), ConsolePane("b", clock=None)]
    app = OneWidget(*panes)
    async with app.run_test(size=(80, 20)) as pilot:
        panes[1].view.focus()
        assert app.screen.maximize(panes[1].view)
        await pilot.pause()
        assert app.screen.maximized is panes[1]
        await pilot.press("escape")
        assert app.screen.maximized is None


def test_machine_status_folds_events() -> None:
    status = MachineStatus("client")
    status.apply(MachineStateChanged("client", MachineState.BOOTING, pid=7, timestamp=5.0))
    assert status.uptime(65.0) == 60.0
    assert "up 1:00" in status.markup(65.0)
    status.apply(MachineStateChanged("client", MachineState.EXITED, exit_code=0))
    assert status.uptime(100.0) is None
    assert "code 0" in status.markup(100.0) and "pid" not in status.markup(100.0)
    assert format_duration(0.5) == "0.50s" and format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"


# -- script view ---------------------------------------------------------------

SCRIPT = 'start_all()\nserver.wait_for_unit("x")\n\nwith subtest("a"):\n    server.succeed("true")\n    client.fail("false")\n'


async def test_script_view_gutter_marks_breakpoints_and_clicks() -> None:
    view = ScriptView(SCRIPT)
    app = OneWidget(view)
    async with app.run_test(size=(80, 10)) as pilot:
        assert view.line_count == 6
        view.mark_finished(1, 1, True, 1.5)
        view.mark_running(4, 6)
        view.set_breakpoints([5])
        view.set_paused(5)
        await pilot.pause()
        rows = ["".join(segment.text for segment in view.render_line(y)) for y in range(6)]
        assert "✓ start_all()" in rows[0] and rows[0].rstrip().endswith("1.50s")
        assert rows[3].lstrip().startswith("4") and "▶" in rows[3]
        assert rows[4].startswith("●▶") and "│" in rows[4]
        assert view.cursor_line == 5

        await pilot.click(ScriptView, offset=(0, 1))
        assert [m.line for m in app.messages if isinstance(m, ScriptView.BreakpointClicked)] == [2]
        assert view.cursor_line == 2
        await pilot.click(ScriptView, offset=(30, 2))  # on the code: moves the cursor only
        assert view.cursor_line == 3 and len(app.messages) == 1

        await pilot.press("down", "down")
        assert view.cursor_line == 5
        view.mark_all_stale()
        assert view.mark_at(1) is not None and view.mark_at(1).stale
        assert view.mark_at(1).mark is Mark.PASSED


async def test_script_view_nix_source_has_no_debugger_gutter() -> None:
    view = ScriptView('{ pkgs, ... }:\n{\n  nodes.server = { };\n}\n', language="nix", debugger_gutter=False)
    app = OneWidget(view)
    async with app.run_test(size=(60, 6)) as pilot:
        await pilot.click(ScriptView, offset=(0, 2))
        assert app.messages == []
        row = "".join(segment.text for segment in view.render_line(2))
        assert row.startswith("   3 ") and "nodes.server" in row


# -- timeline and status ---------------------------------------------------------


async def test_timeline_nests_blocks_marks_results_and_jumps_to_lines() -> None:
    timeline = Timeline()
    app = OneWidget(timeline)
    async with app.run_test(size=(100, 20)) as pilot:
        timeline.apply(ScriptStarted("t.py", run_id=1, first_line=1))
        timeline.apply(BlockOpened(1, None, "subtest: web", kind="subtest", script_line=4))
        timeline.apply(BlockOpened(2, 1, "waiting for unit nginx", machine="server", script_line=5))
        timeline.apply(WaitProgress("server", "unit nginx", 3.0, 900.0, 4))
        waiting = str(timeline.root.children[0].children[0].children[0].label)
        assert "3.00s / 15:00" in waiting
        timeline.apply(BlockClosed(2, 3.5, ok=False, error="RequestedAssertionFailed: unit nginx failed"))
        timeline.apply(LogMessage("a log line", machine="server"))
        timeline.apply(BlockClosed(1, 3.6, ok=False))
        timeline.apply(ScriptFinished(1, ok=False, duration=4.0, error="boom", error_line=5))
        run = timeline.root.children[0]
        block = run.children[0].children[0]
        assert "✗" in str(block.label) and "3.50s" in str(block.label) and "unit nginx failed" in str(block.label)
        assert "✗" in str(run.label)

        timeline.focus()
        await pilot.pause()
        timeline.move_cursor(block)
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert [m.line for m in app.messages if isinstance(m, Timeline.LineSelected)] == [5]

        timeline.apply(ScriptStarted("t.py", run_id=2, first_line=1))
        assert len(timeline.root.children) == 2 and not run.is_expanded


async def test_a_block_of_unknown_duration_shows_none() -> None:
    """A replayed NixOS log never says how long a failed block took: no made-up 0.00s."""
    timeline = Timeline()
    app = OneWidget(timeline)
    async with app.run_test(size=(100, 20)):
        timeline.apply(ScriptStarted("t.py", run_id=1, first_line=1))
        timeline.apply(BlockOpened(1, None, "must succeed: false", machine="server"))
        timeline.apply(BlockClosed(1, None, ok=False, error="command `false` failed"))
        label = str(timeline.root.children[0].children[0].label)
        assert "✗" in label and "command `false` failed" in label
        assert not re.search(r"\d\.\d\ds", label)


async def test_run_status_tells_what_the_run_does() -> None:
    status = RunStatus("todos")
    app = OneWidget(status)
    async with app.run_test(size=(120, 3)) as pilot:
        status.apply(ScriptStarted("t.py", 1, 1))
        status.apply(WaitProgress("server", "unit nginx", 12.0, 900.0, 6))
        assert "unit nginx" in str(status.render()) and "12.0s / 15:00" in str(status.render())
        status.apply(DebuggerPaused(1, 7, "exception", stack=(FrameSummary("t.py", 7, "<module>", True),), error="X: boom"))
        assert status.state == "post-mortem" and "X: boom" in str(status.render())
        status.apply(ScriptFinished(1, ok=True, duration=3.0))
        assert status.state == "passed"
        await pilot.pause()


# -- REPL input ---------------------------------------------------------------------


async def test_repl_input_history_is_browsable_and_persisted(tmp_path: Path) -> None:
    history = tmp_path / "history"
    repl = ReplInput(history_path=history)
    app = OneWidget(repl)
    async with app.run_test(size=(80, 3)) as pilot:
        repl.focus()
        await pilot.press(*"1+1", "enter")
        await pilot.press(*"x = 2", "enter")
        assert [m.source for m in app.messages if isinstance(m, ReplInput.Evaluate)] == ["1+1", "x = 2"]
        await pilot.press(*"dra")
        await pilot.press("up")
        assert repl.value == "x = 2"
        await pilot.press("up", "up")
        assert repl.value == "1+1"
        await pilot.press("down", "down")
        assert repl.value == "dra", "leaving the history restores the line being typed"
    assert history.read_text().splitlines() == ["1+1", "x = 2"]
    assert ReplInput(history_path=history).history == ["1+1", "x = 2"]


# -- bridge, keymap, state files ---------------------------------------------------


def test_bridge_merges_console_lines_and_signals_once() -> None:
    posted: list[object] = []
    bridge = EventBridge(posted.append, max_pending_lines=5)
    bus = EventBus()
    bus.subscribe(bridge)
    bus.publish(ConsoleOutput("a", ("1", "2")))
    bus.publish(MachineStateChanged("a", MachineState.BOOTING))
    bus.publish(ConsoleOutput("a", ("3", "4", "5", "6")))
    bus.publish(ConsoleOutput("b", ("x",)))
    assert len(posted) == 1
    batch = bridge.drain()
    assert batch.console == {"a": ["2", "3", "4", "5", "6"], "b": ["x"]}
    assert [type(e).__name__ for e in batch.events] == ["MachineStateChanged"]
    bus.publish(ConsoleOutput("a", ("7",)))
    assert len(posted) == 2


def test_keymap_file_maps_ids_to_keys_and_rejects_unknown_ids(tmp_path: Path) -> None:
    path = tmp_path / "keymap.toml"
    assert load_keymap(path, {"vmtui.step_over"}) == {}
    path.write_text('"vmtui.step_over" = "j, f10"\n')
    assert load_keymap(path, {"vmtui.step_over"}) == {"vmtui.step_over": "j,f10"}
    path.write_text('"vmtui.nope" = "j"\n')
    with pytest.raises(ConfigError, match="unknown binding id 'vmtui.nope'"):
        load_keymap(path, {"vmtui.step_over"})
    path.write_text('"vmtui.step_over" = 3\n')
    with pytest.raises(ConfigError, match="must be a string"):
        load_keymap(path, {"vmtui.step_over"})
    path.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_keymap(path, {"vmtui.step_over"})


def test_breakpoints_are_stored_per_script(tmp_path: Path) -> None:
    store = BreakpointStore(tmp_path / "state")
    script = tmp_path / "a.py"
    assert store.load(script) == []
    store.save(script, {7, 3})
    store.save(tmp_path / "b.py", {1})
    assert BreakpointStore(tmp_path / "state").load(script) == [3, 7]
    store.save(script, set())
    assert store.load(script) == [] and store.load(tmp_path / "b.py") == [1]


async def test_timeline_keeps_a_bounded_number_of_runs() -> None:
    timeline = Timeline()
    app = OneWidget(timeline)
    async with app.run_test(size=(80, 10)) as pilot:
        for run_id in range(1, Timeline.MAX_RUNS + 6):
            timeline.apply(ScriptStarted("t.py", run_id=run_id))
        await pilot.pause()
        labels = [str(node.label) for node in timeline.root.children]
        assert len(labels) == Timeline.MAX_RUNS
        assert f"run {Timeline.MAX_RUNS + 5}" in labels[-1] and "run 6" in labels[0]
