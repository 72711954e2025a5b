"""One node's console with its state line and a search box."""

from __future__ import annotations

import time
from typing import Callable, ClassVar, Iterable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input

from driver.events import MachineStateChanged
from widgets.console_view import DEFAULT_MAX_LINES, ConsoleView
from widgets.machine_status import MachineStatus
from widgets.steady_input import SteadyInput

Clock = Callable[[], float]


class ConsolePane(Vertical):
    """A bordered pane: node name and state in the title, the console, a search box.

    `clock` gives monotonic time for the uptime; pass None to leave the uptime
    out (screenshots and snapshot tests must not depend on the wall clock).
    """

    ALLOW_MAXIMIZE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash,ctrl+f", "search", "Search", id="console.search", tooltip="Search this console"),
        Binding("escape", "close_search", "Close search", id="console.close_search", show=False),
    ]

    DEFAULT_CSS = """
    ConsolePane {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        min-height: 4;
        &:focus-within { border: round $accent; }
        & > ConsoleView { height: 1fr; }
        & > Input.console-search {
            display: none;
            height: 1;
            border: none;
            padding: 0 1;
            background: $boost;
        }
        &.-searching > Input.console-search { display: block; }
    }
    """

    def __init__(
        self,
        machine: str,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        clock: Clock | None = time.monotonic,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.machine = machine
        self.status = MachineStatus(machine)
        self._clock = clock
        self._max_lines = max_lines
        self._view_ready = False
        self._early_lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield ConsoleView(max_lines=self._max_lines)
        yield SteadyInput(placeholder="search (Enter: older match, Esc: close)", classes="console-search")

    def on_mount(self) -> None:
        self._view_ready = True
        self.view.set_parked(not self.display)
        if self._early_lines:
            self.view.append_lines(self._early_lines)
            self._early_lines = []
        self._show_status()
        self._show_follow()
        if self._clock is not None:
            # The uptime changes once a second; nothing else needs a timer.
            self.set_interval(1.0, self.refresh_status)

    @property
    def view(self) -> ConsoleView:
        return self.query_one(ConsoleView)

    def set_shown(self, shown: bool) -> None:
        """Show or hide the pane; a hidden pane's view is parked (stores lines, draws nothing)."""
        self.display = shown
        if self._view_ready:
            self.view.set_parked(not shown)
        if shown:
            # A parked pane's uptime may be up to a tick old; show it as of now.
            self._show_status()

    def append_lines(self, lines: Iterable[str]) -> None:
        if not self._view_ready:
            # Mounted this frame (a node the script made): its view comes with the next one.
            self._early_lines.extend(lines)
            return
        view = self.view
        view.append_lines(lines)
        if not view.follow:
            self._show_follow()

    def apply_state(self, event: MachineStateChanged) -> None:
        self.status.apply(event)
        self._show_status()

    def refresh_status(self) -> None:
        """Redraw the title's uptime as of now (a timer does this once a second)."""
        if self.status.is_running:
            self._show_status()

    def _show_status(self) -> None:
        now = self._clock() if self._clock is not None else None
        self.border_title = f"[b]{self.machine}[/b]  {self.status.markup(now)}"

    def _show_follow(self) -> None:
        view = self.view
        if view.follow:
            self.border_subtitle = "following"
        else:
            self.border_subtitle = f"[$text-warning]paused · {view.unseen_lines} new · End to follow[/]"

    @on(ConsoleView.FollowChanged)
    def _follow_changed(self) -> None:
        self._show_follow()

    # -- search -------------------------------------------------------------

    def action_search(self) -> None:
        self.add_class("-searching")
        self.query_one(Input).focus()

    def action_close_search(self) -> None:
        if not self.has_class("-searching"):
            return
        self.remove_class("-searching")
        self.view.set_search(None)
        self.view.focus()

    @on(Input.Changed, ".console-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.view.set_search(event.value or None)

    @on(Input.Submitted, ".console-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value and self.view.find(event.value, backwards=True) is None:
            self.notify(f"{event.value!r} not found in {self.machine}'s console", severity="warning", timeout=3)
