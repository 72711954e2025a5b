"""widgets/line_cache.py: rendered rows are found only while their row is unchanged."""

from __future__ import annotations

from widgets.line_cache import RowKeyedCache


def test_an_entry_is_found_only_with_the_row_key_it_was_stored_under() -> None:
    cache: RowKeyedCache[str] = RowKeyedCache(8)
    cache.row_key = ("value = 1", ())
    cache[("place", 3)] = "drawn"
    assert cache.get(("place", 3)) == "drawn"
    assert ("place", 3) in cache
    cache.row_key = ("value = 12", ())  # the row's text changed: the same place is a miss
    assert cache.get(("place", 3)) is None
    assert ("place", 3) not in cache


def test_keep_lets_the_entries_survive_a_clear_and_only_then() -> None:
    cache: RowKeyedCache[str] = RowKeyedCache(8)
    cache.row_key = "row"
    cache.set("place", "drawn")
    with cache.keep():
        cache.clear()  # what TextArea does on every edit
    assert cache.get("place") == "drawn"
    cache.clear()  # a style change: everything is drawn anew
    assert cache.get("place") is None


def test_the_oldest_entries_go_first_when_full() -> None:
    cache: RowKeyedCache[int] = RowKeyedCache(2)
    for number in range(3):
        cache.row_key = number
        cache["place"] = number
    cache.row_key = 0
    assert cache.get("place") is None
    cache.row_key = 2
    assert cache.get("place") == 2
