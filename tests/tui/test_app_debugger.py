"""The step debugger end to end: keys and clicks in the app, the real runner and stepper.

These scripts touch no machine, so they run on a Driver without nodes; the
tests in test_app_vm.py do the same against booted guests.
"""

from __future__ import annotations

from pathlib import Path

from helpers import evaluate, repl_output, script_app, wait_until
from vmtui.app import VmtuiApp
from widgets.debugger import BreakpointsView, StackView, VariablesView
from widgets.run_status import RunStatus
from widgets.script_view import Mark, PausedKind

SIZE = (140, 42)

STEPPING = """\
def double(value):
    result = value * 2
    return result

x = 1
y = double(x)
with subtest("a block"):
    z = y + 1
    w = z + 1
done = True
"""


def paused_at(app: VmtuiApp, line: int) -> bool:
    return app.script_view.paused_line == line and app.session is not None and app.session.stepper.is_paused


def finished(app: VmtuiApp) -> bool:
    return app.query_one(RunStatus).state in ("passed", "failed", "stopped") and not app.script_running


async def test_step_over_into_and_continue(tmp_path: Path) -> None:
    app = script_app(tmp_path, STEPPING)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "session")
        await pilot.press("n")  # not running: start, stopped before the first statement
        await wait_until(pilot, lambda: paused_at(app, 1), "stop at line 1")
        await pilot.press("n")
        await wait_until(pilot, lambda: paused_at(app, 5), "step over the def")
        await pilot.press("n")
        await wait_until(pilot, lambda: paused_at(app, 6), "line 6")
        await pilot.press("s")  # into double()
        await wait_until(pilot, lambda: paused_at(app, 2), "inside double()")
        stack = app.query_one(StackView)
        await wait_until(pilot, lambda: stack.option_count == 2, "two frames")
        await wait_until(pilot, lambda: "value" in app.query_one(VariablesView).rows, "locals shown")
        await pilot.press("n", "n")
        await wait_until(pilot, lambda: paused_at(app, 7), "back at top level after return")
        await pilot.press("s")  # into the subtest block
        await wait_until(pilot, lambda: paused_at(app, 8), "inside the with block")
        await pilot.press("c")
        await wait_until(pilot, lambda: finished(app), "run finished")
        assert app.query_one(RunStatus).state == "passed"
        assert app.script_view.paused_line is None
        assert app.script_view.mark_at(10) is not None and app.script_view.mark_at(10).mark is Mark.PASSED
        assert app.last_result_ok is True


async def test_breakpoints_by_key_and_click_survive_reruns(tmp_path: Path) -> None:
    app = script_app(tmp_path, STEPPING)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "session")
        script = app.script_view
        script.focus()
        script.cursor_line = 6
        await pilot.press("b")
        await pilot.click("#script", offset=(0, 8))  # the gutter of line 9
        assert app.session.stepper.breakpoints == {6, 9}
        assert script.breakpoints == {6, 9}
        assert app.query_one(BreakpointsView).option_count == 2

        await pilot.press("c")
        await wait_until(pilot, lambda: paused_at(app, 6), "breakpoint on 6")
        assert app.query_one(RunStatus).state == "paused"
        await pilot.press("c")
        await wait_until(pilot, lambda: paused_at(app, 9), "breakpoint on 9")
        await pilot.press("c")
        await wait_until(pilot, lambda: finished(app), "first run done")

        await pilot.press("r")  # rerun against the same session: breakpoints still there
        await wait_until(pilot, lambda: paused_at(app, 6), "breakpoint on 6 in the rerun")
        await pilot.press("x")
        await wait_until(pilot, lambda: finished(app), "stopped")
        assert app.query_one(RunStatus).state == "stopped"

    # Kept for the next session too.
    again = script_app(tmp_path, STEPPING)
    async with again.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: again.session is not None and again.session.stepper.breakpoints, "restored")
        assert again.session.stepper.breakpoints == {6, 9}
        assert again.script_view.breakpoints == {6, 9}


async def test_run_to_cursor_from_idle_and_while_paused(tmp_path: Path) -> None:
    app = script_app(tmp_path, STEPPING)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "session")
        app.script_view.focus()
        app.script_view.cursor_line = 8
        await pilot.press("t")
        await wait_until(pilot, lambda: paused_at(app, 8), "run to line 8")
        app.script_view.cursor_line = 10
        await pilot.press("t")
        await wait_until(pilot, lambda: paused_at(app, 10), "run to line 10")
        await evaluate(pilot, app, "w", "4")
        await pilot.press("escape", "c")
        await wait_until(pilot, lambda: finished(app), "done")


FAILING = """\
items = ["a", "b"]
count = len(items)
assert count == 3, f"expected 3 items, got {count}"
print("never")
"""


async def test_failure_stops_post_mortem_with_a_readable_error(tmp_path: Path) -> None:
    app = script_app(tmp_path, FAILING, autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: paused_at(app, 3), "post-mortem stop on line 3")
        assert app.script_view.paused_kind is PausedKind.ERROR
        assert app.query_one(RunStatus).state == "post-mortem"
        banner = app.query_one("#error-banner")
        assert banner.has_class("-visible")
        text = str(banner.render())
        assert "AssertionError: expected 3 items, got 2" in text and "line 3" in text

        # The failing frame is still there to inspect.
        await evaluate(pilot, app, "items + ['c']", "['a', 'b', 'c']")
        await wait_until(pilot, lambda: "count" in app.query_one(VariablesView).rows, "variables of the failing frame")

        await pilot.press("escape", "c")
        await wait_until(pilot, lambda: finished(app), "run ended")
        assert app.query_one(RunStatus).state == "failed"
        assert app.script_view.error_line == 3
        assert app.script_view.mark_at(3).mark is Mark.FAILED
        assert app.last_result_ok is False


