"""A small, fast decoder from one line of serial console output to styled segments.

Consoles carry SGR colour codes (`ESC [ 31 m`) and occasionally other
escapes (cursor moves, window titles) that mean nothing in a scrolling log.
Rich's `Text.from_ansi` handles the first, but builds a `Text` and renders it
per line, which is too slow for a pane that redraws every visible line each
frame while a guest floods.  This decoder walks the line once, keeps the SGR
state as a small tuple, and caches one `Style` per state, so a plain line
costs one segment and a coloured line a few.
"""

from __future__ import annotations

import re
from typing import Iterator

from rich.cells import cell_len
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

# CSI (any final byte), OSC (to BEL or ST) and two-byte escapes.
ESCAPE = re.compile(r"\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")

# C0 controls other than TAB and ESC, and DEL: a guest's bells, backspaces and
# stray carriage returns must never reach the terminal.
CONTROLS_TO_NONE = {code: None for code in (*range(0x00, 0x09), *range(0x0A, 0x1B), *range(0x1C, 0x20), 0x7F)}

TAB_SIZE = 8

# SGR state: (fg, bg, bold, dim, italic, underline, blink, reverse, strike, conceal)
_State = tuple[Color | None, Color | None, bool, bool, bool, bool, bool, bool, bool, bool]
_PLAIN: _State = (None, None, False, False, False, False, False, False, False, False)

# Attribute codes: code -> (index in the state, value).
_ATTRIBUTES = {
    1: ((2, True),),
    2: ((3, True),),
    3: ((4, True),),
    4: ((5, True),),
    5: ((6, True),),
    6: ((6, True),),
    7: ((7, True),),
    8: ((9, True),),
    9: ((8, True),),
    21: ((5, True),),
    22: ((2, False), (3, False)),
    23: ((4, False),),
    24: ((5, False),),
    25: ((6, False),),
    27: ((7, False),),
    28: ((9, False),),
    29: ((8, False),),
}


def _extended_colour(codes: list[int], index: int) -> tuple[Color | None, int]:
    """Decode `38;5;n` / `38;2;r;g;b` starting at codes[index] (the 5 or 2)."""
    if index < len(codes) and codes[index] == 5 and index + 1 < len(codes):
        return Color.from_ansi(codes[index + 1] & 0xFF), index + 2
    if index < len(codes) and codes[index] == 2 and index + 3 < len(codes):
        red, green, blue = (min(255, value) for value in codes[index + 1 : index + 4])
        return Color.from_rgb(red, green, blue), index + 4
    return None, len(codes)


def apply_sgr(state: _State, parameters: str) -> _State:
    """The SGR state after `ESC [ parameters m`."""
    codes = [int(part) if part.isdigit() else 0 for part in parameters.replace(":", ";").split(";")] if parameters else [0]
    values = list(state)
    index = 0
    while index < len(codes):
        code = codes[index]
        index += 1
        if code == 0:
            values = list(_PLAIN)
        elif code in _ATTRIBUTES:
            for position, value in _ATTRIBUTES[code]:
                values[position] = value
        elif 30 <= code <= 37:
            values[0] = Color.from_ansi(code - 30)
        elif 90 <= code <= 97:
            values[0] = Color.from_ansi(code - 90 + 8)
        elif 40 <= code <= 47:
            values[1] = Color.from_ansi(code - 40)
        elif 100 <= code <= 107:
            values[1] = Color.from_ansi(code - 100 + 8)
        elif code == 39:
            values[0] = None
        elif code == 49:
            values[1] = None
        elif code in (38, 48):
            colour, index = _extended_colour(codes, index)
            if colour is not None:
                values[0 if code == 38 else 1] = colour
    return tuple(values)  # type: ignore[return-value]


def _style_of(state: _State) -> Style:
    fg, bg, bold, dim, italic, underline, blink, reverse, strike, conceal = state
    return Style(
        color=fg,
        bgcolor=bg,
        bold=bold or None,
        dim=dim or None,
        italic=italic or None,
        underline=underline or None,
        blink=blink or None,
        reverse=reverse or None,
        strike=strike or None,
        conceal=conceal or None,
    )


class AnsiLineDecoder:
    """Decodes console lines over a base style; styles are cached per SGR state.

    Each line is decoded on its own (a colour left on at the end of a line
    does not leak into the next one): lines are drawn in any order, and a
    guest that forgets to reset would otherwise colour the rest of the pane.
    """

    def __init__(self, base: Style) -> None:
        self.base = base
        self._styles: dict[_State, Style] = {_PLAIN: base}

    def _style(self, state: _State) -> Style:
        style = self._styles.get(state)
        if style is None:
            style = self._styles[state] = self.base + _style_of(state)
        return style

    def decode(self, line: str) -> tuple[list[Segment], int]:
        """Segments of one line and its width in cells."""
        if "\x1b" not in line and "\t" not in line:
            text = line.translate(CONTROLS_TO_NONE)
            return [Segment(text, self.base)], cell_len(text)
        segments: list[Segment] = []
        column = 0
        for text, style in self._pieces(line):
            if "\t" in text:
                text, column = _expand_tabs(text, column)
            else:
                column += cell_len(text)
            if text:
                segments.append(Segment(text, style))
        return segments, column

    def _pieces(self, line: str) -> Iterator[tuple[str, Style]]:
        state = _PLAIN
        style = self.base
        position = 0
        for match in ESCAPE.finditer(line):
            if match.start() > position:
                yield line[position : match.start()].translate(CONTROLS_TO_NONE), style
            position = match.end()
            if match.group(2) == "m":
                state = apply_sgr(state, match.group(1) or "")
                style = self._style(state)
        if position < len(line):
            yield line[position:].translate(CONTROLS_TO_NONE), style


def _expand_tabs(text: str, column: int) -> tuple[str, int]:
    parts = []
    for index, chunk in enumerate(text.split("\t")):
        if index:
            pad = TAB_SIZE - column % TAB_SIZE
            parts.append(" " * pad)
            column += pad
        parts.append(chunk)
        column += cell_len(chunk)
    return "".join(parts), column


def plain_text(line: str) -> str:
    """The text of a console line as a reader sees it: no escapes, no controls."""
    return ESCAPE.sub("", line).translate(CONTROLS_TO_NONE)
