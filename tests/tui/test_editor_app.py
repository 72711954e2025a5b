"""The script editor in the app: edit in place, save is run, $EDITOR, conflicts, quitting, lint.

Real file saves, the real watcher, runner and stepper, as in test_live.py:
the scripts note what ran in a file and touch no machine.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from helpers import Runs, save, script_app, wait_until
from vmtui.app import VmtuiApp
from vmtui.screens.editing import ConflictScreen, UnsavedQuitScreen
from widgets.code_editor import CodeArea, CodeEditor, Finding
from widgets.script_view import ScriptView

SIZE = (140, 42)

PRELUDE = """\
import pathlib, time
log = pathlib.Path({log!r})
def note(word):
    with log.open("a") as f:
        f.write(word + "\\n")
"""


def script(tmp_path: Path, body: str) -> str:
    return PRELUDE.format(log=str(tmp_path / "ran.log")) + body


def notes(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def run_ends(pilot, app: VmtuiApp, runs: Runs, count: int, what: str) -> None:  # type: ignore[no-untyped-def]
    await wait_until(pilot, lambda: len(runs.ended) >= count and not app.script_running, what, deadline=90)
    await pilot.pause(0.1)


async def started(pilot, app: VmtuiApp) -> Runs:  # type: ignore[no-untyped-def]
    await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
    runs = Runs(app)
    await pilot.press("c")
    return runs


BODY = 'note("one")\nnote("two")\nnote("three")\n'
# PRELUDE takes lines 1-5: the body starts at line 6.
TWO = 7


def banner(app: VmtuiApp) -> str:
    widget = app.query_one("#error-banner")
    return str(widget.render()) if widget.has_class("-visible") else ""


async def edit_at(pilot, app: VmtuiApp, line: int) -> CodeEditor:  # type: ignore[no-untyped-def]
    """Put the script view's cursor on `line`, press e."""
    app.script_view.goto_line(line)
    await pilot.press("e")
    editor = app.script_editor
    assert isinstance(app.focused, CodeArea) and editor.cursor_line == line
    return editor


async def first_run(pilot, app: VmtuiApp) -> Runs:  # type: ignore[no-untyped-def]
    runs = await started(pilot, app)
    await run_ends(pilot, app, runs, 1, "the first run")
    return runs


async def test_e_edits_at_the_cursor_line_and_escape_gives_the_debugger_keys_back(tmp_path: Path) -> None:
    app = script_app(tmp_path, script(tmp_path, BODY))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
        editor = await edit_at(pilot, app, TWO)
        # Debugger letters are text now: c does not start a run, b sets no breakpoint.
        await pilot.press("end", "space", "number_sign", "space", "c", "b", "f5")
        await pilot.pause(0.2)
        assert editor.text.splitlines()[TWO - 1] == 'note("two") # cb'
        assert not app.script_running and app.session.runner.namespace is None
        assert app.session.stepper.breakpoints == frozenset()
        assert "unsaved" in str(app.query_one("#sources").border_title)
        await pilot.press("escape")
        assert isinstance(app.focused, ScriptView) and app.script_view.cursor_line == TWO
        # The edit stays in the editor (unsaved), the file is untouched.
        assert editor.dirty and 'note("two")\n' in app.config.script_path.read_text()
        await pilot.press("e")
        assert editor.text.splitlines()[TWO - 1] == 'note("two") # cb'
        await pilot.press("ctrl+z")
        assert not editor.dirty


async def test_e_edits_from_any_pane_where_the_debugger_keys_apply(tmp_path: Path) -> None:
    from driver.config import NodeConfig, TestConfig
    from widgets.console_view import ConsoleView
    from widgets.timeline import Timeline

    path = tmp_path / "test.py"
    path.write_text(script(tmp_path, BODY))
    config = TestConfig(nodes=[NodeConfig("server", "run-server-vm")], vlans=[1], script_path=path, name="t")
    app = VmtuiApp(config, None, clock=None, state_dir=tmp_path / "state")  # no session: no VM
    async with app.run_test(size=SIZE) as pilot:
        app.script_view.goto_line(TWO)
        for focus in ("1", "L"):  # the node's console, then the timeline
            await pilot.press(focus)
            assert isinstance(app.focused, ConsoleView if focus == "1" else Timeline)
            await pilot.press("e")
            assert isinstance(app.focused, CodeArea) and app.script_editor.cursor_line == TWO
            await pilot.press("escape")


