"""The consoles of every node in one column: stacked panes, or an overview and focused panes.

A handful of nodes get a stacked pane each.  When the column's height cannot
give every node a usable pane, a `NodeOverview` lists them all and only the
most recently chosen consoles are shown, one or more as the height allows.
Hidden panes keep receiving every line (a shown pane has its whole history
and follow state) but are not laid out or drawn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from driver.events import MachineStateChanged
from widgets.console_pane import ConsolePane
from widgets.console_view import ConsoleView
from widgets.node_overview import NodeOverview

Clock = Callable[[], float]

# Rows (border included) below which a stacked pane shows too little to read.
STACKED_PANE_MIN_ROWS = 8
# Up to this many nodes are always stacked (the familiar layout), however short.
ALWAYS_STACKED = 3
# Rows each focused pane gets at least before a second one is shown.
FOCUSED_PANE_MIN_ROWS = 18
# A focused pane keeps at least this many rows when the overview would crowd it.
FOCUSED_PANE_FLOOR = 6


@dataclass(frozen=True)
class ColumnPlan:
    """How the column uses its height: `overview_rows` 0 means stacked panes."""

    overview_rows: int
    shown: int

    @property
    def stacked(self) -> bool:
        return self.overview_rows == 0


def plan_column(nodes: int, height: int) -> ColumnPlan:
    """Stacked panes while each gets `STACKED_PANE_MIN_ROWS`, else the overview and as many focused panes as fit."""
    if nodes <= ALWAYS_STACKED or height >= nodes * STACKED_PANE_MIN_ROWS:
        return ColumnPlan(0, nodes)
    # Every row plus the border, unless that leaves the focused pane too little.
    overview_rows = max(3, min(nodes + 2, height - FOCUSED_PANE_FLOOR))
    rest = height - overview_rows
    return ColumnPlan(overview_rows, max(1, min(nodes, rest // FOCUSED_PANE_MIN_ROWS)))


class ConsoleColumn(Vertical):
    """See the module docstring.  Nodes are numbered from 1 in the order given."""

    DEFAULT_CSS = """
    ConsoleColumn > NodeOverview { display: none; }
    ConsoleColumn.-overview > NodeOverview { display: block; }
    """

    def __init__(self, machines: Iterable[str], *, clock: Clock | None = time.monotonic, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._panes = [ConsolePane(machine, clock=clock, id=f"console-{index}") for index, machine in enumerate(machines, 1)]
        self.overview = NodeOverview([pane.status for pane in self._panes], clock=clock)
        # Node indexes, the most recently chosen first: the shown panes are its head.
        self._recent = list(range(len(self._panes)))
        self.plan = ColumnPlan(0, len(self._panes))

    def compose(self) -> ComposeResult:
        yield self.overview
        yield from self._panes

    def on_mount(self) -> None:
        self._apply_plan()

    def on_resize(self, event: events.Resize) -> None:
        self._apply_plan()

    # -- nodes ----------------------------------------------------------------

    @property
    def panes(self) -> list[ConsolePane]:
        return list(self._panes)

    @property
    def current(self) -> ConsolePane | None:
        """The node a per-node key acts on: the most recently chosen."""
        return self._panes[self._recent[0]] if self._recent else None

    def pane_for(self, machine: str) -> ConsolePane:
        """The node's pane; a node not seen before (the script made it) gets one."""
        for pane in self._panes:
            if pane.machine == machine:
                return pane
        pane = ConsolePane(machine, clock=self._clock, id=f"console-{len(self._panes) + 1}")
        self._panes.append(pane)
        self._recent.append(len(self._panes) - 1)
        self.overview.add_node(pane.status)
        self.mount(pane, after=self._panes[-2] if len(self._panes) > 1 else self.overview)
        self._apply_plan()
        return pane

    def append_lines(self, machine: str, lines: list[str]) -> None:
        pane = self.pane_for(machine)
        pane.append_lines(lines)
        self.overview.note_lines(self._panes.index(pane), lines)

    def apply_state(self, event: MachineStateChanged) -> None:
        self.pane_for(event.machine).apply_state(event)
        self.overview.refresh_soon()

    # -- choosing a node ------------------------------------------------------------

    def select(self, number: int) -> bool:
        """Show node `number` (from 1) and focus its console; False if there is none."""
        if not 1 <= number <= len(self._panes):
            return False
        self._bring_forward(number - 1)
        self._apply_plan()
        self._panes[number - 1].query_one(ConsoleView).focus()
        return True

    def step(self, delta: int) -> None:
        """Select the next (1) or previous (-1) node, wrapping around."""
        if self._panes:
            current = self._recent[0] if self._recent else 0
            self.select((current + delta) % len(self._panes) + 1)

    def _bring_forward(self, index: int) -> None:
        self._recent.remove(index)
        self._recent.insert(0, index)

    @on(NodeOverview.Selected)
    def _overview_selected(self, event: NodeOverview.Selected) -> None:
        event.stop()
        self.select(event.index + 1)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        pane = _pane_of(event.widget)
        if pane is not None and pane in self._panes:
            index = self._panes.index(pane)
            if index != self._recent[0]:
                self._bring_forward(index)
                self._mark_overview()

    # -- layout --------------------------------------------------------------------

    def _apply_plan(self) -> None:
        height = self.size.height
        if height <= 0:
            return  # not laid out yet: the first resize plans
        plan = plan_column(len(self._panes), height)
        self.plan = plan
        self.set_class(not plan.stacked, "-overview")
        if not plan.stacked:
            self.overview.styles.height = plan.overview_rows
        shown = set(self._recent[: plan.shown])
        for index, pane in enumerate(self._panes):
            pane.set_shown(index in shown)
        self._mark_overview()

    def _mark_overview(self) -> None:
        if self._recent:
            self.overview.set_marks(shown=self._recent[: self.plan.shown], current=self._recent[0])


def _pane_of(widget: Widget) -> ConsolePane | None:
    node: Widget | None = widget
    while node is not None:
        if isinstance(node, ConsolePane):
            return node
        parent = node.parent
        node = parent if isinstance(parent, Widget) else None
    return None
