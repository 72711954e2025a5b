"""Ten nodes on one screen: the overview, the focused consoles, and the keys that switch them.

The app is fed recorded driver events (no VMs); `scenes.fleet` gives ten
nodes in every state with varied output, on a clock the test moves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

import scenes
from driver.events import MachineState, MachineStateChanged
from vmtui.app import VmtuiApp
from vmtui.bridge import Batch
from widgets.console_column import ColumnPlan, ConsoleColumn, plan_column
from widgets.console_pane import ConsolePane
from widgets.console_view import ConsoleView
from widgets.machine_status import MachineStatus
from widgets.node_overview import NodeActivity, NodeOverview, node_key

SIZES = [(80, 24), (140, 42), (200, 60)]
# The node keys, in node order.
FLEET_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]


def overview_rows(app: VmtuiApp) -> list[str]:
    """The overview's rows as drawn (plain text, one per visible row)."""
    return app.query_one(NodeOverview).render().plain.split("\n")


def shown_panes(app: VmtuiApp) -> list[ConsolePane]:
    return [pane for pane in app.panes if pane.display]


async def fleet(pilot: Pilot[int], clock: scenes.FrozenClock) -> VmtuiApp:
    app = pilot.app
    assert isinstance(app, VmtuiApp)
    await pilot.pause()
    scenes.fleet(app, clock)
    await pilot.pause(0.3)  # the overview redraws on its timer
    return app


def row_of(app: VmtuiApp, name: str) -> str:
    return next(row for row in overview_rows(app) if f" {name} " in row)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_node_has_a_row_and_the_focused_console_is_readable(tmp_path: Path, size: tuple[int, int]) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=size) as pilot:
        await fleet(pilot, clock)
        column = app.query_one(ConsoleColumn)
        overview = app.query_one(NodeOverview)
        assert not column.plan.stacked and overview.display
        # Every row fits: the overview is as tall as the node count, and on screen.
        assert overview.content_size.height >= len(scenes.FLEET)
        assert app.screen.region.contains_region(overview.region)
        rows = overview_rows(app)
        for index, name in enumerate(scenes.FLEET):
            assert rows[index].startswith(f"{node_key(index)} ") and f" {name} " in rows[index]
        # Hidden panes are not laid out; the shown ones are tall enough to read.
        shown = shown_panes(app)
        assert len(shown) == column.plan.shown >= 1
        for pane in shown:
            assert pane.view.size.height >= 6, f"{pane.machine}: {pane.view.size}"
        if size == (200, 60):
            assert len(shown) >= 2
        assert {pane.machine for pane in app.panes if not pane.display} == {
            pane.machine for pane in app.panes} - {pane.machine for pane in shown}


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_each_key_shows_its_node_with_the_whole_history(tmp_path: Path, size: tuple[int, int]) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=size) as pilot:
        await fleet(pilot, clock)
        # While hidden, node 5 (web1, the flood) keeps getting lines.
        app.apply_batch(Batch(console={"web1": ["web1: written while hidden"]}))
        for number, key in enumerate(FLEET_KEYS, 1):
            await pilot.press(key)
            await pilot.pause()
            pane = app.panes[number - 1]
            assert pane.display, f"key {key}: {pane.machine} is not shown"
            view = pane.view
            assert app.focused is view, f"key {key}: focus is on {app.focused}"
            assert view.total_lines == view.line_count  # nothing dropped
            assert view.follow and view.scroll_y == view.max_scroll_y
            assert app.query_one(NodeOverview).current == number - 1
        web1 = app.pane_for("web1").view
        assert web1.lines[-1] == "web1: written while hidden"
        assert web1.line_count == sum(40 * second for second in range(8)) + 1
        assert app.pane_for("client2").view.line_count == 0
        # ] and [ go round: from node 10 to 1, and back.
        await pilot.press("right_square_bracket")
        assert app.focused is app.panes[0].view
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert app.focused is app.panes[8].view and app.panes[8].display