async def test_ctrl_s_saves_atomically_and_reruns_from_the_changed_statement(tmp_path: Path) -> None:
    app = script_app(tmp_path, script(tmp_path, BODY))
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await first_run(pilot, app)
        assert notes(log) == ["one", "two", "three"]
        app.config.script_path.chmod(0o640)
        editor = await edit_at(pilot, app, TWO)
        await pilot.press("end", "left", "left", "backspace", "backspace", "backspace", "T", "W", "O")
        await pilot.press("ctrl+s")
        await run_ends(pilot, app, runs, 2, "the rerun after ctrl+s")
        assert notes(log) == ["one", "two", "three", "TWO", "three"]
        assert 'note("TWO")' in app.config.script_path.read_text()
        assert stat.S_IMODE(app.config.script_path.stat().st_mode) == 0o640
        assert not editor.dirty and app.focused is editor.area  # still editing
        assert not list(tmp_path.glob(".*vmtui-save"))  # no temporary file left
        # The gutter shows the rerun's marks on the editor's lines.
        await wait_until(pilot, lambda: TWO in editor.area.marks, "the statement marks in the editor")


async def test_breakpoints_move_with_the_lines_into_the_stepper_on_save(tmp_path: Path) -> None:
    app = script_app(tmp_path, script(tmp_path, BODY))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
        app.script_view.goto_line(TWO + 1)
        await pilot.press("b")
        assert app.session.stepper.breakpoints == {TWO + 1}
        editor = await edit_at(pilot, app, TWO)
        await pilot.press("home", "enter", "enter")  # two new lines above note("two")
        assert editor.breakpoints == {TWO + 3}
        await pilot.press("ctrl+s")
        assert app.session.stepper.breakpoints == {TWO + 3}


async def test_e_hands_the_file_to_the_users_editor_and_a_change_reruns(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A stand-in editor: records its arguments, then changes the line it was opened at.
    stand_in = tmp_path / "stand-in-editor"
    stand_in.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path / "editor-args"}\n'
        'line="${1#+}"\n'
        'sed -i "${line}s/two/TWO/" "$2"\n'
    )
    stand_in.chmod(0o755)
    monkeypatch.setenv("VISUAL", str(stand_in))
    app = script_app(tmp_path, script(tmp_path, BODY))
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await first_run(pilot, app)
        app.script_view.goto_line(TWO)
        await pilot.press("E")
        assert (tmp_path / "editor-args").read_text().split() == [f"+{TWO}", str(app.config.script_path)]
        await run_ends(pilot, app, runs, 2, "the rerun after the editor")
        assert notes(log) == ["one", "two", "three", "TWO", "three"]
        assert 'note("TWO")' in app.script_editor.text  # the editor pane follows the file


async def test_an_outside_change_over_unsaved_edits_asks_and_keeps_mine(tmp_path: Path) -> None:
    source = script(tmp_path, BODY)
    app = script_app(tmp_path, source)
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await first_run(pilot, app)
        editor = await edit_at(pilot, app, TWO)
        await pilot.press("end", "space", "number_sign", "m", "i", "n", "e")
        mine = editor.text
        save(app.config.script_path, source.replace('note("three")', 'note("THEIRS")'))
        await wait_until(pilot, lambda: isinstance(app.screen, ConflictScreen), "the conflict question")
        await pilot.press("d")  # the diff: disk -> mine
        diff = str(app.screen.query_one("#diff-text").render())
        assert '-note("THEIRS")' in diff and '+note("two") #mine' in diff
        await pilot.press("m")
        assert editor.text == mine and editor.dirty
        # The outside save ran like any save; the file is as its writer left it.
        await run_ends(pilot, app, runs, 2, "the rerun of the outside save")
        assert notes(log)[-1] == "THEIRS"
        assert "#mine" not in app.config.script_path.read_text()


async def test_an_outside_change_over_unsaved_edits_can_take_the_files(tmp_path: Path) -> None:
    source = script(tmp_path, BODY)
    app = script_app(tmp_path, source)
    async with app.run_test(size=SIZE) as pilot:
        await first_run(pilot, app)
        editor = await edit_at(pilot, app, TWO)
        await pilot.press("x")
        theirs = source.replace('note("three")', 'note("THEIRS")')
        save(app.config.script_path, theirs)
        await wait_until(pilot, lambda: isinstance(app.screen, ConflictScreen), "the conflict question")
        await pilot.press("f")
        assert editor.text == theirs and not editor.dirty


async def test_quitting_with_unsaved_edits_asks(tmp_path: Path) -> None:
    source = script(tmp_path, BODY)
    app = script_app(tmp_path, source)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
        await edit_at(pilot, app, TWO)
        await pilot.press("x", "escape", "q")
        assert isinstance(app.screen, UnsavedQuitScreen)
        await pilot.press("escape")  # stay
        assert app.is_running and not isinstance(app.screen, UnsavedQuitScreen)
        await pilot.press("q")
        await pilot.press("s")  # save and quit
        await wait_until(pilot, lambda: not app.is_running, "the app to quit")
    assert 'xnote("two")' in app.config.script_path.read_text()


async def test_quitting_can_discard_unsaved_edits(tmp_path: Path) -> None:
    source = script(tmp_path, BODY)
    app = script_app(tmp_path, source)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "the session")
        await edit_at(pilot, app, TWO)
        await pilot.press("x", "escape", "q", "d")
        await wait_until(pilot, lambda: not app.is_running, "the app to quit")
    assert app.config.script_path.read_text() == source


