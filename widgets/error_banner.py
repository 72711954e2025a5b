"""The banner above the timeline that says what failed and what to do next."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from driver.terminal_text import plain_text
from widgets.run_status import error_summary

__all__ = ["ErrorBanner"]


class ErrorBanner(Static):
    """Hidden until something fails; styled by the app (`#error-banner`, `-visible`)."""

    def show_error(self, error: str, *, line: int | None = None, line_text: str = "", hint: str = "",
                   title: str = "failed") -> None:
        """A traceback-like error: its last line (the summary) first, then the frames above it."""
        error = plain_text(error)  # errors quote console tails and command output
        text = Text()
        text.append("✗ ", style="bold")
        text.append(error_summary(error), style="bold")
        details = [row for row in error.strip().splitlines()[:-1] if row.strip()]
        for row in details[-6:]:
            text.append("\n  " + row)
        if line is not None:
            text.append(f"\n  line {line}:  ", style="dim")
            text.append(plain_text(line_text).strip())
        self._show(text, title, hint)

    def show_paragraph(self, message: str, *, title: str, hint: str = "", max_lines: int = 12) -> None:
        """A message that reads top down (Nix's error: what, then where), unlike a traceback."""
        rows = [row.rstrip() for row in plain_text(message).strip().splitlines()]
        text = Text()
        text.append("✗ ", style="bold")
        text.append(rows[0] if rows else title, style="bold")
        for row in rows[1:max_lines]:
            text.append("\n  " + row)
        if len(rows) > max_lines:
            text.append(f"\n  … {len(rows) - max_lines} more lines in the timeline", style="dim")
        self._show(text, title, hint)

    def hide(self) -> None:
        self.remove_class("-visible")

    def _show(self, text: Text, title: str, hint: str) -> None:
        if hint:
            text.append("\n" + hint, style="italic dim")
        self.border_title = plain_text(title)
        self.update(text)
        self.add_class("-visible")
