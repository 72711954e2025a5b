"""The driver's nested log blocks as a tree, one branch per run of the script.

`must succeed: ...`, `waiting for unit ...` and subtests appear as they open,
get a ✓/✗ and their duration when they close, and show wait progress while
they run.  Selecting an entry that knows its script line asks to show it.
Screen pictures (a `screenshot()`, the screen a `wait_for_text()` matched
on) are entries of their block; selecting one shows the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text

from textual import on
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from driver.events import (
    BlockClosed,
    BlockOpened,
    Event,
    LogLevel,
    LogMessage,
    ScreenCaptured,
    ScriptFinished,
    ScriptStarted,
    WaitProgress,
)
from driver.terminal_text import plain_text
from widgets.machine_status import format_duration


@dataclass
class _Entry:
    """What a tree node stands for; its label is rebuilt from this."""

    title: str
    machine: str | None = None
    kind: str = "nested"
    script_line: int | None = None
    ok: bool | None = None  # None while open
    duration: float | None = None
    error: str | None = None
    waiting: str = ""
    # A screen picture (screenshot, or the screen wait_for_text matched on).
    screen: ScreenCaptured | None = None


_LEVEL_COMPONENT = {
    LogLevel.DEBUG: "debug",
    LogLevel.INFO: "info",
    LogLevel.WARNING: "warning",
    LogLevel.ERROR: "failed",
}


class Timeline(Tree[_Entry]):
    """A tree of runs and their log blocks."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--ok",
        "timeline--failed",
        "timeline--running",
        "timeline--machine",
        "timeline--duration",
        "timeline--debug",
        "timeline--info",
        "timeline--warning",
    }

    DEFAULT_CSS = """
    Timeline {
        background: $surface;
        padding: 0;
        border: none;
        & > .timeline--ok { color: $success; }
        & > .timeline--failed { color: $error; text-style: bold; }
        & > .timeline--running { color: $warning; }
        & > .timeline--machine { color: $accent; }
        & > .timeline--duration { color: $text-muted; }
        & > .timeline--debug { color: $text-disabled; }
        & > .timeline--info { color: $text-muted; }
        & > .timeline--warning { color: $warning; }
    }
    """

    class LineSelected(Message):
        """An entry that knows its script line was chosen."""

        def __init__(self, timeline: Timeline, line: int) -> None:
            super().__init__()
            self.timeline = timeline
            self.line = line

        @property
        def control(self) -> Timeline:
            return self.timeline

    MAX_RUNS = 20
    """Runs kept in the tree (the driver's own entries before the first run count as one)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("runs", id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 2
        self._block_nodes: dict[int, TreeNode[_Entry]] = {}
        self._open_blocks: list[int] = []
        self._run_node: TreeNode[_Entry] | None = None
        self._timeline_styles: dict[str, Style] = {}
        self._follow_target: TreeNode[_Entry] | None = None

    def block_node(self, block_id: int) -> TreeNode[_Entry] | None:
        """The tree node of a block of the current run (replay jumps from it)."""
        return self._block_nodes.get(block_id)

    # -- feeding ------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one driver event into the tree (other event types are ignored)."""
        if isinstance(event, ScriptStarted):
            self._start_run(event)
        elif isinstance(event, BlockOpened):
            self._open_block(event)
        elif isinstance(event, BlockClosed):
            self._close_block(event)
        elif isinstance(event, LogMessage):
            self._add_log_line(event)
        elif isinstance(event, WaitProgress):
            self._wait(event)
        elif isinstance(event, ScreenCaptured):
            self._add_screen(event)
        elif isinstance(event, ScriptFinished):
            self._finish_run(event)

    def _start_run(self, event: ScriptStarted) -> None:
        if self._run_node is not None:
            self._run_node.collapse()
        # Old runs fold away; the oldest go, so a long session stays light.
        while len(self.root.children) >= self.MAX_RUNS:
            self.root.children[0].remove()
        self._block_nodes.clear()
        self._open_blocks.clear()
        entry = _Entry(title=f"run {event.run_id}", kind="run", script_line=event.first_line)
        self._run_node = self.root.add(self._label(entry), data=entry, expand=True)
        self._follow(self._run_node)

    def _parent_node(self, parent_id: int | None) -> TreeNode[_Entry]:
        if parent_id is not None and parent_id in self._block_nodes:
            return self._block_nodes[parent_id]
        if self._run_node is None:
            # Log lines before the first run (creating the machines ...).
            entry = _Entry(title="driver", kind="driver")
            self._run_node = self.root.add(self._label(entry), data=entry, expand=True)
        return self._run_node

    def _open_block(self, event: BlockOpened) -> None:
        entry = _Entry(plain_text(event.title), event.machine, event.kind, event.script_line)
        parent = self._parent_node(event.parent_id)
        parent.allow_expand = True
        # No expander until a block has something inside it.
        node = parent.add(self._label(entry), data=entry, expand=True, allow_expand=False)
        self._block_nodes[event.block_id] = node
        self._open_blocks.append(event.block_id)
        self._follow(node)

    def _close_block(self, event: BlockClosed) -> None:
        node = self._block_nodes.get(event.block_id)
        if node is None or node.data is None:
            return
        entry = node.data
        entry.ok, entry.duration, entry.error, entry.waiting = event.ok, event.duration, event.error, ""
        node.set_label(self._label(entry))
        if event.block_id in self._open_blocks:
            self._open_blocks.remove(event.block_id)
        # Passed blocks fold away so the tree stays readable; failures stay open.
        if event.ok and node.children and entry.kind != "subtest":
            node.collapse()

    def _add_log_line(self, event: LogMessage) -> None:
        parent = self._block_nodes[self._open_blocks[-1]] if self._open_blocks else self._parent_node(None)
        parent.allow_expand = True
        prefix = f"{event.machine}: " if event.machine else ""
        # Messages quote command output and console tails: text only.
        message = plain_text(event.message)
        node = parent.add_leaf(Text(prefix + message, self._component_style(_LEVEL_COMPONENT[event.level])))
        self._follow(node)

    def _add_screen(self, event: ScreenCaptured) -> None:
        if event.block_id is not None and event.block_id in self._block_nodes:
            parent = self._block_nodes[event.block_id]
        elif self._open_blocks:
            parent = self._block_nodes[self._open_blocks[-1]]
        else:
            parent = self._parent_node(None)
        parent.allow_expand = True
        entry = _Entry(f"{event.title} ({event.width}×{event.height})", event.machine, "screen", screen=event)
        node = parent.add_leaf(self._label(entry), data=entry)
        self._follow(node)

    def _wait(self, event: WaitProgress) -> None:
        if not self._open_blocks:
            return
        node = self._block_nodes[self._open_blocks[-1]]
        if node.data is None:
            return
        limit = f" / {format_duration(event.timeout)}" if event.timeout else ""
        node.data.waiting = f"{format_duration(event.elapsed)}{limit}, {event.attempts} tries"
        node.set_label(self._label(node.data))

    def _finish_run(self, event: ScriptFinished) -> None:
        if self._run_node is None or self._run_node.data is None:
            return
        entry = self._run_node.data
        entry.ok = event.ok and not event.cancelled
        entry.duration = event.duration
        entry.error = "cancelled" if event.cancelled else event.error
        self._run_node.set_label(self._label(entry))

    def _follow(self, node: TreeNode[_Entry]) -> None:
        # Keep the newest entry in view unless the user is browsing the tree.
        # One scroll per refresh, to the newest node: a batch may add thousands.
        if self.has_focus:
            return
        pending = self._follow_target is not None
        self._follow_target = node
        if not pending:
            self.call_after_refresh(self._scroll_to_newest)

    def _scroll_to_newest(self) -> None:
        node, self._follow_target = self._follow_target, None
        if node is not None and not self.has_focus:
            self.scroll_to_node(node, animate=False)

    # -- presentation -------------------------------------------------------

    def _component_style(self, component: str) -> Style:
        # Every label needs a few of these, and computing one walks the CSS:
        # cached until the styles change (a replay adds thousands of blocks).
        style = self._timeline_styles.get(component)
        if style is None:
            style = self.get_component_rich_style(f"timeline--{component}", partial=True)
            self._timeline_styles[component] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._timeline_styles.clear()

    def _label(self, entry: _Entry) -> Text:
        if entry.kind == "driver":
            glyph, glyph_style = "•", "duration"
        elif entry.kind == "screen":
            glyph, glyph_style = "▣", "machine"
        elif entry.ok is None:
            glyph, glyph_style = "…", "running"
        elif entry.ok:
            glyph, glyph_style = "✓", "ok"
        else:
            glyph, glyph_style = "✗", "failed"
        label = Text.assemble((glyph, self._component_style(glyph_style)), " ")
        if entry.machine:
            label.append(entry.machine, self._component_style("machine"))
            label.append(": ")
        label.append(entry.title, Style(bold=entry.kind in ("subtest", "run")))
        if entry.duration is not None:
            label.append("  " + format_duration(entry.duration), self._component_style("duration"))
        if entry.waiting:
            label.append("  " + plain_text(entry.waiting), self._component_style("running"))
        if entry.error and entry.ok is False:
            error = plain_text(entry.error).strip()
            first_line = error.splitlines()[0] if error else ""
            label.append("  " + first_line, self._component_style("failed"))
        return label

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[_Entry]) -> None:
        event.stop()
        entry = event.node.data
        if entry is not None and entry.screen is not None:
            from widgets.screen_view import ScreenPictureScreen

            self.app.push_screen(ScreenPictureScreen(entry.screen.title, entry.screen.machine, entry.screen.png))
            return
        if entry is not None and entry.script_line is not None:
            self.post_message(self.LineSelected(self, entry.script_line))