async def test_enter_and_a_click_on_a_row_show_that_node(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(140, 42)) as pilot:
        await fleet(pilot, clock)
        overview = app.query_one(NodeOverview)
        overview.focus()
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()
        assert app.focused is app.panes[3].view and app.panes[3].display
        # Row 7 (web3) sits below the top border.
        assert await pilot.click(NodeOverview, offset=(4, 1 + 6))
        await pilot.pause()
        assert app.focused is app.panes[6].view and app.panes[6].display
        assert not app.panes[3].display  # one focused console at this height


async def test_two_consoles_at_200x60_keep_the_last_two_chosen(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(200, 60)) as pilot:
        await fleet(pilot, clock)
        await pilot.press("5", "8")
        await pilot.pause()
        assert [pane.machine for pane in shown_panes(app)] == ["web1", "cache"]
        await pilot.press("3")
        await pilot.pause()
        assert [pane.machine for pane in shown_panes(app)] == ["db1", "cache"]
        assert app.query_one(NodeOverview).shown == frozenset({2, 7})


async def test_rows_show_state_accelerator_activity_and_the_last_line(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(200, 60)) as pilot:
        await fleet(pilot, clock)
        assert row_of(app, "db1").split()[3:6] == ["-", "exit", "1"]
        assert "db1: panic: checksum mismatch" in row_of(app, "db1")
        assert row_of(app, "client1").split()[3:5] == ["tcg", "booting"]
        assert row_of(app, "web2").split()[3:5] == ["tcg", "up"]
        assert row_of(app, "client2").split()[3:6] == ["-", "created", "no"]
        assert row_of(app, "web3").rstrip().endswith(" web3: line 359")
        # web1 floods: a full sparkline, the marker and its rate (its last 5 s: 120+160+200+240+280 lines).
        web1 = row_of(app, "web1")
        assert "▅" in web1 and "▅" not in row_of(app, "db2")  # 100+ lines a second against 1 or 2
        assert "•" in web1 and " 200/s" in web1
        assert "web1 line 1119" in web1
        # dns printed only in its first seconds: no marker, no rate.
        assert "•" not in row_of(app, "dns") and "/s" not in row_of(app, "dns")
        # Time passes without output: the markers go, the sparklines drain.
        clock.now += 20
        await pilot.pause(0.4)
        assert not any("•" in row or "/s" in row for row in overview_rows(app))
        assert not any(cell in row for row in overview_rows(app) for cell in "▁▂▃▄▅▆▇█")


async def test_guest_bytes_in_a_last_line_are_only_text(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(200, 60)) as pilot:
        await fleet(pilot, clock)
        app.apply_batch(Batch(console={"cache": ["\x1b]0;owned\x07\x1b[2J\x1bc\x1b[31mred\x1b[0m tail\x07", ""]}))
        await pilot.pause(0.4)
        row = row_of(app, "cache")
        assert row.rstrip().endswith(" red tail")
        assert not any(ord(char) < 32 for row in overview_rows(app) for char in row)


async def test_a_node_the_script_makes_gets_a_row_and_the_plan_follows_the_height(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(140, 42)) as pilot:
        await fleet(pilot, clock)
        app.apply_event(MachineStateChanged("late", MachineState.BOOTING, pid=5000, accelerator="tcg"))
        app.apply_batch(Batch(console={"late": ["late: hello"]}))
        await pilot.pause(0.3)
        assert len(app.panes) == 11
        assert overview_rows(app)[-1].startswith("  ") and " late " in overview_rows(app)[-1]
        await pilot.press("left_square_bracket")  # from node 1 back round to node 11
        assert app.focused is app.pane_for("late").view
        # Taller: two consoles; shorter again: one, the current one kept.
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        assert len(shown_panes(app)) == 2 and app.pane_for("late").display
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert [pane.machine for pane in shown_panes(app)] == ["late"]


