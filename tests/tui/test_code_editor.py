"""Pilot tests of the code editor widget (widgets/code_editor.py), on its own: no driver."""

from __future__ import annotations

from typing import ClassVar

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.strip import Strip
from textual.widgets import OptionList, TextArea

from widgets.code_editor import CodeArea, CodeEditor, Finding, LineNote
from widgets.script_view import Mark, StatementMark

SOURCE = 'start_all()\nserver.wait_for_unit("x")\nclient.succeed("true")\n'


class EditorApp(App[None]):
    """An editor under an app with single-letter and function-key bindings, like vmtui's."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "fired('c')"),
        Binding("f5", "fired('f5')"),
        Binding("q", "fired('q')"),
    ]

    def __init__(self, text: str = SOURCE) -> None:
        super().__init__()
        self.text = text
        self.fired: list[str] = []
        self.messages: list[object] = []

    def compose(self) -> ComposeResult:
        yield CodeEditor(self.text, id="editor")

    def on_mount(self) -> None:
        self.query_one(CodeEditor).area.focus()

    def action_fired(self, key: str) -> None:
        self.fired.append(key)

    def on_code_editor_leave(self, message: CodeEditor.Leave) -> None:
        self.messages.append(message)

    def on_code_editor_save_requested(self, message: CodeEditor.SaveRequested) -> None:
        self.messages.append(message)


async def test_typed_keys_go_into_the_text_and_no_app_binding_fires() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("c", "q", "f5", "x")
        assert editor.text.startswith("cqx")
        assert app.fired == []
        assert editor.dirty


async def test_escape_leaves_and_ctrl_s_asks_to_save_the_text() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("down", "end", "exclamation_mark", "ctrl+s", "escape")
        await pilot.pause()
        save, leave = app.messages
        assert isinstance(save, CodeEditor.SaveRequested) and 'unit("x")!' in save.text
        assert isinstance(leave, CodeEditor.Leave) and leave.line == 2
        editor.mark_saved(save.text)
        assert not editor.dirty


async def test_undo_and_redo() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("a", "b")
        await pilot.press("ctrl+z")
        assert editor.text == SOURCE
        await pilot.press("ctrl+y")
        assert editor.text.startswith("ab")


async def test_breakpoints_and_marks_move_with_inserted_and_deleted_lines() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        editor.set_breakpoints({3})
        editor.set_marks({2: StatementMark(2, 2, Mark.PASSED, 1.5)})
        editor.set_notes([LineNote(3, "undefined name 'client'", Finding.ERROR)])
        await pilot.press("enter", "enter")  # two lines above everything at the top
        assert editor.breakpoints == {5}
        assert set(editor.area.marks) == {4} and editor.area.marks[4].line == 4
        assert [n.line for n in editor.notes] == [5]
        while editor.text != SOURCE:  # each newline is its own undo step
            await pilot.press("ctrl+z")
        assert editor.breakpoints == {3} and set(editor.area.marks) == {2}
        # The gutter draws them: breakpoint dot, the passed mark, the lint mark.
        assert "●" in editor.area.render_line(2).text and "E" in editor.area.render_line(2).text
        assert "✓" in editor.area.render_line(1).text


async def test_find_replace_and_replace_all_in_one_undo() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("ctrl+f", *"succeed")
        await pilot.press("enter")
        assert editor.area.selected_text == "succeed"
        assert editor.cursor_line == 3
        await pilot.press("tab")  # to the replace field
        await pilot.press(*"fail", "enter")
        assert 'client.fail("true")' in editor.text
        await pilot.press("shift+tab", "ctrl+a")
        editor.query_one("#find").value = "server"  # type: ignore[attr-defined]
        editor.query_one("#replace").value = "web"  # type: ignore[attr-defined]
        await pilot.press("ctrl+t")
        assert "web.wait_for_unit" in editor.text and "server" not in editor.text
        await pilot.press("escape")  # closes the bar, back in the text
        assert editor.area.has_focus
        await pilot.press("ctrl+z")
        assert "server.wait_for_unit" in editor.text


async def test_go_to_line_toggle_comment_indent_and_dedent() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("ctrl+g", "3", "enter")
        assert editor.cursor_line == 3 and editor.area.has_focus
        await pilot.press("ctrl+underscore")
        assert editor.text.splitlines()[2] == '# client.succeed("true")'
        await pilot.press("ctrl+underscore")
        assert editor.text.splitlines()[2] == 'client.succeed("true")'
        await pilot.press("up", "shift+down", "shift+down")  # lines 2..3 selected (to line 4's start)
        await pilot.press("tab")
        assert editor.text.splitlines()[1:3] == ['    server.wait_for_unit("x")', '    client.succeed("true")']
        await pilot.press("shift+tab")
        assert editor.text == SOURCE


async def test_ctrl_home_and_ctrl_end_go_to_the_start_and_end_of_the_file() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("ctrl+end")
        assert editor.area.cursor_location == (3, 0)  # after the last newline
        await pilot.press("x")
        assert editor.text == SOURCE + "x"
        await pilot.press("ctrl+home", "y")
        assert editor.text == "y" + SOURCE + "x"
        await pilot.press("ctrl+shift+end")
        assert editor.area.selected_text == SOURCE + "x"  # from just after the y
        await pilot.press("ctrl+end", "ctrl+shift+home")
        assert editor.area.selected_text == editor.text


async def test_a_language_without_an_installed_grammar_is_plain_text() -> None:
    class TomlApp(App[None]):
        def compose(self) -> ComposeResult:
            yield CodeEditor('name = "x"\n', language="toml")
            yield CodeEditor("{ a = 1; }\n", language="nix", id="nix")
            yield CodeEditor("x = 1\n", language="python", id="py")

    app = TomlApp()
    async with app.run_test():
        editors = list(app.query(CodeEditor))
        assert [e.area.language for e in editors] == [None, "nix", "python"]


# -- typing draws only what it changed (benchmarks/bench_keys.py --editor) -------------

LONG_SOURCE = "".join(f"value_{n} = {n}\n" for n in range(30))


class _RenderSpy:
    """Counts the rows the area draws (render_line calls) and the rows it renders anew."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.drawn: list[int] = []
        self.rendered = 0
        spy = self
        draw = CodeArea.render_line
        render = TextArea._render_line

        def counted_draw(area: CodeArea, y: int) -> Strip:
            spy.drawn.append(int(area.scroll_offset.y) + y)
            return draw(area, y)

        def counted_render(area: TextArea, y: int) -> Strip:
            spy.rendered += 1
            return render(area, y)

        monkeypatch.setattr(CodeArea, "render_line", counted_draw)
        monkeypatch.setattr(TextArea, "_render_line", counted_render)

    def reset(self) -> None:
        self.drawn.clear()
        self.rendered = 0


