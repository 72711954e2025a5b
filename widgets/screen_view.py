"""A VM's screen in the terminal, and the keyboard that goes with it.

`ScreenView` draws a picture with half-block cells: each cell is "▀" with
the upper pixel as foreground and the lower one as background, so a cell
holds two pixels and the picture keeps its shape (cells are about twice as
tall as wide).  Runs of equal cells share one segment: a text console on a
black screen is mostly one long run per row.  Every terminal shows this.

Where the terminal speaks a graphics protocol (Kitty's or Sixel), the pane
can show real pixels instead through `textual-image`; that library asks the
terminal what it supports, which only works before Textual owns the
terminal, so the application decides once at start (`pixel_image_class`).

Typed keys go to a `KeyTarget` (the machine) as QEMU `sendkey` names, Ctrl,
Alt and function keys included; Ctrl+] leaves the view, as in a shell pane.
The view knows nothing about where pictures come from: its owner calls
`show(image)` with a picture already scaled to `cell_pixels()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from PIL import Image
from rich.segment import Segment
from rich.style import Style
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from widgets.textual_hooks import widget_on_key

UPPER_HALF = "▀"


class KeyTarget(Protocol):
    """Where typed keys go: anything with `press_key(name)` (a QEMU key name or a character)."""

    def press_key(self, key: str) -> None: ...


# Textual key names -> QEMU `sendkey` names (the rest are the same or characters).
_QEMU_KEYS = {
    "enter": "ret",
    "escape": "esc",
    "backspace": "backspace",
    "tab": "tab",
    "space": "spc",
    "up": "up",
    "down": "down",
    "left": "left",
    "right": "right",
    "home": "home",
    "end": "end",
    "pageup": "pgup",
    "pagedown": "pgdn",
    "insert": "insert",
    "delete": "delete",
    **{f"f{n}": f"f{n}" for n in range(1, 13)},
}
# Textual names of punctuation keys pressed with a modifier -> US-layout QEMU names.
_PUNCTUATION_NAMES = {
    "minus": "minus", "equals_sign": "equal", "left_square_bracket": "bracket_left",
    "right_square_bracket": "bracket_right", "semicolon": "semicolon", "apostrophe": "apostrophe",
    "grave_accent": "grave_accent", "backslash": "backslash", "comma": "comma",
    "full_stop": "dot", "slash": "slash",
}
_MODIFIERS = {"ctrl": "ctrl", "alt": "alt", "shift": "shift", "meta": "alt"}
LEAVE_KEY = "ctrl+right_square_bracket"


def qemu_key(key: str, character: str | None) -> str | None:
    """The `sendkey` argument for a Textual key event, or None if it has none.

    A plain printable character is passed as itself (the machine maps it to
    a key with shift where needed, as NixOS's `send_key` does); keys with
    Ctrl or Alt become `ctrl-c`, `alt-f2`, `ctrl-alt-delete`.
    """
    *modifiers, base = key.split("+")
    if not modifiers and character is not None and len(character) == 1 and character.isprintable():
        return "spc" if character == " " else character
    if base in _QEMU_KEYS:
        name = _QEMU_KEYS[base]
    elif len(base) == 1 and base.isalnum():
        name = base.lower()
    elif base in _PUNCTUATION_NAMES:
        name = _PUNCTUATION_NAMES[base]
    else:
        return None
    prefix = [_MODIFIERS[m] for m in modifiers if m in _MODIFIERS]
    if len(prefix) != len(modifiers):
        return None
    if len(base) == 1 and base.isupper() and "shift" not in prefix:
        prefix.append("shift")
    return "-".join([*prefix, name])


def fit_cells(width: int, height: int, columns: int, rows: int) -> tuple[int, int]:
    """Pixels of the largest half-block picture of this aspect that fits columns x rows cells."""
    if width <= 0 or height <= 0 or columns <= 0 or rows <= 0:
        return (0, 0)
    scale = min(columns / width, (rows * 2) / height)
    return max(1, int(width * scale)), max(2, int(height * scale) // 2 * 2)


def halfblock_strips(image: Image.Image) -> list[Strip]:
    """One strip per two pixel rows of `image` (an RGB picture already at cell size)."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    data = rgb.tobytes()
    strips: list[Strip] = []
    styles: dict[tuple[int, int, int, int, int, int], Style] = {}
    row_bytes = width * 3
    for top in range(0, height - 1, 2):
        upper = data[top * row_bytes : (top + 1) * row_bytes]
        lower = data[(top + 1) * row_bytes : (top + 2) * row_bytes]
        segments: list[Segment] = []
        run = 0
        run_key: tuple[int, int, int, int, int, int] | None = None
        for x in range(0, row_bytes, 3):
            key = (upper[x], upper[x + 1], upper[x + 2], lower[x], lower[x + 1], lower[x + 2])
            if key != run_key and run:
                segments.append(Segment(UPPER_HALF * run, _style(styles, run_key)))
                run = 0
            run_key = key
            run += 1
        if run:
            segments.append(Segment(UPPER_HALF * run, _style(styles, run_key)))
        strips.append(Strip(segments, width))
    return strips


def _style(cache: dict[tuple[int, int, int, int, int, int], Style], key: Any) -> Style:
    style = cache.get(key)
    if style is None:
        r1, g1, b1, r2, g2, b2 = key
        style = Style(color=f"#{r1:02x}{g1:02x}{b1:02x}", bgcolor=f"#{r2:02x}{g2:02x}{b2:02x}")
        cache[key] = style
    return style


class ScreenView(Widget, can_focus=True):
    """The picture, drawn in half-block cells; typed keys go to the target."""

    DEFAULT_CSS = """
    ScreenView {
        width: 1fr;
        height: 1fr;
        background: black;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.target: KeyTarget | None = None
        self._strips: list[Strip] = []
        self._picture_width = 0
        # Frames drawn since the view was made (for tests and the benchmark).
        self.frames_shown = 0
        # Told when the view appears on or leaves the screen, and when its
        # size changes: its owner polls the machine only while it is seen.
        self.visibility_changed: Callable[[bool], None] | None = None
        self.resized: Callable[[], None] | None = None

    def on_show(self) -> None:
        if self.visibility_changed is not None:
            self.visibility_changed(True)

    def on_hide(self) -> None:
        if self.visibility_changed is not None:
            self.visibility_changed(False)

    def on_unmount(self) -> None:
        if self.visibility_changed is not None:
            self.visibility_changed(False)

    def on_resize(self) -> None:
        if self.resized is not None:
            self.resized()

    def cell_pixels(self, width: int, height: int) -> tuple[int, int]:
        """The picture size `show` wants for a screen of width x height pixels."""
        return fit_cells(width, height, self.size.width, self.size.height)

    def show(self, image: Image.Image) -> None:
        """Draw `image` (sized with `cell_pixels`); call on the UI thread."""
        self._strips = halfblock_strips(image)
        self._picture_width = image.width
        self.frames_shown += 1
        self.refresh()

    def clear(self) -> None:
        self._strips = []
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y >= len(self._strips):
            return Strip.blank(width)
        strip = self._strips[y]
        # Centre the picture horizontally.
        left = max(0, (width - self._picture_width) // 2)
        if left:
            strip = Strip([Segment(" " * left), *strip], left + strip.cell_length)
        return strip.adjust_cell_length(width)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return container.height

    async def _on_key(self, event: events.Key) -> None:
        if event.key == LEAVE_KEY:
            event.stop()
            event.prevent_default()
            self.screen.focus_next()
            return
        name = qemu_key(event.key, event.character)
        if name is None or self.target is None:
            await widget_on_key(self, event)
            return
        event.stop()
        event.prevent_default()
        self.target.press_key(name)

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        if self.target is None:
            return
        for character in event.text.replace("\r\n", "\n"):
            self.target.press_key(character)


class ScreenPane(Vertical):
    """A bordered pane around a ScreenView: "screen: <node>", size and keys in the title."""

    ALLOW_MAXIMIZE = True

    DEFAULT_CSS = """
    ScreenPane {
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        min-height: 8;
        &:focus-within { border: round $accent; }
        & > ScreenView { height: 1fr; }
        & > .pixels { height: 1fr; width: 1fr; }
    }
    """

    def __init__(
        self,
        machine: str,
        *,
        pixel_class: type[Widget] | None = None,
        id: str | None = None,  # noqa: A002
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.machine = machine
        self._pixel_class = pixel_class
        self.screen_size: tuple[int, int] | None = None
        # Made here, not in compose: the owner wires it up right after mounting.
        self._view = ScreenView()
        # The newest picture offered from another thread, not yet drawn.
        self._offer_lock = threading.Lock()
        self._offered: tuple[tuple[int, int], Image.Image] | None = None

    class PictureOffered(Message):
        """A picture waits in the pane's slot."""

        def __init__(self, pane: ScreenPane) -> None:
            super().__init__()
            self.pane = pane

        @property
        def control(self) -> ScreenPane:
            return self.pane

    class MessageOffered(Message):
        """A line to show instead of a picture (the screen cannot be read)."""

        def __init__(self, pane: ScreenPane, text: str) -> None:
            super().__init__()
            self.pane = pane
            self.text = text

        @property
        def control(self) -> ScreenPane:
            return self.pane

    def offer(self, screen_size: tuple[int, int], picture: Image.Image) -> None:
        """Thread safe, never blocks: draw this picture soon.

        Pictures offered faster than the UI draws them replace each other:
        the UI draws only the newest, and the offering thread never waits.
        """
        with self._offer_lock:
            pending = self._offered is not None
            self._offered = (screen_size, picture)
        if not pending:
            self.post_message(self.PictureOffered(self))

    def offer_message(self, text: str) -> None:
        """Thread safe: say why there is no picture."""
        self.post_message(self.MessageOffered(self, text))

    @on(PictureOffered)
    def _draw_offered(self, _message: PictureOffered) -> None:
        with self._offer_lock:
            offered, self._offered = self._offered, None
        if offered is not None:
            self.show_frame(*offered)

    @on(MessageOffered)
    def _say_offered(self, message: MessageOffered) -> None:
        self.show_message(message.text)

    def compose(self) -> ComposeResult:
        yield self._view
        if self._pixel_class is not None:
            pixels = self._pixel_class(classes="pixels")
            pixels.display = False
            yield pixels

    def on_mount(self) -> None:
        self.border_title = f"[b]{self.machine}[/b] · screen"
        self.border_subtitle = "waiting for a picture..."

    @property
    def view(self) -> ScreenView:
        return self._view

    @property
    def uses_pixels(self) -> bool:
        return self._pixel_class is not None

    def show_frame(self, screen_size: tuple[int, int], picture: Image.Image) -> None:
        """A new picture of a screen_size screen: half-blocks, or real pixels if the terminal can."""
        if screen_size != self.screen_size:
            self.screen_size = screen_size
            self.border_subtitle = f"{screen_size[0]}×{screen_size[1]}  ctrl+]: leave"
        if self._pixel_class is not None:
            pixels = self.query_one(".pixels")
            pixels.display = True
            pixels.image = picture  # type: ignore[attr-defined]
            # The half-block view stays: it holds the focus and takes the keys.
            self.view.styles.height = 1
            self.view.frames_shown += 1
            return
        self.view.show(picture)

    def show_message(self, message: str) -> None:
        self.border_subtitle = message


class ScreenPictureScreen(ModalScreen[None]):
    """One recorded screen picture, full size in half-blocks; any of Escape, q, Enter closes it."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    ScreenPictureScreen {
        align: center middle;
        & > Vertical {
            width: 90%;
            height: 90%;
            border: round $accent;
            border-title-color: $text;
            border-subtitle-color: $text-muted;
        }
    }
    """

    def __init__(self, title: str, machine: str, png: bytes) -> None:
        super().__init__()
        self._title = title
        self._machine = machine
        import io

        with Image.open(io.BytesIO(png)) as picture:
            self._picture = picture.convert("RGB")

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"[b]{self._machine}[/b]: {self._title}"
            box.border_subtitle = "escape: close"
            view = ScreenView()
            view.can_focus = False  # a recorded picture takes no keys
            yield view

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)

    def on_mount(self) -> None:
        self.call_after_refresh(self._draw)

    def _draw(self) -> None:
        view = self.query_one(ScreenView)
        size = view.cell_pixels(self._picture.width, self._picture.height)
        if size[0] > 0:
            view.show(self._picture.resize(size, Image.Resampling.BOX))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
