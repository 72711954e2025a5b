"""`vmtui replay PATH [--script FILE]`: a past run, read-only, in the same TUI.

`ReplayApp` is the live app with no session behind it: a worker thread
streams the source's events (vmtui/replay/session.py) into the same
`EventBridge` the driver's bus feeds, so the same widgets draw them in the
same batches.  What replay adds:

- every control that would act on a VM or the script is disabled;
- moving the timeline's cursor onto a block jumps the script to its line
  and every console to that moment (lines before it, a marker, lines
  after); `l` goes back to the latest console lines;
- `F` searches everything: the script, the driver's lines and every console (from disk).

The source streams while the screen is already up: the first screen of a
100 MB log appears as soon as its first batch is drawn
(benchmarks/bench_replay.py), and memory stays flat because consoles are
spooled to disk and panes keep their bounded scrollback.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static, Tree
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from driver import scratch
from driver.config import NodeConfig, TestConfig
from driver.events import BlockClosed, BlockOpened, Event, ScriptFinished
from driver.terminal_text import plain_line
import vmtui.app
from vmtui.app import VmtuiApp
from vmtui.bridge import Batch
from vmtui.replay.script_match import script_from_traceback
from vmtui.replay.session import DRIVER_LOG, SCRIPT, ReplaySession, SearchHit
from vmtui.replay.source import ReplaySource, open_source
from widgets.console_view import ConsoleView
from widgets.run_status import RunStatus
from widgets.timeline import Timeline

# Console lines shown around a moment of the timeline.
WINDOW_BEFORE = 2000
WINDOW_AFTER = 500
# Events the reader may publish before the UI drew a batch of them: keeps
# the reader from racing ahead of the screen (and memory flat).
MAX_IN_FLIGHT = 2_000
# Before the first screen the reader stops after this many events until the
# UI drew them: the first screen never waits for the reader's time slices.
FIRST_SCREEN_EVENTS = 100
SEARCH_LIMIT = 500

# Actions of the live app that would touch a VM, the script or its files.
_LIVE_ACTIONS = frozenset({
    "continue", "step_over", "step_into", "run_to_cursor", "toggle_breakpoint", "pause", "stop", "restart",
    "focus_repl", "open_shell", "checkpoint", "rewind", "rerun_mode", "restart_changed_nodes", "past_runs",
})
_PLACEHOLDER_SCRIPT = "# This log names no test script: pass it with  vmtui replay LOG --script FILE\n"


class SearchScreen(ModalScreen[SearchHit | None]):
    """Search the driver's lines and every console; Enter on a hit jumps there."""

    DEFAULT_CSS = """
    SearchScreen { align: center middle; }
    SearchScreen > Vertical { width: 90%; height: 80%; border: round $accent; background: $surface; }
    SearchScreen OptionList { height: 1fr; }
    SearchScreen #search-summary { height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, session: ReplaySession, script: str = "") -> None:
        super().__init__()
        self.session = session
        self.script = script
        self.hits: list[SearchHit] = []
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Input(placeholder="search the script, the driver's lines and every console (Enter)", id="search-input")
            yield Static("", id="search-summary")
            yield OptionList(id="search-hits")

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = "Search everything"
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self._cancel.set()
        self._cancel = threading.Event()
        self.query_one("#search-summary", Static).update("searching…")
        self._search(event.value, self._cancel)

    @work(thread=True, exclusive=True, group="replay-search")
    def _search(self, term: str, cancel: threading.Event) -> None:
        hits = self.session.search(term, limit=SEARCH_LIMIT, cancel=cancel, script=self.script)
        if not cancel.is_set():
            self.app.call_from_thread(self._show_hits, term, hits)

    def _show_hits(self, term: str, hits: list[SearchHit]) -> None:
        self.hits = hits
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(Option(_hit_label(hit), id=str(i)) for i, hit in enumerate(hits))
        more = " (the first ones)" if len(hits) >= SEARCH_LIMIT else ""
        self.query_one("#search-summary", Static).update(f"{len(hits)} lines contain {term!r}{more}")
        if hits:
            options.highlighted = 0
            options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        index = int(event.option.id or 0)
        self.dismiss(self.hits[index] if index < len(self.hits) else None)

    def on_unmount(self) -> None:
        self._cancel.set()


def _hit_label(hit: SearchHit) -> Text:
    """A hit as plain text: guest bytes are neither markup nor escapes here."""
    where = {DRIVER_LOG: "driver", SCRIPT: f"script {hit.line + 1}"}.get(hit.where, f"{hit.where} #{hit.line + 1}")
    text = plain_line(hit.text[:300])
    return Text.assemble((f"{where:>16}", "dim"), "  ", text)


class ReplayApp(VmtuiApp):
    """See the module docstring."""

    # The live app's layout and styles (a relative CSS_PATH would look beside this module).
    CSS_PATH = str(Path(vmtui.app.__file__).with_name("app.tcss"))

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("F", "search_all", "Search all", id="replay.search", tooltip="Search every console and the driver's lines"),
        Binding("l", "latest", "Latest", id="replay.latest", tooltip="Show the newest console lines again"),
    ]

    def __init__(self, source: ReplaySource, session: ReplaySession, config: TestConfig, **kwargs: Any) -> None:
        super().__init__(config, None, autostart=False, clock=None, **kwargs)
        self.source = source
        self.replay = session
        self._cancel = threading.Event()
        self._drained = threading.Event()
        self._in_flight = 0
        self._node_blocks: dict[Any, int] = {}
        # True after a jump: the panes show a moment, not the newest lines.
        self.pinned = False
        self.first_screen_at: float | None = None
        # Set once the whole source was read and its verdict shown.
        self.streamed = False
        self._early_lines: dict[str, list[str]] = {}
        self.jumped_to: int | None = None

    # -- start ------------------------------------------------------------------

    def on_mount(self) -> None:
        # (Textual calls VmtuiApp.on_mount first: panes titled, no session to open.)
        self.title = f"vmtui replay: {self.source.name}"
        for widget_id in ("#repl-pane", "#inspector"):
            self.query_one(widget_id).display = False
        self.query_one(RunStatus).set_message("loading", f"{self.source.describe()} {self.source.path}")
        self._stream()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _LIVE_ACTIONS:
            return False
        return True

    @work(thread=True, group="replay", exit_on_error=False, name="replay reader")
    def _stream(self) -> None:
        self.replay.stream(self._publish, self._cancel)
        if not self._cancel.is_set():
            self.call_from_thread(self._streamed)

    def _publish(self, event: Event) -> None:
        self.bus_bridge(event)
        self._in_flight += 1
        if self._in_flight >= (MAX_IN_FLIGHT if self.first_screen_at is not None else FIRST_SCREEN_EVENTS):
            # Wait for the UI to draw what is queued (bounded: a stalled UI
            # cannot stall the reader for long, the bridge bounds console lines).
            self._drained.clear()
            self._drained.wait(0.5)
            self._in_flight = 0

    def _streamed(self) -> None:
        session = self.replay
        result = session.result
        status = self.query_one(RunStatus)
        if session.error is not None:
            status.set_message("error", session.error)
        elif result is not None and not result.ok:
            if self.source.script_path is None:
                self._script_from_traceback(result.error_line)
            where = f" at line {result.error_line}" if result.error_line is not None else ""
            status.set_message("failed", f"replay: failed{where}: {result.error or ''}  (F: search all, l: latest lines)")
        else:
            status.set_message("passed", f"replay of {self.source.describe()}: {session.events_seen} events  (F: search all)")
        self.streamed = True

    @on(Worker.StateChanged)
    def _reader_failed(self, event: Worker.StateChanged) -> None:
        # A bug in the reader must show, not leave a replay that never ends.
        if event.worker.group == "replay" and event.worker.state is WorkerState.ERROR:
            self.query_one(RunStatus).set_message("error", f"replay stopped: {event.worker.error!r}")

    def _script_from_traceback(self, error_line: int | None) -> None:
        """No script given: show what the traceback printed of it, at its line numbers."""
        text = script_from_traceback(self.replay.error_lines, _PLACEHOLDER_SCRIPT.strip())
        if text is None:
            return
        script = self.script_view
        script.load(text)
        if error_line is not None:
            script.set_error_line(error_line)
            script.goto_line(error_line)

    def on_unmount(self) -> None:
        # (Textual also calls VmtuiApp.on_unmount itself.)
        self._cancel.set()
        self._drained.set()

    # -- drawing ----------------------------------------------------------------

    def apply_batch(self, batch: Batch) -> None:
        console: dict[str, list[str]] = {}
        for machine, lines in batch.console.items():
            pane = self.pane_for(machine)  # a node first seen now gets its pane
            if not pane.query(ConsoleView):
                # Mounted just now, not composed yet: its lines wait a frame.
                self._early_lines.setdefault(machine, []).extend(lines)
                self.call_after_refresh(self._flush_early_lines)
            elif not self.pinned:
                console[machine] = lines
        super().apply_batch(Batch(console=console, events=batch.events))
        self._drained.set()
        if self.first_screen_at is None and (batch.console or batch.events):
            self.call_after_refresh(self._first_screen_drawn)

    def _flush_early_lines(self) -> None:
        waiting, self._early_lines = self._early_lines, {}
        for machine, lines in waiting.items():
            pane = self.pane_for(machine)
            if not pane.query(ConsoleView):
                self._early_lines.setdefault(machine, []).extend(lines)
                self.call_after_refresh(self._flush_early_lines)
            elif not self.pinned:
                self.console_column.append_lines(machine, lines)  # the node overview counts them too

    def _first_screen_drawn(self) -> None:
        if self.first_screen_at is None:
            self.first_screen_at = time.monotonic()

    def apply_event(self, event: Event) -> None:
        super().apply_event(event)
        if isinstance(event, BlockOpened):
            node = self.query_one(Timeline).block_node(event.block_id)
            if node is not None:
                self._node_blocks[node.id] = event.block_id
        elif isinstance(event, BlockClosed) and event.ok:
            # Unlike a live run, a log may hold thousands of subtests: passed
            # ones fold away too, so the tree the timeline redraws stays small.
            node = self.query_one(Timeline).block_node(event.block_id)
            if node is not None and node.children:
                node.collapse()
        elif isinstance(event, ScriptFinished) and event.error_line is not None and not event.ok:
            self.script_view.goto_line(event.error_line)

    # -- jumps ------------------------------------------------------------------

    @on(Tree.NodeHighlighted, "#timeline")
    def _timeline_moved(self, event: Tree.NodeHighlighted[Any]) -> None:
        if not self.query_one(Timeline).has_focus:
            return  # the tree following new entries is not the user choosing one
        block_id = self._node_blocks.get(event.node.id)
        if block_id is not None:
            self.jump_to_block(block_id, event.node.data)

    def jump_to_block(self, block_id: int, entry: Any = None) -> None:
        """Script to the block's line, every console to the moment it opened.

        `entry` is the block's timeline entry; without it, the block is looked
        up in the timeline's current run (a record may hold several runs).
        """
        if entry is None:
            node = self.query_one(Timeline).block_node(block_id)
            entry = node.data if node is not None else None
        line = getattr(entry, "script_line", None)
        if line is not None:
            self.script_view.goto_line(line)
        moment = self.replay.moment_of(block_id)
        if moment is None:
            return
        title = getattr(entry, "title", "")
        machine = getattr(entry, "machine", None)
        label = f"{machine}: {title}" if machine else title
        for pane in self.panes:
            self._show_window(pane.machine, moment.get(pane.machine, 0), marker=f"── {label} ──")
        self.pinned = True
        self.jumped_to = block_id

    def _show_window(self, machine: str, line: int, *, marker: str | None = None, term: str | None = None) -> None:
        first, lines = self.replay.console_window(machine, line, before=WINDOW_BEFORE, after=WINDOW_AFTER)
        at = line - first
        if marker is not None:
            lines = [*lines[:at], f"\x1b[7m{marker}\x1b[0m", *lines[at:]]
        view = self.pane_for(machine).view
        view.follow = False
        view.clear()
        view.append_lines(lines)
        view.set_search(term)
        height = max(1, view.scrollable_content_region.height)
        view.scroll_to(y=max(0, at - height // 2), animate=False)

    def action_latest(self) -> None:
        """Back from a moment to the newest console lines."""
        self.pinned = False
        self.jumped_to = None
        for pane in self.panes:
            count = self.replay.console_count(pane.machine)
            _, lines = self.replay.console_window(pane.machine, count, before=pane.view.max_lines, after=0)
            view = pane.view
            view.clear()
            view.append_lines(lines)
            view.set_search(None)
            view.follow = True

    def action_search_all(self) -> None:
        self.push_screen(SearchScreen(self.replay, self.script_source), self._search_chosen)

    def _search_chosen(self, hit: SearchHit | None) -> None:
        if hit is None:
            return
        if hit.where == SCRIPT:
            self.script_view.goto_line(hit.line + 1)
            self.script_view.focus()
            return
        if hit.where == DRIVER_LOG:
            if hit.block_id is not None:
                node = self.query_one(Timeline).block_node(hit.block_id)
                if node is not None:
                    self.query_one(Timeline).move_cursor(node)
                self.jump_to_block(hit.block_id)
            return
        self._show_window(hit.where, hit.line, term=hit.term or None)
        self.pinned = True


def _replay_config(source: ReplaySource, spool_dir: Path) -> TestConfig:
    script = source.script_path
    if script is None:
        script = spool_dir / "no-script.py"
        script.write_text(_PLACEHOLDER_SCRIPT, encoding="utf-8")
    return TestConfig(
        nodes=[NodeConfig(name=name, start_command="") for name in source.nodes],
        vlans=[],
        script_path=script,
        source_path=source.source_path,
        name=source.name,
    )


def make_replay_app(path: Path, script: Path | None, spool_dir: Path, *, owns_process: bool = False) -> ReplayApp:
    """The app for `vmtui replay` (raises ConfigError for bad input).

    `owns_process`: the app is the process (SIGTERM/SIGHUP/SIGINT end it
    the orderly way, so the spool directory is removed).
    """
    source = open_source(path, script)
    return ReplayApp(source, ReplaySession(source, spool_dir), _replay_config(source, spool_dir),
                     owns_process=owns_process)


def run_replay(path: Path, script: Path | None = None) -> int:
    """`vmtui replay`: open the app; spool files live in a temporary directory removed at exit."""
    # A scratch directory, not a bare mkdtemp: when a signal's orderly exit
    # hangs, the forced exit (processes.cleanup, then os._exit) skips the
    # `finally` below, and only directories scratch knows are removed there.
    with scratch.temp_dir("vmtui-replay-") as spool_dir:
        app = make_replay_app(path, script, spool_dir, owns_process=True)
        try:
            app.run()
        finally:
            app.replay.close()
        return 0
