"""A code editor with a debugger gutter: edit a script in place.

`CodeEditor` is Textual's `TextArea` (tree-sitter highlighting, undo/redo,
line numbers) with what editing a script beside a debugger needs: a find
and replace bar, go to line, indent/dedent of a selection, toggle comment,
and a gutter that keeps breakpoints, per-statement marks and lint marks on
their lines while lines are inserted and deleted (widgets/line_anchors.py).
A list under the text names every lint finding; selecting one jumps there.

The widget knows nothing of the driver: the app loads text into it, sets the
marks, and hears `SaveRequested`, `Leave` and `RunAnywayRequested`.  While
it (or its find bar) has focus it consumes every key: no key bound further up
(the debugger's single letters, its function keys) fires while editing, and
no typed key is lost to one.
"""

from __future__ import annotations

import enum
import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, OptionList, TextArea
from textual.widgets.option_list import Option
from textual.widgets.text_area import Edit, EditResult, Selection

from textual.cache import LRUCache

from widgets.line_anchors import line_mapping, move_keyed, move_lines
from widgets.line_cache import RowKeyedCache
from widgets.script_view import Mark, StatementMark
from widgets.textual_hooks import row_highlights, set_line_cache

Completer = Callable[[str], tuple[str, list[tuple[str, str]]]]

# Cells the debugger gutter adds before the line numbers: breakpoint, statement mark, lint mark, a space.
MARK_CELLS = 4
# Rendered lines kept (as TextArea keeps): several screens, and the versions of an edited line.
LINE_CACHE_SIZE = 1024
COMMENT = "#"  # Python and Nix alike


def focus_now(widget: Widget) -> None:
    """Focus `widget` before the next key is handled.

    `Widget.focus()` takes effect after the messages already queued, so keys
    typed right after `e` or Ctrl+F would still go to the old widget (a
    debugger key, or text typed into the code instead of the find field).
    """
    if widget.focusable:
        widget.screen.set_focus(widget)
    # And the ordinary way too: it also applies once a widget just made visible can take focus.
    widget.focus()