LOOPING = """\
import time
ticks = 0
while True:
    ticks += 1
    time.sleep(0.01)
"""


async def test_pause_a_running_script_then_stop_it(tmp_path: Path) -> None:
    app = script_app(tmp_path, LOOPING, autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one(RunStatus).state == "running", "running")
        await pilot.press("p")
        await wait_until(pilot, lambda: app.script_view.paused_line in (3, 4, 5), "paused inside the loop")
        await evaluate(pilot, app, "ticks > 0", "True")
        await pilot.press("escape", "x")
        await wait_until(pilot, lambda: finished(app), "stopped")
        assert app.query_one(RunStatus).state == "stopped"
        assert "Traceback" not in repl_output(app)


async def test_repl_runs_statements_and_keeps_history(tmp_path: Path) -> None:
    app = script_app(tmp_path, "value = 20\n", autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: finished(app), "script done")
        await evaluate(pilot, app, "value * 2 + 2", "42")
        await evaluate(pilot, app, "extra = value + 1", ">>> extra = value + 1")
        await evaluate(pilot, app, "print('hello', extra)", "hello 21")
        await evaluate(pilot, app, "1/0", "ZeroDivisionError")
        await wait_until(pilot, lambda: "extra" in app.query_one(VariablesView).rows, "new name listed")
        await pilot.press("up", "up")
        assert app.focused is not None and app.focused.value == "print('hello', extra)"  # type: ignore[attr-defined]


async def test_syntax_error_is_shown_and_fixed_by_reload(tmp_path: Path) -> None:
    app = script_app(tmp_path, "x = (\n", autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one(RunStatus).state == "syntax error", "syntax error shown")
        assert app.query_one("#error-banner").has_class("-visible")
        (tmp_path / "test.py").write_text("x = 1\n")
        await pilot.press("r")
        await wait_until(pilot, lambda: finished(app), "reloaded and ran")
        assert app.query_one(RunStatus).state == "passed"
        assert app.script_view.line_text(1) == "x = 1"


async def test_panes_take_focus_by_key_and_maximise(tmp_path: Path) -> None:
    app = script_app(tmp_path, "x = 1\n")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "session")
        await pilot.press("V")
        assert app.focused is app.query_one(VariablesView)
        await pilot.press("L")
        assert app.focused is app.query_one("#timeline")
        await pilot.press("exclamation_mark")
        assert app.focused is app.query_one("#repl")
        await pilot.press("escape")
        assert app.focused is app.script_view
        await pilot.press("z")
        assert app.screen.maximized is app.script_view
        await pilot.press("z")
        assert app.screen.maximized is None
        await pilot.press("exclamation_mark", "f12")
        assert app.screen.maximized is app.query_one("#repl-pane")
        await pilot.press("escape")  # leaves the input; Escape again restores
        await pilot.press("escape")
        assert app.screen.maximized is None
        await pilot.click("#timeline")
        assert app.focused is app.query_one("#timeline")


async def test_a_narrow_terminal_keeps_every_pane_on_screen(tmp_path: Path) -> None:
    app = script_app(tmp_path, "x = 1\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "session")
        assert app.screen.has_class("-narrow", "-short")
        # Nothing is cut off at the right edge, and the script keeps the room
        # the hidden inspector column would take.
        for pane in app.query("#left, #consoles, #script"):
            assert pane.region.right <= 80
        assert app.script_view.region.width >= 40
        assert not app.query_one("#inspector").display
        assert app.query_one("#bottom-row").region.height == 8
        # Focusing a pane of the inspector shows it; leaving it hides it again.
        await pilot.press("V")
        assert app.focused is app.query_one(VariablesView)
        assert app.query_one("#inspector").display and app.query_one(VariablesView).region.width > 0
        await pilot.press("C")
        assert app.focused is app.script_view
        assert not app.query_one("#inspector").display
        # A wide terminal shows it all the time.
        await pilot.resize_terminal(140, 42)
        await pilot.pause()
        assert not app.screen.has_class("-narrow")
        assert app.query_one("#inspector").display and app.query_one(VariablesView).region.width > 0


async def test_selecting_a_variable_shows_its_whole_value_in_the_repl(tmp_path: Path) -> None:
    app = script_app(tmp_path, "short = 1\nlong_list = [f'item-{n}' for n in range(40)]\n", autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: finished(app), "script done")
        variables = app.query_one(VariablesView)
        await wait_until(pilot, lambda: "long_list" in variables.rows, "the variables listed")
        await pilot.press("V")
        variables.move_cursor(row=variables.get_row_index("long_list"))
        await pilot.press("enter")
        # The pane cuts the repr off; the REPL gets all of it.
        await wait_until(pilot, lambda: "'item-39'" in repl_output(app), "the whole value in the REPL")
        assert ">>> long_list" in repl_output(app)


async def test_quitting_in_post_mortem_exits_as_a_failed_test(tmp_path: Path) -> None:
    # `q` while the failure is still on screen: the test failed, so exit 1.
    app = script_app(tmp_path, FAILING, autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: paused_at(app, 3), "post-mortem stop on line 3")
        await pilot.press("q")
    assert app.return_value == 1  # what run_tui() returns as the exit status
