"""A virtualised view of one serial console: ANSI colours, bounded scrollback, follow mode.

The view stores raw lines only.  A line is decoded (`driver.terminal_text`:
text and SGR styles, nothing that could act on the terminal) the
first time it becomes visible and the result is cached, so absorbing a flood
costs a list extend per batch, and drawing costs only the lines on screen.
"""

from __future__ import annotations

import re
from typing import ClassVar, Iterable

from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Resize
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from widgets.ansi import AnsiLineDecoder, plain_line
from widgets.textual_hooks import scroll_update

plain_text = plain_line  # the name tests and older callers import

__all__ = ["ConsoleView", "DEFAULT_MAX_LINES", "plain_text"]

DEFAULT_MAX_LINES = 50_000

# Decoded lines kept per view: two screens' worth, at least STRIP_CACHE_SIZE.
# Each cached Strip holds seven small caches of its own, all objects the
# garbage collector walks while they are young; a larger cache lengthens
# those pauses without making a following view any faster (while a guest
# floods, every frame shows new lines anyway).  Measured (bench_keys.py
# --editor --trace): 256 per view made young collections of 8-10 ms,
# 64 about 4.5 ms.
STRIP_CACHE_SIZE = 64


class ConsoleView(ScrollView, can_focus=True):
    """Lines of one console, newest at the bottom.

    Follow mode keeps the newest line in view.  It stops as soon as the user
    scrolls up, and resumes when they scroll back to the bottom (or press End).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "Follow", id="console.follow", tooltip="Jump to the newest line and follow"),
        Binding("f3", "find_next", "Next match", id="console.find_next", show=False),
        Binding("shift+f3,f15", "find_previous", "Previous match", id="console.find_previous", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"console-view--match", "console-view--current-match"}

    DEFAULT_CSS = """
    ConsoleView {
        background: $surface;
        color: $foreground;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
        & > .console-view--match { background: $warning 40%; }
        & > .console-view--current-match { background: $warning; color: $background; }
    }
    """

    follow: reactive[bool] = reactive(True, init=False)
    """Keep the newest line in view as lines arrive."""

    class FollowChanged(Message):
        """Follow mode switched on or off (by scrolling or by key)."""

        def __init__(self, view: ConsoleView, follow: bool) -> None:
            super().__init__()
            self.view = view
            self.follow = follow

        @property
        def control(self) -> ConsoleView:
            return self.view

    def __init__(
        self,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self._lines: list[str] = []
        # Absolute number of the first kept line: lines are numbered from the
        # start of the console, so cache keys and search positions survive
        # the oldest lines being dropped.
        self._first_number = 0
        self._widest = 0
        self._strip_cache: LRUCache[int, Strip] = LRUCache(STRIP_CACHE_SIZE)
        # Built on first render and after every style change (theme, focus):
        # computing the widget's style is too slow to do per line.
        self._decoder: AnsiLineDecoder | None = None
        self._search: re.Pattern[str] | None = None
        self._current_match: int | None = None
        self.unseen_lines = 0
        """Lines that arrived while follow mode was off."""
        # Parked (not on screen): lines are only stored; sizes, scrolling and
        # repaints wait until the view is unparked (see `set_parked`).
        self._parked = False
        self._parked_dropped: int | None = None

    # -- content ----------------------------------------------------------

    @property
    def line_count(self) -> int:
        """Lines currently kept (at most `max_lines`)."""
        return len(self._lines)

    @property
    def total_lines(self) -> int:
        """Lines received since the console started, dropped ones included."""
        return self._first_number + len(self._lines)

    @property
    def lines(self) -> list[str]:
        """The kept raw lines, oldest first (a copy)."""
        return list(self._lines)

    def append_lines(self, lines: Iterable[str]) -> None:
        """Add lines at the bottom.  Call on the UI thread, ideally once per batch."""
        new = lines if isinstance(lines, list) else list(lines)
        if not new:
            return
        self._lines.extend(new)
        widest = max(map(len, new))
        if widest > self._widest:
            self._widest = widest
        dropped = len(self._lines) - self.max_lines
        if dropped > 0:
            del self._lines[:dropped]
            self._first_number += dropped
        if not self.follow:
            self.unseen_lines += len(new)
        self._content_changed(dropped=max(dropped, 0))

    def clear(self) -> None:
        self._first_number += len(self._lines)
        self._lines.clear()
        self._widest = 0
        self.unseen_lines = 0
        self._strip_cache.clear()
        self._set_virtual_size(Size(0, 0))
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def set_parked(self, parked: bool) -> None:
        """Park a view that is not on screen (its pane hidden), or bring it back.

        A parked view keeps taking every line but does none of the layout,
        scrolling or repaint work per batch; unparking catches up once, so
        the view shows its whole history and its follow state as if it had
        been on screen all along.
        """
        self._parked = parked
        if not parked and self._parked_dropped is not None:
            dropped, self._parked_dropped = self._parked_dropped, None
            self._content_changed(dropped)

    @property
    def parked(self) -> bool:
        return self._parked

    def _content_changed(self, dropped: int) -> None:
        if self._parked:
            self._parked_dropped = (self._parked_dropped or 0) + dropped
            return
        # `+ 1` leaves a blank column after the widest line.
        self._set_virtual_size(Size(self._widest + 1, len(self._lines)))
        if self.follow:
            self._scroll_to_newest()
        elif dropped:
            # Keep the lines the user is reading still under their eyes.
            self.scroll_target_y = self.scroll_y = max(0, self.scroll_y - dropped)
        self.refresh()

    def _set_virtual_size(self, size: Size) -> None:
        # Assigning `virtual_size` relayouts the whole screen (it is a
        # layout reactive); a console that grows every frame only needs its
        # own scrollbars updated (a private hook: widgets/textual_hooks.py).
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            scroll_update(self, size)

    def _scroll_to_newest(self) -> None:
        self.scroll_target_y = self.scroll_y = self.max_scroll_y

    # -- follow mode --------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        at_bottom = round(new_value) >= self.max_scroll_y
        if at_bottom != self.follow:
            self.follow = at_bottom

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.unseen_lines = 0
            self._scroll_to_newest()
        self.post_message(self.FollowChanged(self, follow))

    def on_resize(self, event: Resize) -> None:
        # Scrolling by a line must find every other visible line in the cache.
        self._strip_cache.maxsize = max(STRIP_CACHE_SIZE, 2 * event.size.height)
        if self.follow:
            self.call_after_refresh(self._scroll_to_newest)

    def action_follow(self) -> None:
        self.follow = True

    # -- search -------------------------------------------------------------

    @property
    def search_term(self) -> str | None:
        return self._search.pattern if self._search else None

    def set_search(self, term: str | None) -> None:
        """Highlight every case-insensitive occurrence of `term` (None clears)."""
        self._search = re.compile(re.escape(term), re.IGNORECASE) if term else None
        self._current_match = None
        self._strip_cache.clear()
        self.refresh()

    def find(self, term: str | None = None, *, backwards: bool = False) -> int | None:
        """Move to the next (or previous) line containing the search term.

        Searching continues from the current match; without one it starts at
        the bottom of the view (backwards) or at its top (forwards).  Stops following, so the match stays in
        view.  Returns the index (in kept lines) of the match, or None.
        """
        if term is not None and term != self.search_term:
            self.set_search(term)
        if self._search is None or not self._lines:
            return None
        count = len(self._lines)
        if self._current_match is not None and self._current_match >= self._first_number:
            start = self._current_match - self._first_number
        elif backwards:  # from just below the last visible line
            start = min(count, int(self.scroll_y) + self.scrollable_content_region.height)
        else:  # from just above the first visible line
            start = int(self.scroll_y) - 1
        order = range(start - 1, -1, -1) if backwards else range(start + 1, count)
        search = self._search.search
        for index in order:
            if search(plain_line(self._lines[index])):
                self._current_match = self._first_number + index
                self.follow = False
                self._strip_cache.clear()
                self._scroll_to_line(index)
                self.refresh()
                return index
        return None

    def _scroll_to_line(self, index: int) -> None:
        height = self.scrollable_content_region.height
        if not (self.scroll_y <= index < self.scroll_y + height):
            self.scroll_target_y = self.scroll_y = max(0, index - height // 2)

    def action_find_next(self) -> None:
        self.find()

    def action_find_previous(self) -> None:
        self.find(backwards=True)

    # -- rendering ----------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._decoder = None
        self._strip_cache.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = AnsiLineDecoder(self.rich_style)
        if index >= len(self._lines):
            return Strip.blank(width, decoder.base)
        return self._line_strip(index, decoder).crop_extend(scroll_x, scroll_x + width, decoder.base)

    def _line_strip(self, index: int, decoder: AnsiLineDecoder) -> Strip:
        number = self._first_number + index
        cached = self._strip_cache.get(number)
        if cached is not None:
            return cached
        line = self._lines[index]
        if self._search is not None and self._search.search(plain_line(line)):
            strip = self._highlighted_strip(line, number, decoder)
        else:
            strip = Strip(*decoder.decode(line))
        self._strip_cache[number] = strip
        return strip

    def _highlighted_strip(self, line: str, number: int, decoder: AnsiLineDecoder) -> Strip:
        # Only lines with a search match take the slower Rich path.
        assert self._search is not None
        text = decoder.text(line)
        component = "console-view--current-match" if number == self._current_match else "console-view--match"
        text.highlight_regex(self._search, self.get_component_rich_style(component))
        return Strip(text.render(self.app.console), text.cell_len)
