"""widgets/line_anchors.py: breakpoints and marks follow their line through edits."""

from __future__ import annotations

from widgets.line_anchors import line_mapping, move_keyed, move_lines

OLD = ["a", "b", "c", "d"]


def test_a_line_inserted_above_moves_the_lines_below_it() -> None:
    mapping = line_mapping(OLD, ["a", "new", "b", "c", "d"])
    assert move_lines({1, 2, 4}, mapping) == {1, 3, 5}


def test_a_deleted_line_takes_its_breakpoint_and_the_rest_move_up() -> None:
    mapping = line_mapping(OLD, ["a", "c", "d"])
    assert move_lines({2, 3}, mapping) == {2}
    assert mapping[4] == 3


def test_a_line_split_in_two_keeps_its_anchor_on_the_first_half() -> None:
    mapping = line_mapping(["x", "bb", "y"], ["x", "b", "b", "y"])
    assert mapping == {1: 1, 2: 2, 3: 4}


def test_a_block_pasted_in_the_middle_of_repeated_lines_moves_what_follows() -> None:
    old = ["same", "same", "end"]
    new = ["same", "p1", "p2", "same", "end"]
    assert line_mapping(old, new)[3] == 5


def test_marks_keep_their_values_and_merging_lines_keeps_the_first() -> None:
    mapping = line_mapping(["a", "b", "c"], ["ab", "c"])
    assert move_keyed({1: "one", 2: "two", 3: "three"}, mapping) == {1: "one", 2: "three"}


def test_nothing_changed_maps_every_line_to_itself() -> None:
    assert line_mapping(OLD, list(OLD)) == {1: 1, 2: 2, 3: 3, 4: 4}
