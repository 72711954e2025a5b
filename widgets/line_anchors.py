"""Where lines went after an edit: breakpoints and marks follow their line.

`line_mapping(old, new)` compares two versions of a text by lines and
answers, for every old line number, the new one.  Typing, pasting, undo and
replace-all all look the same from here (two lists of lines), so one rule
keeps every anchor in step: lines before the edit stay, lines after it move
by the number of lines inserted or deleted, and lines inside the edited
region follow the line they match (or the region's first line when their
text was rewritten; a deleted line has no place).  Textual-free, unit tested on its own.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def line_mapping(old: Sequence[str], new: Sequence[str]) -> dict[int, int]:
    """Old 1-based line -> new 1-based line, for every line of `old` that still has a place."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    mapping = {line: line for line in range(1, prefix + 1)}
    delta = len(new) - len(old)
    for index in range(len(old) - suffix, len(old)):
        mapping[index + 1] = index + 1 + delta
    old_middle = old[prefix : len(old) - suffix]
    new_middle = new[prefix : len(new) - suffix]
    if old_middle:
        matched: dict[int, int] = {}
        if new_middle:
            matcher = difflib.SequenceMatcher(a=old_middle, b=new_middle, autojunk=False)
            for block in matcher.get_matching_blocks():
                for offset in range(block.size):
                    matched[block.a + offset] = block.b + offset
        for index in range(len(old_middle)):
            # A rewritten line lands on the first line of the edit; a deleted one is gone.
            target = matched.get(index, 0 if new_middle else -1)
            if target >= 0:
                mapping[prefix + index + 1] = prefix + target + 1
    return mapping


def move_lines(lines: Iterable[int], mapping: Mapping[int, int]) -> set[int]:
    """A set of line numbers after an edit (lines whose place is gone are dropped)."""
    return {mapping[line] for line in lines if line in mapping}


def move_keyed(values: Mapping[int, T], mapping: Mapping[int, int]) -> dict[int, T]:
    """A line-keyed mapping after an edit; when two lines merge, the first one's value stays."""
    moved: dict[int, T] = {}
    for line in sorted(values):
        if line in mapping:
            moved.setdefault(mapping[line], values[line])
    return moved
