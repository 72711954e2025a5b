"""One line that says what the script is doing: running, waiting, paused, failed, done."""

from __future__ import annotations

from textual.widgets import Static
from textual.markup import escape

from driver.events import (
    DebuggerPaused,
    DebuggerResumed,
    Event,
    ScriptFinished,
    ScriptStarted,
    StatementStarted,
    WaitProgress,
)
from driver.terminal_text import plain_text
from widgets.machine_status import format_duration



def error_summary(text: str | None) -> str:
    """The line of an error text that says what went wrong (a traceback's last)."""
    # Made plain first: errors quote guest output, whose `\r` and other
    # controls `splitlines` would take for line ends.
    stripped = plain_text(text or "").strip()
    return stripped.splitlines()[-1] if stripped else ""


_PAUSE_REASONS = {
    "breakpoint": "breakpoint",
    "step": "step",
    "pause": "paused by you",
    "run-to-line": "reached the cursor line",
    "exception": "post-mortem",
}


class RunStatus(Static):
    """The state of the current run, folded from driver events."""

    DEFAULT_CSS = """
    RunStatus {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.state = "idle"
        self._line: int | None = None
        self._detail = ""
        self._waiting = ""

    def on_mount(self) -> None:
        self._show()

    def apply(self, event: Event) -> None:
        if isinstance(event, ScriptStarted):
            self.state, self._line, self._detail, self._waiting = "running", event.first_line, "", ""
        elif isinstance(event, StatementStarted):
            self._line, self._waiting = event.line, ""
            if self.state != "paused":
                self.state = "running"
        elif isinstance(event, WaitProgress):
            who = f"{event.machine}: " if event.machine else ""
            limit = f" / {format_duration(event.timeout)}" if event.timeout else ""
            self._waiting = f"{who}{event.what} · {format_duration(event.elapsed)}{limit} · {event.attempts} tries"
        elif isinstance(event, DebuggerPaused):
            self.state = "post-mortem" if event.reason == "exception" else "paused"
            self._line = event.line
            self._detail = error_summary(event.error) if event.error else _PAUSE_REASONS.get(event.reason, event.reason)
            self._waiting = ""
        elif isinstance(event, DebuggerResumed):
            self.state, self._detail = "running", ""
        elif isinstance(event, ScriptFinished):
            self._waiting = ""
            if event.cancelled:
                self.state, self._detail = "stopped", "VMs still running"
            elif event.ok:
                self.state, self._detail = "passed", format_duration(event.duration)
            else:
                self.state, self._line, self._detail = "failed", event.error_line, error_summary(event.error)
        else:
            return
        self._show()

    def set_message(self, state: str, detail: str = "") -> None:
        """Show a state the events do not carry (e.g. "loading", "syntax error")."""
        self.state, self._detail, self._waiting = state, detail, ""
        self._show()

    def _show(self) -> None:
        glyph, colour = {
            "idle": ("○", "$text-muted"),
            "running": ("▶", "$text-accent"),
            "paused": ("‖", "$text-warning"),
            "post-mortem": ("✗", "$text-error"),
            "failed": ("✗", "$text-error"),
            "stopped": ("■", "$text-warning"),
            "passed": ("✓", "$text-success"),
        }.get(self.state, ("•", "$text"))
        parts = [f"[b]{escape(plain_text(self.title))}[/b]", f"[{colour}]{glyph} {self.state}[/]"]
        if self._line is not None and self.state not in ("passed", "idle"):
            parts.append(f"line {self._line}")
        if self._detail:
            parts.append(f"[{colour}]{escape(plain_text(self._detail))}[/]")
        if self._waiting:
            parts.append(f"[$text-warning]◷ {escape(plain_text(self._waiting))}[/]")
        self.update("  ·  ".join(parts))
