"""Guest text in Rich terms: decoded lines as segments and `Text`, styles cached per SGR state.

What survives of a guest's line (text and SGR colours, `\\r` and backspace
played out, every other escape and control dropped) is decided once, in
`driver.terminal_text`; this module only maps its SGR states to Rich styles.
Rich's `Text.from_ansi` is not used anywhere on guest text: it lets `ESC c`
and other escapes through to the terminal, and building a `Text` per line is
too slow for a pane that redraws every visible line each frame while a
guest floods.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.color import Color
from rich.segment import Segment
from rich.style import Style, StyleType
from rich.text import Text

from driver.terminal_text import (
    BLINK,
    BOLD,
    CONCEAL,
    DIM,
    ITALIC,
    PLAIN,
    REVERSE,
    STRIKE,
    UNDERLINE,
    Colour,
    SgrState,
    decode_line,
    plain_line,
    plain_text,
)

__all__ = ["AnsiLineDecoder", "guest_text", "plain_line", "plain_text", "style_of"]


def _colour(colour: Colour | None) -> Color | None:
    if colour is None:
        return None
    if isinstance(colour, tuple):
        return Color.from_rgb(*colour)
    return Color.from_ansi(colour)


def style_of(state: SgrState) -> Style:
    """The Rich style of an SGR state (on no base style)."""
    foreground, background, bits = state
    return Style(
        color=_colour(foreground),
        bgcolor=_colour(background),
        bold=bool(bits & BOLD) or None,
        dim=bool(bits & DIM) or None,
        italic=bool(bits & ITALIC) or None,
        underline=bool(bits & UNDERLINE) or None,
        blink=bool(bits & BLINK) or None,
        reverse=bool(bits & REVERSE) or None,
        strike=bool(bits & STRIKE) or None,
        conceal=bool(bits & CONCEAL) or None,
    )


class AnsiLineDecoder:
    """Decodes console lines over a base style; styles are cached per SGR state."""

    def __init__(self, base: Style) -> None:
        self.base = base
        self._styles: dict[SgrState, Style] = {PLAIN: base}

    def style(self, state: SgrState) -> Style:
        style = self._styles.get(state)
        if style is None:
            style = self._styles[state] = self.base + style_of(state)
        return style

    def decode(self, line: str) -> tuple[list[Segment], int]:
        """Segments of one line and its width in cells."""
        segments = [Segment(text, self.style(state)) for text, state in decode_line(line)]
        return segments, sum(cell_len(segment.text) for segment in segments)

    def text(self, line: str) -> Text:
        """One line as a Rich `Text` (for the slower paths that need one, like highlighting)."""
        text = Text(no_wrap=True, end="", style=self.base)
        for run, state in decode_line(line):
            text.append(run, style_of(state) if state != PLAIN else None)
        return text


def guest_text(text: str, style: StyleType = "") -> Text:
    """Multi-line text that may come from a guest, as a `Text`: colours kept, nothing else."""
    result = Text(style=style, end="")
    for number, line in enumerate(text.split("\n")):
        if number:
            result.append("\n")
        for run, state in decode_line(line):
            result.append(run, style_of(state) if state != PLAIN else None)
    return result
