"""Pilot tests of the code editor widget (widgets/code_editor.py), on its own: no driver."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType

from widgets.code_editor import CodeEditor, Finding, LineNote
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
