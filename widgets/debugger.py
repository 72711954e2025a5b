"""Debugger panels: call stack, the script's variables, breakpoints, and a REPL line.

They show what the stepper reports (`DebuggerPaused` frames, variable reprs,
breakpoint lines) and ask for actions through messages; none of them talks
to the stepper itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar, Iterable

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Input, OptionList
from textual.widgets.option_list import Option
from textual.markup import escape

from driver.events import FrameSummary
from driver.terminal_text import plain_text
from widgets.steady_input import SteadyInput



class StackView(OptionList):
    """The paused script's frames, innermost first; picking a script frame shows its line."""

    DEFAULT_CSS = """
    StackView { height: auto; max-height: 8; border: none; padding: 0; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    class FrameSelected(Message):
        def __init__(self, view: StackView, frame: FrameSummary) -> None:
            super().__init__()
            self.view = view
            self.frame = frame

        @property
        def control(self) -> StackView:
            return self.view

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._frames: list[FrameSummary] = []

    def show_stack(self, frames: Iterable[FrameSummary]) -> None:
        """Show a stack given innermost last (as `DebuggerPaused.stack` carries it)."""
        self._frames = list(reversed(list(frames)))
        options = []
        for depth, frame in enumerate(self._frames):
            where = f"{frame.function} [dim]line[/] {frame.line}"
            if not frame.in_script:
                where = f"[dim]{escape(frame.function)} {Path(frame.filename).name}:{frame.line}[/]"
            pointer = "[$warning]▶[/] " if depth == 0 else "  "
            options.append(Option(f"{pointer}{where}"))
        self.set_options(options)
        if options:
            self.highlighted = 0

    def clear_stack(self) -> None:
        self._frames = []
        self.clear_options()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        frame = self._frames[event.option_index]
        if frame.in_script:
            self.post_message(self.FrameSelected(self, frame))


class VariablesView(DataTable[Text]):
    """Names the script defined itself, with their reprs (injected globals are left out).

    The pane is narrow and a repr is often long: selecting a row (Enter or a
    click) posts `Inspect` with its name, for the owner to show it whole.
    """

    DEFAULT_CSS = """
    VariablesView { height: 1fr; border: none; }
    """

    class Inspect(Message):
        """The user asked for the whole value of variable `name`."""

        def __init__(self, view: VariablesView, name: str) -> None:
            super().__init__()
            self.view = view
            self.name = name

        @property
        def control(self) -> VariablesView:
            return self.view

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True, show_header=False)
        self._values: dict[str, str] = {}

    def on_mount(self) -> None:
        self.add_column("name", key="name")
        self.add_column("value", key="value")

    def show_variables(self, values: dict[str, str]) -> None:
        """Replace the rows; names new or changed since the last stop are bold."""
        previous = self._values
        self._values = dict(values)
        self.clear()
        for name in sorted(values):
            style = "bold" if previous and previous.get(name) != values[name] else ""
            value = plain_text(values[name]).replace("\n", "⏎")
            self.add_row(Text(name, style=style), Text(value, style=style, no_wrap=True), key=name)

    def clear_variables(self) -> None:
        self.clear()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Inspect(self, event.row_key.value))


class BreakpointsView(OptionList):
    """Breakpoint lines with the code on them; Enter shows the line, Delete removes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("delete,backspace,x", "remove", "Remove", id="breakpoints.remove"),
    ]

    DEFAULT_CSS = """
    BreakpointsView { height: auto; max-height: 6; border: none; padding: 0; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    class LineSelected(Message):
        def __init__(self, view: BreakpointsView, line: int) -> None:
            super().__init__()
            self.view = view
            self.line = line

        @property
        def control(self) -> BreakpointsView:
            return self.view

    class RemoveRequested(Message):
        def __init__(self, view: BreakpointsView, line: int) -> None:
            super().__init__()
            self.view = view
            self.line = line

        @property
        def control(self) -> BreakpointsView:
            return self.view

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._breakpoint_lines: list[int] = []

    def show_breakpoints(self, lines: Iterable[int], line_text: Callable[[int], str]) -> None:
        self._breakpoint_lines = sorted(lines)
        highlighted = self.highlighted
        self.set_options(
            Option(f"[$error]●[/] [b]{line:>3}[/]  [dim]{escape(line_text(line).strip())}[/]") for line in self._breakpoint_lines
        )
        if self._breakpoint_lines:
            self.highlighted = min(highlighted or 0, len(self._breakpoint_lines) - 1)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.LineSelected(self, self._breakpoint_lines[event.option_index]))

    def action_remove(self) -> None:
        if self.highlighted is not None and self._breakpoint_lines:
            self.post_message(self.RemoveRequested(self, self._breakpoint_lines[self.highlighted]))


class ReplInput(SteadyInput):
    """A one-line Python prompt with history (Up/Down), optionally kept in a file."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "Previous", show=False),
        Binding("down", "history(1)", "Next", show=False),
        Binding("escape", "leave", "Leave", id="repl.leave", show=False, tooltip="Back to the script"),
    ]

    class Evaluate(Message):
        """The user entered a line to evaluate."""

        def __init__(self, input: ReplInput, source: str) -> None:  # noqa: A002
            super().__init__()
            self.input = input
            self.source = source

        @property
        def control(self) -> ReplInput:
            return self.input

    class Left(Message):
        """The user is done typing (Escape): the app decides where focus goes."""

        def __init__(self, input: ReplInput) -> None:  # noqa: A002
            super().__init__()
            self.input = input

        @property
        def control(self) -> ReplInput:
            return self.input

    HISTORY_LIMIT = 1000

    def __init__(
        self,
        *,
        history_path: Path | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(placeholder='>>> evaluate in the paused frame, e.g. server.succeed("uptime")', id=id, classes=classes)
        self.history_path = history_path
        self.history: list[str] = self._read_history()
        # Position in history while browsing; len(history) means "new line".
        self._position = len(self.history)
        self._draft = ""

    def _read_history(self) -> list[str]:
        if self.history_path is None:
            return []
        try:
            return self.history_path.read_text(encoding="utf-8").splitlines()[-self.HISTORY_LIMIT :]
        except OSError:
            return []

    def _remember(self, source: str) -> None:
        if not self.history or self.history[-1] != source:
            self.history.append(source)
            del self.history[: -self.HISTORY_LIMIT]
            if self.history_path is not None:
                try:
                    self.history_path.parent.mkdir(parents=True, exist_ok=True)
                    with self.history_path.open("a", encoding="utf-8") as file:
                        file.write(source + "\n")
                except OSError:
                    pass  # history is a convenience; never fail an evaluation for it
        self._position = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._position == len(self.history):
            self._draft = self.value
        self._position = min(max(0, self._position + step), len(self.history))
        self.value = self._draft if self._position == len(self.history) else self.history[self._position]
        self.cursor_position = len(self.value)

    def action_leave(self) -> None:
        self.post_message(self.Left(self))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        source = event.value.strip()
        if not source:
            return
        self._remember(source)
        self.value = ""
        self.post_message(self.Evaluate(self, source))
