"""Every private Textual API vmtui relies on, in one place.

Textual is pinned (pyproject.toml).  The widgets need six of its private
hooks, each for a measured reason given where it is used; they are reached
only through this module, and tests/unit/test_textual_hooks.py checks each
one still exists and still does what vmtui relies on, so a Textual upgrade
that changes one fails there, loudly, instead of somewhere in a benchmark.

- `ScrollView._scroll_update(size)`: updates a scroll view's scrollbars for
  a new virtual size without a layout of the whole screen (ConsoleView).
- `Input._watch_value(value)`: the watcher that stores the text's width in
  the layout reactive `virtual_size` (SteadyInput overrides it).
- `Widget._on_key(event)`: dispatches a key to the widget's key handlers
  (TerminalView overrides it to send keys to the guest first).
- `App._keymap`: the keymap given to `App.set_keymap` (id -> keys), which
  Textual offers no public getter for (the help screen, palette entries).
- `TextArea._line_cache`: the cache of rendered lines, which `TextArea`
  empties on every edit; CodeArea puts a cache there that keeps the lines an
  edit did not change (a key re-renders one line, not the whole view).
- `TextArea._highlights`: the syntax highlights of each row (row -> spans),
  part of what a rendered line depends on (CodeArea's cache key).

One hook changes Textual's behaviour rather than reading it:
`end_strip_self_references()`.  `Strip.crop_extend` and `Strip.divide`
cache their result in the strip itself, and when the result is the strip
itself (a crop of the whole line, a divide with one cut at its end, which is
what the compositor asks of nearly every line it draws) the strip holds a
reference to itself.  Such a strip, its seven caches and their dicts are
freed only by the cyclic garbage collector, never by reference counting:
with two consoles flooding that was about 18,000 objects a second, young
collections of 10-20 ms and the tail of the keys' latency.  Returning the
strip without caching it gives callers the same object and leaves nothing
to collect (measured with gc.DEBUG_SAVEALL over 40 keys: 264,847 objects
reached only by the collector before, 15,266 after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from textual import events
from textual.app import App
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.cache import LRUCache
from textual.strip import Strip
from rich.style import Style
from textual.widgets import Input, TextArea

__all__ = [
    "end_strip_self_references",
    "input_watch_value",
    "keymap_of",
    "row_highlights",
    "scroll_update",
    "set_line_cache",
    "widget_on_key",
]

# Names of the private hooks (the test checks them against Textual).
SCROLL_UPDATE = "_scroll_update"
INPUT_VALUE_WATCHER = "_watch_value"
KEY_HANDLER = "_on_key"
APP_KEYMAP = "_keymap"
TEXT_AREA_LINE_CACHE = "_line_cache"
TEXT_AREA_HIGHLIGHTS = "_highlights"


def scroll_update(view: ScrollView, size: Size) -> None:
    """Refresh `view`'s scrollbars for `size` (already stored in `virtual_size`)."""
    view._scroll_update(size)


def input_watch_value(field: Input, value: str) -> None:
    """Run Textual's own watcher of `Input.value` (from an override of it)."""
    Input._watch_value(field, value)


async def widget_on_key(widget: Widget, event: events.Key) -> None:
    """Textual's own key handling for `widget` (from an override of `_on_key`)."""
    await Widget._on_key(widget, event)


def keymap_of(app: App[Any]) -> Mapping[str, str]:
    """The keymap `app` was given (binding id -> comma separated keys)."""
    keymap: Mapping[str, str] = getattr(app, APP_KEYMAP)
    return keymap


def set_line_cache(area: TextArea, cache: LRUCache[Any, Any]) -> None:
    """Make `cache` the one `area` keeps its rendered lines in."""
    setattr(area, TEXT_AREA_LINE_CACHE, cache)


def row_highlights(area: TextArea, row: int) -> tuple[Any, ...]:
    """The syntax highlight spans of `row` (0-based) as `area` will draw them."""
    highlights: Mapping[int, list[Any]] = getattr(area, TEXT_AREA_HIGHLIGHTS)
    return tuple(highlights.get(row, ()))


_strip_crop_extend = Strip.crop_extend
_strip_divide = Strip.divide


def _crop_extend(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    if start <= 0 and end == self.cell_length:
        return self  # what Textual returns too, without storing it in self
    return _strip_crop_extend(self, start, end, style)


def _divide(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    cuts = list(cuts)
    length = self.cell_length
    if [cut for cut in cuts if cut <= length] == [length]:
        return [self]
    return _strip_divide(self, cuts)


def end_strip_self_references() -> None:
    """Make Textual's strips stop caching themselves (see the module's docstring); idempotent."""
    Strip.crop_extend = _crop_extend  # type: ignore[method-assign]
    Strip.divide = _divide  # type: ignore[method-assign]