async def test_a_typed_key_redraws_its_own_row_not_the_whole_view(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _RenderSpy(monkeypatch)
    app = EditorApp(LONG_SOURCE)
    async with app.run_test(size=(80, 30)) as pilot:
        editor = app.query_one(CodeEditor)
        await pilot.press("down", "down", "end")
        await pilot.pause()
        spy.reset()
        await pilot.press("x")
        await pilot.pause()
        assert editor.area.document.get_line(2) == "value_2 = 2x"
        # The row typed into (its text changed) and nothing else: not the 20-odd rows in view.
        assert set(spy.drawn) == {2}, spy.drawn
        assert spy.rendered <= 2, spy.rendered


async def test_a_key_that_changes_the_highlighting_of_other_rows_redraws_them(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _RenderSpy(monkeypatch)
    # A closing quote further down, waiting for its opening one.
    app = EditorApp("".join(f"value_{n} = {n}\n" for n in range(8)) + '"""\n' + LONG_SOURCE)
    async with app.run_test(size=(80, 30)) as pilot:
        area = app.query_one(CodeEditor).area
        if area.language is None:
            pytest.skip("no Python grammar installed")
        await pilot.pause()
        before = area.render_line(5)
        spy.reset()
        # The rows between the opening quotes and the closing ones are a string now.
        await pilot.press(*'"""')
        await pilot.pause()
        assert 5 in spy.drawn
        after = area.render_line(5)
        assert after.text == before.text
        assert [segment.style for segment in after] != [segment.style for segment in before]
        await pilot.press("ctrl+z")  # and back, through undo
        await pilot.pause()
        assert [segment.style for segment in area.render_line(5)] == [segment.style for segment in before]


async def test_moving_the_cursor_redraws_the_rows_it_left_and_entered(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _RenderSpy(monkeypatch)
    app = EditorApp(LONG_SOURCE)
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.pause()
        spy.reset()
        await pilot.press("down")
        await pilot.pause()
        assert set(spy.drawn) == {0, 1}
        spy.reset()
        await pilot.press("shift+down", "shift+down")
        await pilot.pause()
        # A selection draws on every row it covers.
        assert set(spy.drawn) == {1, 2, 3}


async def test_several_findings_on_one_line_are_all_listed() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        editor = app.query_one(CodeEditor)
        editor.set_notes([LineNote(2, "undefined name 'sever'", Finding.ERROR),
                          LineNote(2, "undefined name 'unit'", Finding.ERROR)])
        await pilot.pause()
        findings = editor.query_one("#findings", OptionList)
        assert findings.option_count == 2
        # New wording at the same lines replaces the prompts in place.
        editor.set_notes([LineNote(2, "undefined name 'severe'", Finding.ERROR),
                          LineNote(2, "undefined name 'unit'", Finding.ERROR)])
        assert "severe" in str(findings.get_option_at_index(0).prompt)
        findings.focus()
        findings.highlighted = 1
        await pilot.press("enter")
        assert editor.cursor_line == 2
