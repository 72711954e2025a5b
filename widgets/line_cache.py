"""A cache of a text area's rendered lines that survives edits of other lines.

Textual's `TextArea` keys its cache of rendered lines by position (row,
cursor, selection, size) and empties it on every edit, since a key says
nothing of the text.  Typing one character then re-renders every visible
line, and highlights them again, while consoles flood beside it.

`RowKeyedCache` adds what a rendered row depends on besides its position
(`row_key`: the row's text, its highlight spans, the widths around it) to
every key, so an entry can only be found while its row is unchanged.  Then
the emptying an edit asks for is not needed, and `keep()` skips it around
an edit; every other `clear()` (a style or theme change, a new wrap width,
a load of new text) still empties it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from textual.cache import LRUCache

V = TypeVar("V")
_MISSING = object()


class RowKeyedCache(LRUCache[Hashable, V]):
    """An `LRUCache` whose keys are extended by `row_key`, set before each look-up of a row."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.row_key: Hashable = None
        self._keeping = 0

    @contextmanager
    def keep(self) -> Iterator[None]:
        """While this lasts, `clear()` keeps the entries (their keys already name their content)."""
        self._keeping += 1
        try:
            yield
        finally:
            self._keeping -= 1

    def clear(self) -> None:
        if not self._keeping:
            super().clear()

    def get(self, key: Hashable, default: Any = None) -> Any:
        return super().get((key, self.row_key), default)

    def set(self, key: Hashable, value: V) -> None:
        super().set((key, self.row_key), value)

    __setitem__ = set

    def __getitem__(self, key: Hashable) -> V:
        return super().__getitem__((key, self.row_key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__((key, self.row_key))

    def discard(self, key: Hashable) -> None:
        super().discard((key, self.row_key))
