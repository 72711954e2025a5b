"""Guest text as a terminal would leave it on one line: visible text plus SGR colours, nothing else.

Every byte a guest prints (serial console lines, command output, error
messages that quote a console tail) ends up on the user's terminal, in a
pane or on stderr.  Passed through, a guest's escapes would act on that
terminal: SeaBIOS starts every boot with `ESC c` (full reset), `ESC [?7l`
(no line wrap) and `ESC [2J` (clear screen); other guests set the window
title, write the clipboard (OSC 52), open hyperlinks (OSC 8), switch
screens or ring the bell.  This module is the one place that decides what of
a line survives:

- SGR (`ESC [ ... m`, also 8-bit `CSI`) becomes a small hashable `SgrState`
  attached to each run of text; front ends turn it into their own styles;
- carriage return, backspace, tab, cursor-left/right/column (`CSI D/C/G`) and
  erase-in-line (`CSI K`) are played on a one-line model, so a progress line
  redrawn with `\\r` shows what a terminal would finally show;
- every other escape sequence (CSI, OSC, DCS, APC, PM, SOS, two-byte escapes,
  in 7-bit and 8-bit form) is parsed and dropped whole, and every other C0/C1
  control and DEL is dropped, so what comes out holds no control character.

Each line is decoded on its own: a colour left on does not leak into the next
line, and an escape string cut by a newline ends there (its rest shows as
text; nothing of it can reach the terminal as an escape).  Cursor positions
count one column per code point (tab stops too); double-width characters only
matter when a line both contains them and moves the cursor or has a tab.
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = [
    "PLAIN",
    "Colour",
    "SgrState",
    "decode_line",
    "plain_line",
    "plain_text",
    "sgr_parameters",
    "terminal_line",
    "terminal_text",
]

# A colour: an index into the 256-colour table, or (red, green, blue).
Colour = int | tuple[int, int, int]

# Attribute bits of an SgrState.
BOLD: Final = 1
DIM: Final = 2
ITALIC: Final = 4
UNDERLINE: Final = 8
BLINK: Final = 16
REVERSE: Final = 32
CONCEAL: Final = 64
STRIKE: Final = 128

# (foreground, background, attribute bits); None is the terminal's default colour.
SgrState = tuple[Colour | None, Colour | None, int]
PLAIN: Final[SgrState] = (None, None, 0)

# Code -> (bits to set, bits to clear).
_ATTRIBUTE_CODES: Final = {
    1: (BOLD, 0),
    2: (DIM, 0),
    3: (ITALIC, 0),
    4: (UNDERLINE, 0),
    5: (BLINK, 0),
    6: (BLINK, 0),
    7: (REVERSE, 0),
    8: (CONCEAL, 0),
    9: (STRIKE, 0),
    21: (UNDERLINE, 0),
    22: (0, BOLD | DIM),
    23: (0, ITALIC),
    24: (0, UNDERLINE),
    25: (0, BLINK),
    27: (0, REVERSE),
    28: (0, CONCEAL),
    29: (0, STRIKE),
}
_ATTRIBUTE_OUT: Final = ((BOLD, "1"), (DIM, "2"), (ITALIC, "3"), (UNDERLINE, "4"), (BLINK, "5"), (REVERSE, "7"), (CONCEAL, "8"), (STRIKE, "9"))

TAB_SIZE: Final = 8

# One token of a line.  Group `csi`: a CSI sequence (7- or 8-bit) with its
# parameters, intermediates and final byte; a CSI cut short (end of line or
# a byte that cannot continue it) has no final and is dropped.  Strings
# (OSC, DCS, SOS, PM, APC) run to BEL or ST, or to an ESC that starts the
# next sequence, or to the end of the line.  Other escapes: ESC, any
# intermediates, a final byte.  Then single controls, and runs of text.
_TOKEN: Final = re.compile(
    r"(?P<csi>(?:\x1b\[|\x9b)(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])?)"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\x18\x1a]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|(?P<control>[\x00-\x1a\x1c-\x1f\x7f-\x9f])"
    r"|(?P<text>[^\x00-\x1f\x7f-\x9f]+)"
)
# Anything that needs more than "the line is its own text".
_SPECIAL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPECIAL_BUT_NEWLINE: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# A line whose only special characters are SGR sequences without private
# markers or intermediates, and how to split it into text and parameters.
_NOT_SGR: Final = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f-\x9f]|\x1b(?!\[[0-9;:]*m)")
_SGR_SPLIT: Final = re.compile(r"\x1b\[([0-9;:]*)m")
# CSI sequences that move the cursor within the line or erase part of it
# (a false hit, say inside an OSC string, only costs the slower path).
_CURSOR_MOVE: Final = re.compile(r"(?:\x1b\[|\x9b)[0-9;]*[CDGK]")


@functools.lru_cache(maxsize=4096)
def apply_sgr(state: SgrState, parameters: str) -> SgrState:
    """The SGR state after `CSI parameters m` (`:` sub-parameters read like `;`)."""
    codes = [int(part) if part.isdigit() else 0 for part in parameters.replace(":", ";").split(";")] if parameters else [0]
    foreground, background, bits = state
    index = 0
    while index < len(codes):
        code = codes[index]
        index += 1
        if code == 0:
            foreground, background, bits = PLAIN
        elif code in _ATTRIBUTE_CODES:
            on, off = _ATTRIBUTE_CODES[code]
            bits = (bits | on) & ~off
        elif 30 <= code <= 37:
            foreground = code - 30
        elif 90 <= code <= 97:
            foreground = code - 90 + 8
        elif 40 <= code <= 47:
            background = code - 40
        elif 100 <= code <= 107:
            background = code - 100 + 8
        elif code == 39:
            foreground = None
        elif code == 49:
            background = None
        elif code in (38, 48):
            colour, index = _extended_colour(codes, index)
            if colour is not None:
                if code == 38:
                    foreground = colour
                else:
                    background = colour
    return (foreground, background, bits)


def _extended_colour(codes: list[int], index: int) -> tuple[Colour | None, int]:
    """Decode `38;5;n` / `38;2;r;g;b` starting at codes[index] (the 5 or the 2)."""
    if index + 1 < len(codes) and codes[index] == 5:
        return min(codes[index + 1], 255), index + 2
    if index + 3 < len(codes) and codes[index] == 2:
        red, green, blue = (min(value, 255) for value in codes[index + 1 : index + 4])
        return (red, green, blue), index + 4
    return None, len(codes)  # malformed: the rest of the sequence means nothing


def decode_line(line: str) -> list[tuple[str, SgrState]]:
    """The runs of one line a terminal would show, each with its SGR state.

    Runs are non-empty, adjacent runs differ in state, and their text holds
    no control character (tabs are expanded to spaces).
    """
    if not _SPECIAL.search(line):
        return [(line, PLAIN)] if line else []
    if not _NOT_SGR.search(line):
        return _decode_sgr_only(line)
    if "\r" in line or "\b" in line or _CURSOR_MOVE.search(line):
        return _decode_on_cells(line)
    return _decode_appending(line)


def _decode_sgr_only(line: str) -> list[tuple[str, SgrState]]:
    """The commonest coloured line (a systemd or kernel log): text and plain SGR, nothing else."""
    runs: list[tuple[str, SgrState]] = []
    state = PLAIN
    # Even items are text, odd ones the parameters of the SGR between them.
    parts = _SGR_SPLIT.split(line)
    for index in range(0, len(parts), 2):
        if index:
            state = apply_sgr(state, parts[index - 1])
        text = parts[index]
        if text:
            if runs and runs[-1][1] == state:
                runs[-1] = (runs[-1][0] + text, state)
            else:
                runs.append((text, state))
    return runs


def _is_sgr(match: re.Match[str]) -> bool:
    # `CSI > 4 ; 2 m` and friends (a private marker first) are not SGR.
    if match.group("final") != "m" or match.group("inter"):
        return False
    params = match.group("params")
    return not params or params[0] not in "<=>?"


def _decode_appending(line: str) -> list[tuple[str, SgrState]]:
    """Lines that never move the cursor back: text written left to right, escapes dropped."""
    runs: list[tuple[str, SgrState]] = []
    state = PLAIN
    column = 0
    for match in _TOKEN.finditer(line):
        text = match.group("text")
        run_state = state
        if text is None:
            if match.group("control") == "\t":
                # A tab moves the cursor without painting: the cells it skips stay plain.
                text, run_state = " " * (TAB_SIZE - column % TAB_SIZE), PLAIN
            elif _is_sgr(match):
                state = apply_sgr(state, match.group("params"))
                continue
            else:
                continue
        column += len(text)
        if runs and runs[-1][1] == run_state:
            runs[-1] = (runs[-1][0] + text, run_state)
        else:
            runs.append((text, run_state))
    return runs


def _decode_on_cells(line: str) -> list[tuple[str, SgrState]]:
    """Lines that move the cursor: play them on a row of cells, then read the row."""
    chars: list[str] = []
    states: list[SgrState] = []
    state = PLAIN
    column = 0

    def put(text: str) -> None:
        nonlocal column
        end = column + len(text)
        if column > len(chars):  # the cursor moved right past the end: blanks in between
            gap = column - len(chars)
            chars.extend(" " * gap)
            states.extend([PLAIN] * gap)
        chars[column:end] = text
        states[column:end] = [state] * len(text)
        column = end

    for match in _TOKEN.finditer(line):
        text = match.group("text")
        if text is not None:
            put(text)
            continue
        control = match.group("control")
        if control == "\r":
            column = 0
        elif control == "\b":
            column = max(0, column - 1)
        elif control == "\t":
            # A tab only moves the cursor; cells it skips past the end read as
            # blanks, as the appending decoder shows them (a trailing `\r` must
            # not change how a line with a tab looks).
            column += TAB_SIZE - column % TAB_SIZE
            if column > len(chars):
                gap = column - len(chars)
                chars.extend(" " * gap)
                states.extend([PLAIN] * gap)
        elif _is_sgr(match):
            state = apply_sgr(state, match.group("params"))
        elif match.group("csi") and not match.group("inter"):
            final, params = match.group("final"), match.group("params")
            if final in ("C", "D", "G") and (params == "" or params.isdigit()):
                count = max(int(params or 1), 1)
                column = column + count if final == "C" else max(0, column - count) if final == "D" else count - 1
            elif final == "K":
                _erase_in_line(chars, states, column, params)
    return _runs(chars, states)


def _erase_in_line(chars: list[str], states: list[SgrState], column: int, params: str) -> None:
    if params in ("", "0"):
        del chars[column:], states[column:]
    elif params in ("1", "2"):
        end = min(column + 1, len(chars)) if params == "1" else len(chars)
        chars[:end] = " " * end
        states[:end] = [PLAIN] * end
        if params == "2":
            del chars[column:], states[column:]


def _runs(chars: list[str], states: list[SgrState]) -> list[tuple[str, SgrState]]:
    runs: list[tuple[str, SgrState]] = []
    start = 0
    for index in range(1, len(chars) + 1):
        if index == len(chars) or states[index] != states[start]:
            runs.append(("".join(chars[start:index]), states[start]))
            start = index
    return runs


def plain_line(line: str) -> str:
    """The text of one line as a reader sees it: no escapes, no controls."""
    if not _SPECIAL.search(line):
        return line
    return "".join(text for text, _ in decode_line(line))


def plain_text(text: str) -> str:
    """Multi-line text made safe for any terminal: each line as `plain_line` shows it."""
    if not _SPECIAL_BUT_NEWLINE.search(text):
        return text
    return "\n".join(plain_line(line) for line in text.split("\n"))


@functools.lru_cache(maxsize=1024)
def sgr_parameters(state: SgrState) -> str:
    """SGR parameters that select `state` from the default (no leading reset)."""
    foreground, background, bits = state
    parts = [code for bit, code in _ATTRIBUTE_OUT if bits & bit]
    for colour, base in ((foreground, 30), (background, 40)):
        if colour is None:
            continue
        if isinstance(colour, tuple):
            parts.append(f"{base + 8};2;{colour[0]};{colour[1]};{colour[2]}")
        elif colour < 8:
            parts.append(str(base + colour))
        elif colour < 16:
            parts.append(str(base + 60 + colour - 8))
        else:
            parts.append(f"{base + 8};5;{colour}")
    return ";".join(parts)


def terminal_line(line: str, base: str = "") -> str:
    """One line re-encoded for a terminal: its text, its colours as fresh SGR, nothing else.

    `base` (SGR parameters, e.g. "2" for dim) is the style the line is printed
    in; every run starts from it, so a guest's reset cannot undo it.  The
    result ends in that base style (the caller resets after the line).
    """
    if not _SPECIAL.search(line):
        return line
    out: list[str] = []
    current = PLAIN
    for text, state in decode_line(line):
        if state != current:
            parameters = ";".join(part for part in ("0", base, sgr_parameters(state)) if part)
            out.append(f"\x1b[{parameters}m")
            current = state
        out.append(text)
    if current != PLAIN:
        out.append(f"\x1b[{';'.join(part for part in ('0', base) if part)}m")
    return "".join(out)


def terminal_text(text: str, base: str = "") -> str:
    """Multi-line text for a terminal: `terminal_line` on each line."""
    return "\n".join(terminal_line(line, base) for line in text.split("\n"))