class Finding(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class LineNote:
    """A lint finding to show at a line (1-based)."""

    line: int
    message: str
    kind: Finding


_MARK_GLYPH = {Mark.RUNNING: "▶", Mark.PASSED: "✓", Mark.FAILED: "✗"}


def _register_nix(area: TextArea) -> None:
    """Nix highlighting from the tree-sitter-nix grammar (its own highlight query), if installed."""
    try:
        import tree_sitter_nix
        from tree_sitter import Language
    except ImportError:
        return
    query = resources.files("tree_sitter_nix").joinpath("queries", "highlights.scm").read_text(encoding="utf-8")
    area.register_language("nix", Language(tree_sitter_nix.language()), query)


def _has_grammar(area: TextArea, language: str | None) -> bool:
    """Textual knows a highlight query for many languages; the grammar itself must be installed too."""
    if language is None or language not in area.available_languages:
        return False
    return language == "nix" or importlib.util.find_spec(f"tree_sitter_{language}") is not None


class CodeArea(TextArea):
    """The text of a `CodeEditor`, with breakpoints, statement marks and lint marks in its gutter."""

    COMPONENT_CLASSES: ClassVar[set[str]] = TextArea.COMPONENT_CLASSES | {
        "code-area--breakpoint",
        "code-area--running",
        "code-area--passed",
        "code-area--failed",
        "code-area--stale",
        "code-area--error",
        "code-area--warning",
    }

    DEFAULT_CSS = """
    CodeArea {
        border: none;
        padding: 0;
        &:focus { border: none; }
        & > .code-area--breakpoint { color: $error; text-style: bold; }
        & > .code-area--running { color: $warning; text-style: bold; }
        & > .code-area--passed { color: $success; }
        & > .code-area--failed { color: $error; text-style: bold; }
        & > .code-area--stale { color: $text-disabled; }
        & > .code-area--error { color: $error; text-style: bold reverse; }
        & > .code-area--warning { color: $warning; text-style: bold; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the text area would otherwise take tab as a character.
        Binding("tab", "indent", "Indent", id="editor.indent", show=False, priority=True,
                tooltip="Indent the selected lines (or insert an indent)"),
        Binding("shift+tab", "dedent", "Dedent", id="editor.dedent", show=False, tooltip="Dedent the selected lines"),
        Binding("ctrl+slash,ctrl+underscore,ctrl+7", "toggle_comment", "Comment", id="editor.toggle_comment",
                show=False, tooltip="Comment or uncomment the selected lines"),
        # Every editor has these; Textual's TextArea has none.
        Binding("ctrl+home", "cursor_document_start", "Start of file", id="editor.document_start", show=False,
                tooltip="Go to the start of the file"),
        Binding("ctrl+end", "cursor_document_end", "End of file", id="editor.document_end", show=False,
                tooltip="Go to the end of the file"),
        Binding("ctrl+shift+home", "cursor_document_start(True)", "Select to start", id="editor.select_to_start",
                show=False, tooltip="Select to the start of the file"),
        Binding("ctrl+shift+end", "cursor_document_end(True)", "Select to end", id="editor.select_to_end",
                show=False, tooltip="Select to the end of the file"),
    ]

    # TextArea repaints every visible row whenever the selection is set, that is
    # on every key typed; `watch_selection` repaints the rows that changed.
    selection: Reactive[Selection] = reactive(Selection(), init=False, always_update=True, repaint=False)
    # Where the bracket matching the cursor's was drawn: its row repaints when that changes.
    _bracket_drawn: tuple[int, int] | None = None

    def __init__(self, text: str = "", *, language: str | None = "python", id: str | None = None) -> None:
        super().__init__(text, soft_wrap=False, tab_behavior="focus", show_line_numbers=True,
                         id=id)
        _register_nix(self)
        self.language = language if _has_grammar(self, language) else None
        self.breakpoints: set[int] = set()
        self.marks: dict[int, StatementMark] = {}
        self.notes: dict[int, LineNote] = {}
        self._lines = list(self.document.lines)
        # Typing re-renders only the lines it changed (widgets/line_cache.py).
        self._row_cache: RowKeyedCache[Strip] = RowKeyedCache(LINE_CACHE_SIZE)
        set_line_cache(self, self._row_cache)
        # Computing a component's style walks the CSS: done once per style change, not per gutter cell.
        self._gutter_styles: dict[str, Style] = {}
        # (gutter cells, the text's strip) -> the line as drawn; the text's strip is the
        # cached one while its line is unchanged, so an unchanged line is one look-up.
        self._joined: LRUCache[tuple[tuple[str, ...], int], tuple[Strip, Strip]] = LRUCache(LINE_CACHE_SIZE)

    def action_cursor_document_start(self, select: bool = False) -> None:
        self.move_cursor((0, 0), select=select)

    def action_cursor_document_end(self, select: bool = False) -> None:
        self.move_cursor(self.document.end, select=select)

    # -- edits repaint, and re-render, only the rows they changed ----------------------

    def edit(self, edit: Edit) -> EditResult:
        with self._repainting_changed_rows():
            return super().edit(edit)

    def undo(self) -> None:
        with self._repainting_changed_rows():
            super().undo()

    def redo(self) -> None:
        with self._repainting_changed_rows():
            super().redo()

    def load_text(self, text: str) -> None:
        super().load_text(text)
        self.refresh()  # a new document: every row (the selection only repaints its own)

    @contextmanager
    def _repainting_changed_rows(self) -> Iterator[None]:
        top = int(self.scroll_offset.y)
        rows = range(top, top + self.size.height)
        before = [self._row_content(row) for row in rows]
        line_count = self.document.line_count
        with self._row_cache.keep():
            yield
        if self.document.line_count != line_count:
            self.refresh()  # every row below the edit moved
            return
        # A row away from the edit changes too when its highlighting does (an opened string).
        for row, content in zip(rows, before):
            if self._row_content(row) != content:
                self.refresh_lines(row)

    def _row_content(self, row: int) -> tuple[object, ...]:
        """What the text part of row `row` (0-based) is drawn from, besides cursor and selection."""
        if row >= self.document.line_count:
            return (None,)
        return self.document.get_line(row), row_highlights(self, row)

    def watch_selection(self, previous: Selection, selection: Selection) -> None:
        rows: set[int] = set()
        for start, end in (previous, selection):
            rows.update(range(min(start[0], end[0]), max(start[0], end[0]) + 1))
        bracket = self.matching_bracket_location
        for location in (self._bracket_drawn, bracket):
            if location is not None:
                rows.add(location[0])
        self._bracket_drawn = bracket
        for row in sorted(rows):
            self.refresh_lines(row)

    def notify_style_update(self) -> None:
        self._gutter_styles.clear()
        self._joined.clear()
        super().notify_style_update()

    # -- marks that follow their lines ----------------------------------------

    def reset_lines(self) -> None:
        """The text was replaced wholesale (a load): marks stay on their line numbers."""
        self._lines = list(self.document.lines)

    def follow_edit(self) -> bool:
        """Move every mark with its line after an edit; True when lines moved."""
        new = list(self.document.lines)
        if len(new) == len(self._lines):
            self._lines = new  # an edit within lines moves nothing
            return False
        mapping = line_mapping(self._lines, new)
        self._lines = new
        self.breakpoints = move_lines(self.breakpoints, mapping)
        moved: dict[int, StatementMark] = {}
        for first, mark in sorted(self.marks.items()):
            if first in mapping:
                end = max((mapping[line] for line in range(first, mark.end_line + 1) if line in mapping), default=mapping[first])
                moved.setdefault(mapping[first], replace(mark, line=mapping[first], end_line=end))
        self.marks = moved
        self.notes = {line: replace(note, line=line) for line, note in move_keyed(self.notes, mapping).items()}
        return True

    # -- gutter --------------------------------------------------------------------

    @property
    def gutter_width(self) -> int:
        width = super().gutter_width
        return width + MARK_CELLS if width else 0

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_offset.y) + y
        in_text = row < self.document.line_count
        # What the row's rendering depends on besides its place (widgets/line_cache.py).
        self._row_cache.row_key = (
            self.document.get_line(row) if in_text else None,
            row_highlights(self, row) if in_text else (),
            self.gutter_width,
            self.virtual_size.width,
        )
        strip = super().render_line(y)
        if not self.show_line_numbers or not in_text:
            return strip
        cells = self._gutter_cells(row + 1)
        joined = self._joined.get((cells, id(strip)))
        if joined is not None and joined[0] is strip:
            return joined[1]
        line = Strip.join([Strip(self._mark_segments(cells), MARK_CELLS), strip.crop(MARK_CELLS, strip.cell_length)])
        self._joined[(cells, id(strip))] = (strip, line)
        return line

    def _gutter_cells(self, line: int) -> tuple[str, ...]:
        """The marks of `line` as (glyph, components...) per cell, joined: a hashable cache key."""
        cells = ["●|code-area--breakpoint" if line in self.breakpoints else " "]
        mark = self._mark_covering(line)
        if mark is None:
            cells.append(" ")
        else:
            glyph = _MARK_GLYPH[mark.mark] if mark.line == line else "│"
            cells.append("|".join([glyph, f"code-area--{mark.mark.value}"] + (["code-area--stale"] if mark.stale else [])))
        note = self.notes.get(line)
        cells.append(" " if note is None else f"{'E' if note.kind is Finding.ERROR else 'W'}|code-area--{note.kind.value}")
        cells.append(" ")
        return tuple(cells)

    def _mark_segments(self, cells: tuple[str, ...]) -> list[Segment]:
        theme = self._theme
        base = (theme.gutter_style if theme and theme.gutter_style else None) or Style()
        segments = []
        for cell in cells:
            glyph, *components = cell.split("|")
            style = base
            for component in components:
                style = style + self._component_style(component)
            segments.append(Segment(glyph, style))
        return segments

    def _component_style(self, component: str) -> Style:
        style = self._gutter_styles.get(component)
        if style is None:
            style = self._gutter_styles[component] = self.get_component_rich_style(component, partial=True)
        return style

    def _mark_covering(self, line: int) -> StatementMark | None:
        mark = self.marks.get(line)
        if mark is not None:
            return mark
        for first, candidate in self.marks.items():
            if first < line <= candidate.end_line:
                return candidate
        return None

    # -- editing commands --------------------------------------------------------

    def _selected_rows(self) -> tuple[int, int]:
        start, end = sorted(self.selection)
        last = end[0]
        if end[0] > start[0] and end[1] == 0:
            last -= 1  # a selection ending at a line's start does not take that line
        return start[0], last

    def _rewrite_rows(self, first: int, last: int, rows: list[str]) -> None:
        end_column = len(self.document.get_line(last))
        self.replace("\n".join(rows), (first, 0), (last, end_column))
        self.selection = Selection((first, 0), (last, len(rows[-1])))

    def action_indent(self) -> None:
        first, last = self._selected_rows()
        if first == last:
            self.insert(" " * self.indent_width)
            return
        rows = [(" " * self.indent_width + row) if row.strip() else row
                for row in (self.document.get_line(i) for i in range(first, last + 1))]
        self._rewrite_rows(first, last, rows)

    def action_dedent(self) -> None:
        first, last = self._selected_rows()
        rows = []
        for index in range(first, last + 1):
            row = self.document.get_line(index)
            strip = min(self.indent_width, len(row) - len(row.lstrip(" ")))
            rows.append(row[strip:])
        cursor = self.cursor_location
        self._rewrite_rows(first, last, rows)
        if first == last:
            self.cursor_location = (cursor[0], max(0, cursor[1] - (len(self.document.get_line(first)) - len(rows[0])) - self.indent_width))

    def action_toggle_comment(self) -> None:
        first, last = self._selected_rows()
        rows = [self.document.get_line(i) for i in range(first, last + 1)]
        code = [row for row in rows if row.strip()]
        if not code:
            return
        if all(row.lstrip().startswith(COMMENT) for row in code):
            def uncomment(row: str) -> str:
                if not row.strip():
                    return row
                at = row.index(COMMENT)
                rest = row[at + len(COMMENT):]
                return row[:at] + (rest[1:] if rest.startswith(" ") else rest)
            new_rows = [uncomment(row) for row in rows]
        else:
            indent = min(len(row) - len(row.lstrip()) for row in code)
            new_rows = [row[:indent] + COMMENT + " " + row[indent:] if row.strip() else row for row in rows]
        self._rewrite_rows(first, last, new_rows)

class EditorMessage(Message):
    """A message of a `CodeEditor`, routed by it (`control`)."""

    def __init__(self, editor: CodeEditor) -> None:
        super().__init__()
        self.editor = editor

    @property
    def control(self) -> CodeEditor:
        return self.editor


class CodeEditor(Vertical):
    """A `CodeArea` with a find/replace bar, a go-to-line prompt and the list of lint findings."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Debugger keys", id="editor.leave", tooltip="Back to the debugger keys (the edits stay)"),
        Binding("ctrl+s", "save", "Save", id="editor.save", tooltip="Save; a save reruns the script against the live VMs"),
        Binding("ctrl+r", "run_anyway", "Run anyway", id="editor.run_anyway", show=False,
                tooltip="Run the saved script although the lint found errors"),
        # Priority: focus moves to the field before the keys typed after it are routed.
        Binding("ctrl+f", "find", "Find", id="editor.find", priority=True, tooltip="Find and replace (enter: next; in replace, enter: replace; ctrl+t: all)"),
        Binding("ctrl+g", "goto_line", "Go to line", id="editor.goto_line", priority=True, tooltip="Go to a line number"),
        Binding("ctrl+space,ctrl+@", "complete", "Complete", id="editor.complete", priority=True,
                tooltip="Complete the name before the cursor (node names; after `node.`, its methods with signature and doc)"),
        Binding("f3", "find_next", "Find next", id="editor.find_next", show=False, tooltip="Find the next match"),
        Binding("ctrl+t", "replace_all", "Replace all", id="editor.replace_all", show=False, tooltip="Replace every match"),
        Binding("tab", "app.focus_next", "Next field", show=False),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False),
        Binding("ctrl+z", "undo", "Undo", id="editor.undo", show=False, tooltip="Undo"),
        Binding("ctrl+y", "redo", "Redo", id="editor.redo", show=False, tooltip="Redo"),
    ]

    DEFAULT_CSS = """
    CodeEditor {
        height: 1fr;
        & > CodeArea { height: 1fr; }
        & > #find-bar { height: 1; display: none; background: $boost; }
        & > #find-bar.-open { display: block; }
        & > #find-bar > Input { width: 1fr; height: 1; border: none; padding: 0 1; background: $boost; }
        & > #find-bar > Input:focus { background: $accent 20%; }
        & > #goto { height: 1; border: none; padding: 0 1; display: none; background: $boost; }
        & > #goto.-open { display: block; }
        /* One line per choice: a wrapped signature would leave room for two or three. */
        & > #completions { height: auto; max-height: 8; display: none; border: none; border-top: solid $accent;
                           text-wrap: nowrap; text-overflow: ellipsis; }
        & > #completions.-open { display: block; }
        & > #findings { height: auto; max-height: 6; display: none; border: none; border-top: solid $error 50%; }
        & > #findings.-open { display: block; }
    }
    """

    class Leave(EditorMessage):
        """Escape: the user wants the debugger keys back (`line`: the cursor's)."""

        def __init__(self, editor: CodeEditor, line: int) -> None:
            super().__init__(editor)
            self.line = line

    class SaveRequested(EditorMessage):
        """Ctrl+S: write `text` (the editor writes nothing itself)."""

        def __init__(self, editor: CodeEditor, text: str) -> None:
            super().__init__(editor)
            self.text = text

    class RunAnywayRequested(EditorMessage):
        """Ctrl+R: run what was saved although the checks found errors."""

    class Edited(EditorMessage):
        """The text changed (typing, undo, replace): for a debounced check."""

    def __init__(self, text: str = "", *, language: str | None = "python", id: str | None = None) -> None:
        super().__init__(id=id)
        self.area = CodeArea(text, language=language, id="code")
        self.saved_text = text
        # (text before the cursor on its line) -> (the part already typed, [(name, detail)]); set by the app.
        self.completer: Completer | None = None
        self._typed = ""
        self._shown_notes: list[LineNote] = []

    def compose(self) -> ComposeResult:
        yield self.area
        with Horizontal(id="find-bar"):
            yield Input(placeholder="find", id="find")
            yield Input(placeholder="replace with", id="replace")
        yield Input(placeholder="go to line", restrict=r"[0-9]*", id="goto")
        yield OptionList(id="completions")
        yield OptionList(id="findings")

    def check_consume_key(self, key: str, character: str | None = None) -> bool:
        # Every key stays here while editing: none reaches a binding further up.
        return True

    # -- content -------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.area.text

    @property
    def dirty(self) -> bool:
        return self.area.text != self.saved_text

    @property
    def cursor_line(self) -> int:
        return self.area.cursor_location[0] + 1

    def load(self, text: str, *, line: int | None = None) -> None:
        """Show `text` as saved (the edit history starts again)."""
        self.saved_text = text
        if text != self.area.text:
            self.area.load_text(text)
            self.area.reset_lines()
        if line is not None:
            self.goto_line(line)

    def mark_saved(self, text: str) -> None:
        self.saved_text = text

    def goto_line(self, line: int) -> None:
        row = min(max(1, line), self.area.document.line_count) - 1
        self.area.move_cursor((row, 0), center=True)

    # -- marks ---------------------------------------------------------------------------

    @property
    def breakpoints(self) -> frozenset[int]:
        return frozenset(self.area.breakpoints)

    def set_breakpoints(self, lines: Iterable[int]) -> None:
        self.area.breakpoints = set(lines)
        self.area.refresh()

    def set_marks(self, marks: Mapping[int, StatementMark]) -> None:
        self.area.marks = dict(marks)
        self.area.refresh()

    def set_notes(self, notes: Iterable[LineNote]) -> None:
        ordered = sorted(notes, key=lambda n: (n.line, n.kind is not Finding.ERROR))
        if ordered == self._shown_notes:
            return  # the same findings again (a check after each pause in typing): nothing to redraw
        by_line: dict[int, LineNote] = {}
        for note in ordered:
            by_line.setdefault(note.line, note)
        self.area.notes = by_line
        findings = self.query_one("#findings", OptionList)
        prompts = [Text(f"{'E' if n.kind is Finding.ERROR else 'W'} {n.line}: {n.message}") for n in ordered]
        if [n.line for n in ordered] == [n.line for n in self._shown_notes]:
            # New wording at the same lines (a name being typed): in place, no layout of the screen.
            for index, prompt in enumerate(prompts):
                findings.replace_option_prompt_at_index(index, prompt)
        else:
            findings.clear_options()
            # The index makes the id unique: one line may have several findings.
            findings.add_options(Option(prompt, id=f"{index}:{note.line}")
                                 for index, (prompt, note) in enumerate(zip(prompts, ordered)))
        findings.set_class(bool(ordered), "-open")
        self._shown_notes = ordered
        self.area.refresh()

    @property
    def notes(self) -> list[LineNote]:
        return list(self.area.notes.values())

    @on(TextArea.Changed)
    def _changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self.area.follow_edit()
        self.post_message(self.Edited(self))

    @on(OptionList.OptionSelected, "#findings")
    def _finding_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.goto_line(int(event.option.id.partition(":")[2]))
            focus_now(self.area)

    # -- actions -------------------------------------------------------------------------

    def action_complete(self) -> None:
        if self.completer is None:
            return
        row, column = self.area.cursor_location
        typed, items = self.completer(self.area.document.get_line(row)[:column])
        if not items:
            self.notify("nothing to complete here", timeout=2)
            return
        if len(items) == 1:
            self.area.insert(items[0][0][len(typed):])
            return
        self._typed = typed
        choices = self.query_one("#completions", OptionList)
        choices.clear_options()
        choices.add_options(Option(Text.assemble(name, "  ", (detail, "dim")), id=name) for name, detail in items)
        choices.add_class("-open")
        choices.highlighted = 0
        focus_now(choices)

    @on(OptionList.OptionSelected, "#completions")
    def _completion_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        event.option_list.remove_class("-open")
        if event.option.id is not None:
            self.area.insert(event.option.id[len(self._typed):])
        focus_now(self.area)

    def action_leave(self) -> None:
        for bar_id in ("find-bar", "goto", "completions"):
            bar = self.query_one(f"#{bar_id}")
            if bar.has_class("-open"):
                bar.remove_class("-open")
                focus_now(self.area)
                return
        self.post_message(self.Leave(self, self.cursor_line))

    def action_save(self) -> None:
        self.post_message(self.SaveRequested(self, self.area.text))

    def action_run_anyway(self) -> None:
        self.post_message(self.RunAnywayRequested(self))

    def action_undo(self) -> None:
        self.area.undo()

    def action_redo(self) -> None:
        self.area.redo()

    def action_find(self) -> None:
        bar = self.query_one("#find-bar")
        bar.add_class("-open")
        find = self.query_one("#find", Input)
        selected = self.area.selected_text
        if selected and "\n" not in selected:
            find.value = selected
        focus_now(find)

    def action_goto_line(self) -> None:
        goto = self.query_one("#goto", Input)
        goto.value = ""
        goto.add_class("-open")
        focus_now(goto)

    @on(Input.Submitted, "#goto")
    def _goto_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.remove_class("-open")
        if event.value:
            self.goto_line(int(event.value))
        focus_now(self.area)

    @on(Input.Submitted, "#find")
    def _find_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_find_next()

    @on(Input.Submitted, "#replace")
    def _replace_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.replace_current()

    def _location_of(self, index: int) -> tuple[int, int]:
        text = self.area.text
        row = text.count("\n", 0, index)
        return row, index - (text.rfind("\n", 0, index) + 1)

    def _index_of(self, location: tuple[int, int]) -> int:
        row, column = location
        lines = self.area.document.lines
        return sum(len(line) + 1 for line in lines[:row]) + column

    def find_next(self, pattern: str) -> bool:
        """Select the next match of `pattern` after the cursor (wrapping); False when there is none."""
        if not pattern:
            return False
        text = self.area.text
        after = self._index_of(max(self.area.selection))
        at = text.find(pattern, after)
        if at < 0:
            at = text.find(pattern)
        if at < 0:
            return False
        self.area.selection = Selection(self._location_of(at), self._location_of(at + len(pattern)))
        self.area.scroll_cursor_visible(center=True)
        return True

    def action_find_next(self) -> None:
        pattern = self.query_one("#find", Input).value
        if pattern and not self.find_next(pattern):
            self.notify(f"not found: {pattern}", timeout=2)

    def replace_current(self) -> None:
        """Replace the selected match (if it is one) and select the next."""
        pattern = self.query_one("#find", Input).value
        replacement = self.query_one("#replace", Input).value
        if not pattern:
            return
        if self.area.selected_text == pattern:
            start, end = sorted(self.area.selection)
            result = self.area.replace(replacement, start, end)
            self.area.selection = Selection.cursor(result.end_location)
        self.find_next(pattern)

    def action_replace_all(self) -> None:
        pattern = self.query_one("#find", Input).value
        replacement = self.query_one("#replace", Input).value
        text = self.area.text
        count = text.count(pattern) if pattern else 0
        if count:
            # One edit: a single undo takes every replacement back.
            self.area.replace(text.replace(pattern, replacement), (0, 0), self.area.document.end)
        self.notify(f"replaced {count} match{'es' if count != 1 else ''}", timeout=2)
