"""The test script (or its Nix source) with a debugger gutter.

The gutter shows, per line: a breakpoint dot, the paused position, the line
number, and for top-level statements a mark (running / passed / failed)
with the time the statement took.  The view only displays state; the app
decides what a click on the gutter or a key means.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Iterable

from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.content import Content
from textual.geometry import Size
from textual.highlight import highlight
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from widgets.machine_status import format_duration


class Mark(enum.Enum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


@dataclass
class StatementMark:
    line: int
    end_line: int
    mark: Mark
    duration: float | None = None
    # True when the mark comes from an earlier run (a rerun has not reached
    # this statement yet): it is drawn dimmed.
    stale: bool = False


_MARK_GLYPH = {Mark.RUNNING: "▶", Mark.PASSED: "✓", Mark.FAILED: "✗"}
_MARK_CLASS = {
    Mark.RUNNING: "script-view--running",
    Mark.PASSED: "script-view--passed",
    Mark.FAILED: "script-view--failed",
}


class PausedKind(enum.Enum):
    PAUSED = "paused"
    ERROR = "error"


class ScriptView(ScrollView, can_focus=True):
    """A read-only, highlighted source view with a line cursor and a debugger gutter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first_line", "First line", show=False),
        Binding("end,G", "last_line", "Last line", show=False),
        Binding("H", "goto_current", "Current line", id="script.goto_current", show=False, tooltip="Show the paused line"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "script-view--gutter",
        "script-view--breakpoint",
        "script-view--pointer",
        "script-view--paused-line",
        "script-view--error-line",
        "script-view--cursor-line",
        "script-view--running",
        "script-view--passed",
        "script-view--failed",
        "script-view--stale",
        "script-view--plain-line",
        "script-view--duration",
    }

    DEFAULT_CSS = """
    ScriptView {
        background: $surface;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
        & > .script-view--gutter { color: $text-muted; background: $surface-darken-1; }
        & > .script-view--breakpoint { color: $error; text-style: bold; }
        & > .script-view--pointer { color: $warning; text-style: bold; }
        & > .script-view--paused-line { background: $warning 22%; }
        & > .script-view--error-line { background: $error 28%; }
        & > .script-view--cursor-line { background: $boost; }
        & > .script-view--running { color: $warning; text-style: bold; }
        & > .script-view--passed { color: $success; }
        & > .script-view--failed { color: $error; text-style: bold; }
        & > .script-view--stale { color: $text-disabled; }
        & > .script-view--duration { color: $text-muted; }
        &:focus > .script-view--cursor-line { background: $accent 25%; }
    }
    """

    cursor_line: reactive[int] = reactive(1, init=False)
    """Line (1-based) of the cursor, the target of `b` and `t`."""

    class BreakpointClicked(Message):
        """The user clicked the breakpoint column of a line."""

        def __init__(self, view: ScriptView, line: int) -> None:
            super().__init__()
            self.view = view
            self.line = line

        @property
        def control(self) -> ScriptView:
            return self.view

    def __init__(
        self,
        source: str = "",
        *,
        language: str = "python",
        debugger_gutter: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.debugger_gutter = debugger_gutter
        self.language = language
        self._lines: list[Content] = []
        self._widest = 0
        self.breakpoints: frozenset[int] = frozenset()
        self.paused_line: int | None = None
        self.paused_kind = PausedKind.PAUSED
        # The line a finished run failed on, shown until the next run.
        self.error_line: int | None = None
        # Statement marks by first line, and the first line of the statement
        # every line belongs to (for the continuation bar).
        self._marks: dict[int, StatementMark] = {}
        self._mark_of_line: dict[int, int] = {}
        self._strip_cache: LRUCache[tuple[object, ...], Strip] = LRUCache(512)
        self.load(source, language=language)

    # -- content ------------------------------------------------------------

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def load(self, source: str, *, language: str | None = None) -> None:
        """Show new source; marks are kept, they belong to lines, not to text."""
        if language is not None:
            self.language = language
        code = highlight(source, language=self.language) if source else Content("")
        # One entry per line of the file, whatever the highlighter did with
        # trailing newlines: line numbers must match the stepper's.
        line_count = len(source.splitlines())
        lines = list(code.split("\n", allow_blank=True))[:line_count] if source else []
        self._lines = lines + [Content("")] * (line_count - len(lines))
        self._widest = max((line.cell_length for line in self._lines), default=0)
        self._strip_cache.clear()
        self.virtual_size = Size(self._gutter_width() + self._widest + 1, len(self._lines))
        self.cursor_line = min(max(1, self.cursor_line), max(1, len(self._lines)))
        self.refresh()

    def line_text(self, line: int) -> str:
        """The plain text of a 1-based line ("" when out of range)."""
        return self._lines[line - 1].plain if 1 <= line <= len(self._lines) else ""

    # -- debugger state ---------------------------------------------------

    def set_breakpoints(self, lines: Iterable[int]) -> None:
        self.breakpoints = frozenset(lines)
        self.refresh()

    def set_paused(self, line: int | None, kind: PausedKind = PausedKind.PAUSED) -> None:
        """Point at the line the script is stopped on (None: not stopped)."""
        self.paused_line = line
        self.paused_kind = kind
        if line is not None:
            self.cursor_line = line
        self.refresh()

    def set_error_line(self, line: int | None) -> None:
        self.error_line = line
        self.refresh()

    def _line_kind(self, line: int) -> PausedKind | None:
        """How a line is highlighted as a debugger position, if at all."""
        if self.paused_line == line:
            return self.paused_kind
        if self.error_line == line:
            return PausedKind.ERROR
        return None

    def mark_running(self, line: int, end_line: int) -> None:
        self._set_mark(StatementMark(line, end_line, Mark.RUNNING))

    def mark_finished(self, line: int, end_line: int, ok: bool, duration: float) -> None:
        self._set_mark(StatementMark(line, end_line, Mark.PASSED if ok else Mark.FAILED, duration))

    def mark_all_stale(self) -> None:
        """A new run begins: earlier marks stay visible, dimmed, until overwritten."""
        for mark in self._marks.values():
            mark.stale = True
        self.refresh()

    def clear_marks(self) -> None:
        self._marks.clear()
        self._mark_of_line.clear()
        self.refresh()

    def mark_at(self, line: int) -> StatementMark | None:
        return self._marks.get(line)

    @property
    def statement_marks(self) -> dict[int, StatementMark]:
        """Every statement mark by its first line (a copy)."""
        return dict(self._marks)

    def _set_mark(self, mark: StatementMark) -> None:
        self._marks[mark.line] = mark
        for line in range(mark.line, mark.end_line + 1):
            self._mark_of_line[line] = mark.line
        self.refresh()

    # -- cursor and scrolling ---------------------------------------------

    def watch_cursor_line(self, old: int, new: int) -> None:
        self._scroll_line_into_view(new)
        self.refresh()

    def validate_cursor_line(self, line: int) -> int:
        return min(max(1, line), max(1, len(self._lines)))

    def _scroll_line_into_view(self, line: int) -> None:
        height = self.scrollable_content_region.height or 1
        index = line - 1
        if index < self.scroll_y:
            self.scroll_target_y = self.scroll_y = max(0, index - height // 4)
        elif index >= self.scroll_y + height:
            self.scroll_target_y = self.scroll_y = index - height + 1 + height // 4

    def action_cursor_up(self) -> None:
        self.cursor_line -= 1

    def action_cursor_down(self) -> None:
        self.cursor_line += 1

    def action_page_up(self) -> None:
        self.cursor_line -= max(1, self.scrollable_content_region.height - 1)

    def action_page_down(self) -> None:
        self.cursor_line += max(1, self.scrollable_content_region.height - 1)

    def action_first_line(self) -> None:
        self.cursor_line = 1

    def action_last_line(self) -> None:
        self.cursor_line = len(self._lines)

    def action_goto_current(self) -> None:
        if self.paused_line is not None:
            self.cursor_line = self.paused_line

    def goto_line(self, line: int) -> None:
        """Move the cursor to a line and centre it in the view."""
        self.cursor_line = line
        height = self.scrollable_content_region.height or 1
        self.scroll_target_y = self.scroll_y = max(0, self.cursor_line - 1 - height // 2)
        self.refresh()

    def on_resize(self) -> None:
        # A banner or a maximised pane changes the height: keep the cursor in sight.
        self.call_after_refresh(self._scroll_line_into_view, self.cursor_line)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = int(self.scroll_y) + offset.y + 1
        if not 1 <= line <= len(self._lines):
            return
        self.cursor_line = line
        if self.debugger_gutter and offset.x < self._gutter_width():
            self.post_message(self.BreakpointClicked(self, line))

    # -- rendering ------------------------------------------------------------

    def _number_width(self) -> int:
        return max(3, len(str(len(self._lines))))

    def _gutter_width(self) -> int:
        # "●▶" + number + " " + mark + " "  |  " " + number + " "
        if self.debugger_gutter:
            return 2 + self._number_width() + 1 + 1 + 1
        return 1 + self._number_width() + 1

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strip_cache.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        line = index + 1
        mark_line = self._mark_of_line.get(line)
        mark = self._marks.get(mark_line) if mark_line is not None else None
        mark_key = None if mark is None else (mark.line == line, mark.mark, mark.duration, mark.stale)
        key = (
            line,
            scroll_x,
            width,
            line in self.breakpoints,
            self._line_kind(line),
            line == self.cursor_line,
            self.has_focus,
            mark_key,
        )
        strip = self._strip_cache.get(key)
        if strip is None:
            strip = self._render_full_line(line, mark, scroll_x, width)
            self._strip_cache[key] = strip
        return strip

    def _render_full_line(self, line: int, mark: StatementMark | None, scroll_x: int, width: int) -> Strip:
        base = self.visual_style + self.get_visual_style(self._row_component(line), partial=True)

        gutter = self._gutter_segments(line, mark)
        gutter_width = self._gutter_width()
        code = Strip(
            [
                Segment(text, (base + style).rich_style)
                for text, style in self._lines[line - 1].render(base, end="", parse_style=self._get_style)
            ]
        )
        code_width = max(0, width - gutter_width)
        label = self._duration_label(line, mark)
        # The time a statement took sits at the right edge of its first
        # line, where the code leaves room (the timeline has it otherwise).
        if label and self._lines[line - 1].cell_length - scroll_x + len(label) < code_width:
            duration_style = base + self.get_visual_style("script-view--duration", partial=True)
            code = code.crop_extend(scroll_x, scroll_x + code_width - len(label), base.rich_style)
            code = Strip.join([code, Strip([Segment(label, duration_style.rich_style)], len(label))])
        else:
            code = code.crop_extend(scroll_x, scroll_x + code_width, base.rich_style)
        return Strip.join([Strip(gutter, gutter_width), code]).simplify()

    @staticmethod
    def _duration_label(line: int, mark: StatementMark | None) -> str:
        if mark is None or mark.line != line or mark.duration is None:
            return ""
        return f" {format_duration(mark.duration)} "

    def _row_component(self, line: int) -> str:
        kind = self._line_kind(line)
        if kind is PausedKind.ERROR:
            return "script-view--error-line"
        if kind is PausedKind.PAUSED:
            return "script-view--paused-line"
        if line == self.cursor_line:
            return "script-view--cursor-line"
        return "script-view--plain-line"

    def _gutter_segments(self, line: int, mark: StatementMark | None) -> list[Segment]:
        # The line highlight runs through the gutter too, so the eye finds
        # the current line from either side.
        gutter = self.get_visual_style("script-view--gutter") + self.get_visual_style(
            self._row_component(line), partial=True
        )

        def styled(text: str, *components: str) -> Segment:
            style = gutter
            for component in components:
                style = style + self.get_visual_style(component, partial=True)
            return Segment(text, style.rich_style)

        number = f"{line:>{self._number_width()}} "
        if not self.debugger_gutter:
            return [styled(" "), styled(number)]
        segments = [
            styled("●" if line in self.breakpoints else " ", "script-view--breakpoint"),
            styled("▶" if self.paused_line == line else " ", "script-view--pointer"),
            styled(number),
        ]
        if mark is None:
            segments.append(styled("  "))
            return segments
        components = [_MARK_CLASS[mark.mark]] + (["script-view--stale"] if mark.stale else [])
        segments.append(styled(_MARK_GLYPH[mark.mark] if mark.line == line else "│", *components))
        segments.append(styled(" "))
        return segments
