"""A VT100/xterm terminal widget on top of pyte.

`TerminalView` shows what a program on the far side of a byte channel draws
(a guest shell on a virtconsole, a local pty in tests) and sends the keys the
user types back to it.  It knows nothing about where the bytes come from: the
owner gives it a `TerminalBackend` (anything with `write` and `resize`) and
calls `feed()` with output, from any thread.

Why it stays cheap under a flood of output:

- `feed()` only appends to a buffer; the first append after a drain posts one
  small message, so a burst of chunks becomes one parse on the UI thread.
- Drains happen at most `MAX_DRAINS_PER_SECOND` times a second: output after
  a quiet spell (a typed key's echo) is drawn at once, a program writing
  without pause costs at most that many frames (the app lets Textual draw
  far more often than that, for keys).
- pyte marks the rows that changed (`Screen.dirty`); only those rows are
  re-rendered (strips are cached per row) and only their regions refreshed.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from functools import lru_cache
from typing import Any, Callable, Protocol

import pyte
from rich.segment import Segment
from rich.style import Style
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from widgets.textual_hooks import widget_on_key

MAX_DRAINS_PER_SECOND = 60.0


class TerminalBackend(Protocol):
    """The far side of a terminal: where keys go and who learns the size."""

    def write(self, data: bytes) -> None: ...

    def resize(self, columns: int, lines: int) -> None: ...


# pyte names the 16 ANSI colours after the xterm table ("brown" is yellow;
# one bright name is misspelt in pyte 0.8.2, mapped here on purpose).
_NAMED_COLOURS = {
    "black": "black",
    "red": "red",
    "green": "green",
    "brown": "yellow",
    "blue": "blue",
    "magenta": "magenta",
    "cyan": "cyan",
    "white": "white",
    "brightblack": "bright_black",
    "brightred": "bright_red",
    "brightgreen": "bright_green",
    "brightbrown": "bright_yellow",
    "brightblue": "bright_blue",
    "brightmagenta": "bright_magenta",
    "bfightmagenta": "bright_magenta",
    "brightcyan": "bright_cyan",
    "brightwhite": "bright_white",
}


def _colour(name: str) -> str | None:
    if name == "default":
        return None
    named = _NAMED_COLOURS.get(name)
    if named is not None:
        return named
    # 256-colour and true-colour cells arrive as six hex digits.
    if len(name) == 6:
        return f"#{name}"
    return None


@lru_cache(maxsize=1024)
def _style(fg: str, bg: str, bold: bool, italics: bool, underscore: bool,
           strikethrough: bool, reverse: bool, blink: bool) -> Style:
    return Style(
        color=_colour(fg),
        bgcolor=_colour(bg),
        bold=bold or None,
        italic=italics or None,
        underline=underscore or None,
        strike=strikethrough or None,
        reverse=reverse or None,
        blink=blink or None,
    )


def _char_style(char: pyte.screens.Char, cursor: bool = False) -> Style:
    return _style(char.fg, char.bg, char.bold, char.italics, char.underscore,
                  char.strikethrough, char.reverse != cursor, char.blink)


# Keys that are not plain characters, as xterm sends them.
_CSI_KEYS = {
    "up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F",
}
_TILDE_KEYS = {
    "insert": 2, "delete": 3, "pageup": 5, "pagedown": 6,
    "f5": 15, "f6": 17, "f7": 18, "f8": 19, "f9": 20, "f10": 21, "f11": 23, "f12": 24,
}
_SS3_KEYS = {"f1": "P", "f2": "Q", "f3": "R", "f4": "S"}
_PLAIN_KEYS = {
    "enter": b"\r", "tab": b"\t", "shift+tab": b"\x1b[Z", "escape": b"\x1b",
    "backspace": b"\x7f", "ctrl+h": b"\x08", "ctrl+space": b"\x00",
    "ctrl+at": b"\x00", "ctrl+backslash": b"\x1c",
    "ctrl+right_square_bracket": b"\x1d", "ctrl+circumflex_accent": b"\x1e",
    "ctrl+underscore": b"\x1f",
}
# Private modes pyte records but has no names for (stored shifted by 5, as pyte does).
_DECCKM = 1 << 5  # application cursor keys
_BRACKETED_PASTE = 2004 << 5

# xterm's modifier parameter: 1 + shift(1) + alt(2) + ctrl(4).
_MODIFIER_CODES = {"shift": 1, "alt": 2, "ctrl": 4}


def key_to_bytes(key: str, character: str | None, *, application_cursor: bool = False) -> bytes | None:
    """The bytes a terminal sends for a Textual key, or None for a key it has no code for."""
    if key in _PLAIN_KEYS:
        return _PLAIN_KEYS[key]
    *modifiers, base = key.split("+")
    modifier = 1 + sum(_MODIFIER_CODES.get(m, 0) for m in modifiers)
    if base in _CSI_KEYS:
        final = _CSI_KEYS[base]
        if modifier > 1:
            return f"\x1b[1;{modifier}{final}".encode()
        # Readline and full-screen programs switch the arrows to SS3 form (DECCKM).
        return (f"\x1bO{final}" if application_cursor else f"\x1b[{final}").encode()
    if base in _TILDE_KEYS:
        code = _TILDE_KEYS[base]
        return (f"\x1b[{code};{modifier}~" if modifier > 1 else f"\x1b[{code}~").encode()
    if base in _SS3_KEYS:
        final = _SS3_KEYS[base]
        return (f"\x1b[1;{modifier}{final}" if modifier > 1 else f"\x1bO{final}").encode()
    if modifiers == ["ctrl"] and len(base) == 1 and base.isalpha():
        return bytes([ord(base.lower()) & 0x1F])
    if modifiers and modifiers[0] == "alt" and character and len(character) == 1:
        return b"\x1b" + character.encode()
    if character:
        return character.encode()
    return None


class _ScrollbackScreen(pyte.Screen):
    """A pyte screen that keeps the lines scrolled off its top.

    pyte's own HistoryScreen wraps every attribute lookup, which costs more
    than the parse itself; catching `index()` at the bottom margin is enough
    for a shell's scrollback.
    """

    def __init__(self, columns: int, lines: int, history: int) -> None:
        self.history: deque[dict[int, pyte.screens.Char]] = deque(maxlen=history)
        self.responses: list[str] = []
        super().__init__(columns, lines)

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if top == 0 and self.cursor.y == bottom:
            self.history.append(dict(self.buffer[0]))
        super().index()

    def write_process_input(self, data: str) -> None:
        # Answers to device status / attribute queries go back to the program.
        self.responses.append(data)


def _tolerant(handler: Callable[..., Any]) -> Callable[..., Any]:
    parameters = inspect.signature(handler).parameters
    takes_private = "private" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())

    def handle(self: pyte.Screen, *args: Any, **options: Any) -> Any:
        if not takes_private and options.pop("private", False):
            return None  # an xterm extension pyte lacks: skipped, as a terminal without it does
        try:
            return handler(self, *args, **options)
        except Exception:  # noqa: BLE001 - a malformed sequence is ignored, as terminals do
            return None

    return handle


# pyte 0.8 raises inside its parser on sequences a guest can print at will
# (`ESC [?1m` passes `private=True` to handlers that do not take it, `ESC [;A`
# one parameter too many, ...); the exception would end the app, and the
# parser would be dead anyway.  Every handler the stream calls is wrapped.
for _name in pyte.Stream.events:
    setattr(_ScrollbackScreen, _name, _tolerant(getattr(_ScrollbackScreen, _name)))


class TerminalView(Widget, can_focus=True):
    """An interactive terminal: pyte screen, per-row rendering, keys to a backend."""

    DEFAULT_CSS = """
    TerminalView {
        width: 1fr;
        height: 1fr;
        min-width: 10;
        min-height: 3;
    }
    """

    BINDINGS = [
        Binding("shift+pageup", "scroll_history(-1)", "Scroll up", show=False),
        Binding("shift+pagedown", "scroll_history(1)", "Scroll down", show=False),
    ]

    # Keys the view never sends to the program: they leave the terminal
    # (focus moves on) or scroll its history.  Everything else, Tab and
    # Ctrl-C included, belongs to the program.
    LEAVE_KEYS = frozenset({"ctrl+right_square_bracket"})
    SCROLL_KEYS = frozenset({"shift+pageup", "shift+pagedown"})

    class Closed(Message):
        """The program on the far side went away."""

        def __init__(self, view: TerminalView, reason: str) -> None:
            super().__init__()
            self.view = view
            self.reason = reason

        @property
        def control(self) -> TerminalView:
            return self.view

    class _DataReady(Message):
        """Internal: output waits in the feed buffer."""

        def __init__(self, view: TerminalView) -> None:
            super().__init__()
            self.view = view

        @property
        def control(self) -> TerminalView:
            return self.view

    def __init__(
        self,
        backend: TerminalBackend | None = None,
        *,
        history: int = 2000,
        passthrough_keys: frozenset[str] = frozenset(),
        name: str | None = None,
        id: str | None = None,  # noqa: A002 - Textual's own parameter name
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.backend = backend
        # Keys the app wants for itself even while the terminal has focus.
        self.passthrough_keys = passthrough_keys
        self._screen = _ScrollbackScreen(80, 24, history)
        self._stream = pyte.ByteStream(self._screen)
        self._pending: list[bytes] = []
        self._pending_lock = threading.Lock()
        self._last_drain = 0.0  # time.monotonic() of the last flush
        self._drain_due = False  # a timer will flush
        self._strips: dict[int, Strip] = {}
        self._cursor_row: int | None = None
        self._scroll_offset = 0  # lines of history shown above the live screen
        self._reported_size: tuple[int, int] | None = None
        self.closed_reason: str | None = None

    # -- feeding output -----------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue program output; safe to call from any thread."""
        if not data:
            return
        with self._pending_lock:
            was_idle = not self._pending
            self._pending.append(data)
        if was_idle:
            self.post_message(self._DataReady(self))

    def mark_closed(self, reason: str) -> None:
        """The channel ended: show why, stop sending keys. Any thread."""
        self.feed(f"\r\n\x1b[7m[{reason}]\x1b[0m\r\n".encode())
        self.closed_reason = reason
        self.post_message(self.Closed(self, reason))

    @on(_DataReady)
    def _drain(self, message: TerminalView._DataReady) -> None:
        message.stop()
        if self._drain_due:
            return
        wait = self._last_drain + 1.0 / MAX_DRAINS_PER_SECOND - time.monotonic()
        if wait > 0:
            self._drain_due = True
            self.set_timer(wait, self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        """Parse queued output now and refresh the rows it changed (UI thread)."""
        self._drain_due = False
        self._last_drain = time.monotonic()
        with self._pending_lock:
            chunks, self._pending = self._pending, []
        if chunks:
            self._stream.feed(b"".join(chunks))
            if self._screen.responses:
                answers, self._screen.responses = self._screen.responses, []
                self._send("".join(answers).encode())
            # New output brings a scrolled-back view home, as terminals do.
            if self._scroll_offset:
                self._scroll_offset = 0
                self._screen.dirty.update(range(self._screen.lines))
        self._refresh_dirty()

    def _refresh_dirty(self) -> None:
        screen = self._screen
        dirty = set(screen.dirty)
        screen.dirty.clear()
        cursor_row = None if screen.cursor.hidden else screen.cursor.y
        if cursor_row != self._cursor_row:
            for row in (self._cursor_row, cursor_row):
                if row is not None:
                    dirty.add(row)
            self._cursor_row = cursor_row
        if not dirty:
            return
        width = self.size.width
        for row in dirty:
            self._strips.pop(row, None)
            view_row = row + self._scroll_offset
            if 0 <= view_row < screen.lines:
                self.refresh(Region(0, view_row, width, 1))

    # -- what the screen shows (also used by tests) --------------------------

    @property
    def display_lines(self) -> list[str]:
        """The visible screen as text, one string per row (trailing blanks kept)."""
        return [self.render_line(y).text for y in range(self._screen.lines)]

    @property
    def screen_text(self) -> str:
        """The live screen (not the scrollback) as text with trailing blanks stripped."""
        return "\n".join(line.rstrip() for line in self._screen.display).rstrip("\n")

    @property
    def history_text(self) -> str:
        """Scrollback plus live screen, as text."""
        rows = [self._row_text(row) for row in self._screen.history]
        rows.extend(line.rstrip() for line in self._screen.display)
        return "\n".join(rows).rstrip("\n")

    @property
    def cursor_position(self) -> tuple[int, int]:
        """(column, row) of the program's cursor on the live screen."""
        return self._screen.cursor.x, self._screen.cursor.y

    @property
    def terminal_size(self) -> tuple[int, int]:
        """(columns, lines) of the emulated screen."""
        return self._screen.columns, self._screen.lines

    def _row_text(self, row: dict[int, pyte.screens.Char]) -> str:
        return "".join(row[x].data if x in row else " " for x in range(self._screen.columns)).rstrip()

    # -- rendering -------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        screen = self._screen
        width = self.size.width or screen.columns
        if y >= screen.lines:
            return Strip.blank(width)
        if self._scroll_offset:
            return self._render_scrolled(y, width)
        strip = self._strips.get(y)
        if strip is None:
            strip = self._render_row(screen.buffer[y], y).adjust_cell_length(width)
            self._strips[y] = strip
        return strip

    def _render_scrolled(self, y: int, width: int) -> Strip:
        history = self._screen.history
        index = len(history) - self._scroll_offset + y
        if index < len(history):
            row = history[index]
        else:
            row = self._screen.buffer[index - len(history)]
        return self._render_row(row, None).adjust_cell_length(width)

    def _render_row(self, row: dict[int, pyte.screens.Char], y: int | None) -> Strip:
        """Turn one row of cells into segments, merging runs of equal style."""
        screen = self._screen
        cursor_x = screen.cursor.x if (y == self._cursor_row and self.has_focus) else -1
        default = screen.default_char
        segments: list[Segment] = []
        run: list[str] = []
        run_style: Style | None = None
        for x in range(screen.columns):
            char = row[x] if x in row else default
            if char.data == "":
                continue  # the stub cell after a wide character
            style = _char_style(char, cursor=x == cursor_x)
            if style is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = style
            run.append(char.data)
        if run:
            segments.append(Segment("".join(run), run_style))
        return Strip(segments)

    # -- size ------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size)

    def _apply_size(self, size: Size) -> None:
        columns, lines = max(size.width, 2), max(size.height, 1)
        if (columns, lines) != (self._screen.columns, self._screen.lines):
            self._screen.resize(lines=lines, columns=columns)
            self._strips.clear()
            self._scroll_offset = 0
            self.refresh()
        if self._reported_size != (columns, lines) and self.backend is not None:
            self._reported_size = (columns, lines)
            self.backend.resize(columns, lines)

    def attach(self, backend: TerminalBackend) -> None:
        """Connect (or reconnect) the far side; it learns the current size at once."""
        self.backend = backend
        self.closed_reason = None
        self._reported_size = None
        if self.size.width and self.size.height:
            self._apply_size(self.size)

    # -- input -----------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key in self.passthrough_keys or key in self.SCROLL_KEYS:
            await widget_on_key(self, event)
            return
        event.stop()
        event.prevent_default()
        if key in self.LEAVE_KEYS:
            self.screen.focus_next()
            return
        data = key_to_bytes(key, event.character,
                            application_cursor=_DECCKM in self._screen.mode)
        if data is not None:
            self._send(data)

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        text = event.text.replace("\r\n", "\r").replace("\n", "\r")
        if _BRACKETED_PASTE in self._screen.mode:  # bracketed paste, as the program asked
            text = f"\x1b[200~{text}\x1b[201~"
        self._send(text.encode())

    def _send(self, data: bytes) -> None:
        if self.backend is None or self.closed_reason is not None:
            return
        if self._scroll_offset:
            self.action_scroll_history(0)
        self.backend.write(data)

    def action_scroll_history(self, direction: int) -> None:
        """Page through the scrollback (-1 up, 1 down, 0 back to the live screen)."""
        page = max(self._screen.lines - 1, 1)
        if direction == 0:
            offset = 0
        else:
            offset = self._scroll_offset - direction * page
        offset = max(0, min(offset, len(self._screen.history)))
        if offset != self._scroll_offset:
            self._scroll_offset = offset
            self._strips.clear()
            self.refresh()

    def on_focus(self) -> None:
        self._redraw_cursor_row()

    def on_blur(self) -> None:
        self._redraw_cursor_row()

    def _redraw_cursor_row(self) -> None:
        if self._cursor_row is not None:
            self._screen.dirty.add(self._cursor_row)
        self._refresh_dirty()


class ShellPane(Vertical):
    """A bordered pane around a TerminalView: "shell: <node>" and its state in the title.

    The pane exists before its shell does (opening one takes a guest
    command): the owner calls `attach(backend, detail)` once it is open.
    """

    ALLOW_MAXIMIZE = True

    DEFAULT_CSS = """
    ShellPane {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        min-height: 6;
        &:focus-within { border: round $accent; }
        & > TerminalView { height: 1fr; }
    }
    """

    def __init__(self, machine: str, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.machine = machine

    def compose(self) -> ComposeResult:
        yield TerminalView()

    def on_mount(self) -> None:
        self.border_title = f"[b]shell[/b] {self.machine}"
        self.border_subtitle = "opening..."

    @property
    def view(self) -> TerminalView:
        return self.query_one(TerminalView)

    def attach(self, backend: TerminalBackend, detail: str = "") -> None:
        """The shell is open: keys go to `backend` from now on."""
        self.view.attach(backend)
        self.border_subtitle = f"{detail}  ctrl+]: leave" if detail else "ctrl+]: leave"
        self.view.focus()