async def test_a_few_nodes_stay_stacked(tmp_path: Path) -> None:
    app = scenes.scene_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        scenes.running(app)
        await pilot.pause()
        assert app.query_one(ConsoleColumn).plan.stacked
        assert not app.query_one(NodeOverview).display
        assert all(pane.display for pane in app.panes)
        await pilot.press("2")
        assert app.focused is app.panes[1].query_one(ConsoleView)


def test_the_plan() -> None:
    assert plan_column(3, 10) == ColumnPlan(0, 3)  # up to three nodes: always stacked
    assert plan_column(5, 40) == ColumnPlan(0, 5)
    assert plan_column(10, 20) == ColumnPlan(12, 1)
    assert plan_column(10, 38) == ColumnPlan(12, 1)
    assert plan_column(10, 56) == ColumnPlan(12, 2)
    assert plan_column(12, 16) == ColumnPlan(10, 1)  # the overview gives way to a readable console


def test_activity_counts_lines_per_second_and_keeps_the_last_line() -> None:
    activity = NodeActivity()
    activity.note(["a", "b"], 10.2)
    activity.note(["c"], 10.9)
    activity.note(["d", "\x1b[1m  spaced   out \x1b[0m", "   "], 12.5)
    assert activity.counts(12.9, 4) == [0, 3, 0, 3]
    assert activity.rate(12.9, 5) == 6 / 5
    assert activity.last_line == "spaced out"
    assert activity.recent(14.4) and not activity.recent(14.6)
    activity.note(["[   12.345678] eth1: link up"], 13.0)
    assert activity.last_line == "eth1: link up"  # the console keeps the kernel's time; the row has no room


def test_status_keeps_the_accelerator_of_the_running_process() -> None:
    status = MachineStatus("a")
    status.apply(MachineStateChanged("a", MachineState.BOOTING, pid=1, detail="starting QEMU"))
    status.apply(MachineStateChanged("a", MachineState.BOOTING, pid=1, accelerator="tcg"))
    status.apply(MachineStateChanged("a", MachineState.CONNECTED, pid=1))
    assert status.accelerator == "tcg"
    assert "tcg" in status.markup(None)
    status.apply(MachineStateChanged("a", MachineState.EXITED, exit_code=0))
    assert "tcg" not in status.markup(None)
    status.apply(MachineStateChanged("a", MachineState.BOOTING, pid=2))
    assert status.accelerator is None


async def test_a_hidden_console_keeps_the_place_its_reader_left(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(140, 42)) as pilot:
        await fleet(pilot, clock)
        web1 = app.pane_for("web1")
        await pilot.press("5")
        web1.view.scroll_to(y=0, animate=False)
        await pilot.pause()
        assert not web1.view.follow
        await pilot.press("6")
        await pilot.pause()
        assert not web1.display and web1.view.parked
        app.apply_batch(Batch(console={"web1": [f"web1: late line {n}" for n in range(30)]}))
        await pilot.pause()
        await pilot.press("5")
        await pilot.pause()
        assert web1.display and not web1.view.parked
        assert not web1.view.follow and web1.view.scroll_y == 0
        assert web1.view.unseen_lines == 30
        assert "30 new" in str(web1.border_subtitle)
        await pilot.press("end")
        await pilot.pause()
        assert web1.view.follow and web1.view.scroll_y == web1.view.max_scroll_y


async def test_the_palette_entry_of_a_hidden_node_shows_it(tmp_path: Path) -> None:
    clock = scenes.FrozenClock()
    app = scenes.fleet_app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await fleet(pilot, clock)
        web3 = app.pane_for("web3")
        assert not web3.display
        entry = next(command for command in app.get_system_commands(app.screen) if command.title == "Console: web3")
        entry.callback()
        await pilot.pause()
        assert web3.display and app.focused is web3.view
