"""One row per node: key, state, accelerator, console activity and last line.

With many nodes there is no room for a readable console each; this list
says at a glance which node boots, which floods, which went quiet, and which
number key shows its console.  It is redrawn on a timer (a few times a
second), never per console line: `note_lines` only counts.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

from textual import events
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.markup import escape
from textual.message import Message
from textual.widget import Widget

from driver.events import MachineState
from driver.terminal_text import plain_line
from widgets.machine_status import MachineStatus

Clock = Callable[[], float]

# How often the rows are redrawn (when something changed or time moved the
# activity on).
REFRESH_INTERVAL = 0.25
# A node that printed within this many seconds gets the activity marker.
RECENT_SECONDS = 2.0
# The activity sparkline: one cell per second, the newest on the right.
SPARK_SECONDS = 8
# Lines per second from which each sparkline level starts (roughly x3 a step,
# so a boot's trickle and a flood both show, and rows compare at a glance).
_SPARK_LEVELS = ((1, "▁"), (3, "▂"), (10, "▃"), (30, "▄"), (100, "▅"), (300, "▆"), (1000, "▇"), (3000, "█"))
# A kernel log line's timestamp: the row has no room for it, the console has.
_KERNEL_TIME = re.compile(r"^\[\s*\d+\.\d+\]\s*")
# Row widths (columns) from which there is room for the rate and a longer
# sparkline, and from which the state is also spelled out.
MEDIUM_ROW = 44
WIDE_ROW = 70

_STATE_WORD = {
    MachineState.CREATED: "created",
    MachineState.BOOTING: "booting",
    MachineState.CONNECTED: "up",
    MachineState.SHUTTING_DOWN: "stopping",
    MachineState.EXITED: "exited",
}


def node_key(index: int) -> str:
    """The number key of the node at `index` (0-based): 1 … 9, then 0; none past ten."""
    if index < 9:
        return str(index + 1)
    return "0" if index == 9 else " "


def spark_cell(count: int) -> str:
    cell = " "
    for threshold, glyph in _SPARK_LEVELS:
        if count >= threshold:
            cell = glyph
    return cell


@dataclass
class NodeActivity:
    """Console lines per whole second over the last few seconds, and the last line."""

    # (second, lines that arrived in it), oldest first.
    seconds: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=SPARK_SECONDS + 1))
    last_line: str = ""
    last_at: float | None = None
    total: int = 0

    def note(self, lines: list[str], now: float) -> None:
        if not lines:
            return
        second = int(now)
        if self.seconds and self.seconds[-1][0] == second:
            self.seconds[-1] = (second, self.seconds[-1][1] + len(lines))
        else:
            self.seconds.append((second, len(lines)))
        self.total += len(lines)
        self.last_at = now
        # The last line that says something: a blank line ends many bursts.
        for line in reversed(lines):
            # Runs of blanks (a kernel timestamp's padding) would waste the few columns there are.
            text = _KERNEL_TIME.sub("", " ".join(plain_line(line).split()))
            if text:
                self.last_line = text
                break

    def counts(self, now: float, width: int) -> list[int]:
        """Lines per second for the `width` seconds up to `now`, oldest first."""
        newest = int(now)
        by_second = dict(self.seconds)
        return [by_second.get(second, 0) for second in range(newest - width + 1, newest + 1)]

    def rate(self, now: float, window: int = 5) -> float:
        """Mean lines per second over the last `window` whole seconds (the current one included)."""
        return sum(self.counts(now, window)) / window

    def recent(self, now: float) -> bool:
        return self.last_at is not None and now - self.last_at <= RECENT_SECONDS

    def active(self, now: float) -> bool:
        """Whether the sparkline or marker would still change as time passes."""
        return self.last_at is not None and now - self.last_at <= SPARK_SECONDS + 1


@dataclass
class _Node:
    status: MachineStatus
    activity: NodeActivity = field(default_factory=NodeActivity)


def format_rate(rate: float) -> str:
    """Lines per second in four cells: ` 0.4`, ` 2.5`, `  37`, `9999`, ` 10k`."""
    if rate == 0:
        return "    "
    if rate < 10:
        return f"{rate:4.1f}"
    return f"{rate:4.0f}" if rate < 10_000 else " 10k"


class NodeOverview(Widget, can_focus=True):
    """A bordered list of nodes; Enter or a click selects one (`Selected`).

    The rows share each node's `MachineStatus` with whoever folds the state
    events (call `refresh_soon` after a change).  `shown` marks the nodes
    whose consoles are on screen, `current` the one a node key acts on.
    `clock` gives monotonic seconds; None freezes time at 0 (screenshots).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", id="overview.up", show=False, tooltip="Move to the node above"),
        Binding("down", "cursor(1)", "Down", id="overview.down", show=False, tooltip="Move to the node below"),
        Binding("enter", "select", "Show", id="overview.select", tooltip="Show the highlighted node's console"),
    ]

    DEFAULT_CSS = """
    NodeOverview {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        background: $surface;
        padding: 0 0;
        &:focus { border: round $accent; }
    }
    """

    class Selected(Message):
        """A row was chosen (Enter or a click); `index` counts from 0."""

        def __init__(self, overview: NodeOverview, index: int) -> None:
            super().__init__()
            self.overview = overview
            self.index = index

        @property
        def control(self) -> NodeOverview:
            return self.overview

    def __init__(
        self,
        statuses: Iterable[MachineStatus] = (),
        *,
        clock: Clock | None = time.monotonic,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._entries = [_Node(status) for status in statuses]
        self._clock = clock
        self._dirty = True
        self.shown: frozenset[int] = frozenset()
        self.current = 0
        self.cursor = 0
        # First row drawn, when there are more nodes than rows.
        self._top = 0

    def on_mount(self) -> None:
        self.border_title = "Nodes"
        self.set_interval(REFRESH_INTERVAL, self._tick)

    # -- content --------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self._entries)

    def add_node(self, status: MachineStatus) -> None:
        self._entries.append(_Node(status))
        self.refresh(layout=True)

    def activity(self, index: int) -> NodeActivity:
        return self._entries[index].activity

    def note_lines(self, index: int, lines: list[str]) -> None:
        """Count a batch of console lines of node `index`; drawn at the next tick."""
        self._entries[index].activity.note(lines, self._now())
        self._dirty = True

    def refresh_soon(self) -> None:
        """Something a row shows changed (a state): drawn at the next tick."""
        self._dirty = True

    def set_marks(self, *, shown: Iterable[int], current: int) -> None:
        self.shown = frozenset(shown)
        self.current = current
        self.cursor = current
        self.refresh()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else 0.0

    def _tick(self) -> None:
        if not self.display:
            return  # hidden (few nodes): what changed is drawn once it shows
        now = self._now()
        if self._dirty or any(node.activity.active(now) for node in self._entries):
            self._dirty = False
            self.refresh()

    # -- keys and mouse -------------------------------------------------------------

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def action_cursor(self, step: int) -> None:
        if self._entries:
            self.cursor = max(0, min(len(self._entries) - 1, self.cursor + step))
            self.refresh()

    def action_select(self) -> None:
        if self._entries:
            self.post_message(self.Selected(self, self.cursor))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self._top + offset.y
        if 0 <= index < len(self._entries):
            self.cursor = index
            self.post_message(self.Selected(self, index))

    # -- drawing ------------------------------------------------------------------

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return max(1, len(self._entries))

    def render(self) -> Content:
        height = max(1, self.content_size.height)
        width = self.content_size.width
        # Keep the cursor's row on screen when not every row fits.
        if self.cursor < self._top:
            self._top = self.cursor
        elif self.cursor >= self._top + height:
            self._top = self.cursor - height + 1
        self._top = max(0, min(self._top, len(self._entries) - height))
        now = self._now()
        name_width = max((len(node.status.name) for node in self._entries), default=1)
        name_width = min(name_width, 16 if width >= MEDIUM_ROW else 10)
        rows = [
            self._row(index, self._entries[index], name_width, width, now)
            for index in range(self._top, min(len(self._entries), self._top + height))
        ]
        return Content("\n").join(rows)

    def _row(self, index: int, node: _Node, name_width: int, width: int, now: float) -> Content:
        status, activity = node.status, node.activity
        wide, medium = width >= WIDE_ROW, width >= MEDIUM_ROW
        key = node_key(index)
        key_style = "reverse $accent" if index in self.shown else "bold"
        name = status.name if len(status.name) <= name_width else status.name[: name_width - 1] + "…"
        name_style = "bold $accent" if index == self.current else "bold"
        accelerator = (status.accelerator or "?")[:3] if status.is_running else "-"
        failed = status.state is MachineState.EXITED and status.exit_code not in (None, 0)
        glyph = f"[$text-error]{status.glyph}[/]" if failed else status.glyph_markup()
        parts = [
            f"[{key_style}]{key}[/] ",
            f"{glyph} ",
            f"[{name_style}]{escape(name.ljust(name_width))}[/] ",
            f"[$text-muted]{escape(accelerator.ljust(3))}[/] ",
        ]
        if wide:
            word = _STATE_WORD[status.state]
            if status.state is MachineState.EXITED and status.exit_code is not None:
                word = f"exit {status.exit_code}"
            parts.append(f"[{'$text-error' if failed else status.colour}]{escape(word[:8].ljust(8))}[/] ")
        spark_width = SPARK_SECONDS if wide else 5 if medium else 3
        spark = "".join(spark_cell(count) for count in activity.counts(now, spark_width))
        marker = "[$text-success]•[/]" if activity.recent(now) else " "
        parts.append(f"[$accent]{spark}[/]{marker} ")
        if medium:
            rate = activity.rate(now)
            parts.append(f"[$text-muted]{format_rate(rate)}/s[/] " if rate else " " * 7)
        if activity.last_line:
            parts.append(f"[$text-muted]{escape(activity.last_line)}[/]")
        elif activity.total == 0:
            parts.append("[$text-muted i]no output yet[/]")
        row = Content.from_markup("".join(parts))
        if width > 0:
            row = row.truncate(width, ellipsis=True, pad=True)
        if index == self.cursor and self.has_focus:
            row = row.stylize("on $boost")
        return row