async def test_lint_marks_an_undefined_name_and_a_save_with_it_runs_nothing_until_asked(tmp_path: Path) -> None:
    app = script_app(tmp_path, script(tmp_path, BODY))
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await first_run(pilot, app)
        editor = await edit_at(pilot, app, TWO)
        await pilot.press("home", *'sever.succeed("true")', "enter")
        # Debounced while typing: the gutter and the list name it at its line.
        await wait_until(pilot, lambda: any(n.line == TWO and "sever" in n.message for n in editor.notes), "the lint mark")
        note = next(n for n in editor.notes if n.line == TWO)
        assert note.kind is Finding.ERROR and "sever" in note.message
        assert "E" in editor.area.render_line(TWO - 1 - int(editor.area.scroll_offset.y)).text
        assert editor.query_one("#findings").has_class("-open")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "not run" in str(app.query_one("#error-banner").border_title), "the held save")
        await pilot.pause(0.5)
        assert len(runs.ended) == 1 and not app.script_running
        assert notes(log) == ["one", "two", "three"]
        await pilot.press("ctrl+r")  # run anyway: it fails on the name, post-mortem
        await wait_until(pilot, lambda: app.session.stepper.is_paused, "the post-mortem stop", deadline=60)
        await pilot.press("escape", "x")
        await wait_until(pilot, lambda: len(runs.ended) >= 2, "the run asked for", deadline=60)
        assert not runs.ended[-1].ok and "sever" in (runs.ended[-1].error or "")


async def test_completion_offers_machine_methods_with_their_doc_and_inserts_the_choice(tmp_path: Path) -> None:
    from driver.config import NodeConfig

    app = script_app(tmp_path, script(tmp_path, BODY), nodes=[NodeConfig("server", "true"), NodeConfig("client", "true")])
    async with app.run_test(size=SIZE) as pilot:
        editor = await edit_at(pilot, app, TWO)
        await pilot.press("home", *"server.wait_for_", "ctrl+@")
        choices = editor.query_one("#completions")
        assert choices.has_class("-open")
        prompts = [str(choices.get_option_at_index(i).prompt) for i in range(choices.option_count)]  # type: ignore[attr-defined]
        assert any(p.startswith("wait_for_unit  wait_for_unit(unit: str") for p in prompts)
        while choices.get_option_at_index(choices.highlighted).id != "wait_for_unit":  # type: ignore[attr-defined]
            await pilot.press("down")
        await pilot.press("enter")
        assert editor.text.splitlines()[TWO - 1].startswith("server.wait_for_unitnote(")
        assert editor.area.has_focus
        await pilot.press("enter", "c", "l", "ctrl+@")  # one candidate: inserted at once
        assert "client" in editor.text.splitlines()[TWO]


async def test_keys_typed_at_once_after_e_go_into_the_editor_not_to_the_debugger(tmp_path: Path) -> None:
    from textual import events

    app = script_app(tmp_path, script(tmp_path, BODY))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
        app.script_view.goto_line(TWO)
        # As a fast typist's terminal delivers them: all queued before the first is handled.
        for key, char in [("e", "e"), ("b", "b"), ("c", "c"), ("ctrl+f", None), ("t", "t"), ("w", "w"), ("o", "o")]:
            app.post_message(events.Key(key, char))
        await pilot.pause(0.3)
        assert app.session.stepper.breakpoints == frozenset() and not app.script_running
        assert app.script_editor.text.splitlines()[TWO - 1] == 'bcnote("two")'
        assert app.script_editor.query_one("#find").value == "two"  # type: ignore[attr-defined]
        # In the REPL line, e is a letter like any other.
        await pilot.press("escape", "escape", "exclamation_mark", "e")
        assert app.query_one("#repl").value == "e"  # type: ignore[attr-defined]


async def test_the_lint_while_typing_runs_off_the_ui_thread_and_only_its_latest_text_shows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from vmtui import edit_app

    threads: list[str] = []
    lint = edit_app.lint_script

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return lint(*args, **kwargs)

    monkeypatch.setattr(edit_app, "lint_script", recorded)
    app = script_app(tmp_path, script(tmp_path, BODY))
    async with app.run_test(size=SIZE) as pilot:
        editor = await edit_at(pilot, app, TWO)
        threads.clear()  # e lints on the spot, as a save does
        await pilot.press("home", *"sever", "enter")
        await wait_until(pilot, lambda: any("sever" in n.message for n in editor.notes), "the lint mark")
        assert threads and threading.main_thread().name not in threads
        # A check of older text arriving late never replaces what the current text shows.
        app.post_message(edit_app.LintDone("stale text", []))
        await pilot.pause(0.2)
        assert any("sever" in n.message for n in editor.notes)
