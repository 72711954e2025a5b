"""The vmtui application: script, debugger and every node's console on one screen.

The app composes the widgets and wires them to a `Session` (driver, runner,
stepper).  Driver events arrive through the `EventBridge` and are drawn in
batches; every call that can block (booting, running the script, a REPL
line, reading variables) runs in a thread worker, so the UI never waits.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, RichLog
from textual.worker import Worker, WorkerState

from driver.config import TestConfig
from driver.errors import ConfigError, MachineError
from driver.record import RunRecord
from driver.events import (
    BlockClosed,
    BlockOpened,
    DebuggerPaused,
    DebuggerResumed,
    Event,
    EventBus,
    LogMessage,
    MachineStateChanged,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
    ScreenCaptured,
    WaitProgress,
)
from driver.stepper import Evaluation
from driver.terminal_text import plain_text
from vmtui.bridge import Batch, EventBridge, EventsPending
from vmtui.keymap import default_keymap_path, load_keymap
from vmtui.edit_app import EditApp
from vmtui.messages import ReplAnswered, SessionFailed, SessionOpened, VariablesRead, while_running
from vmtui.screen_pane import ScreenPanes, pixel_image_class
from vmtui.screens.help import HelpScreen, bindings_of
from vmtui.state_files import BreakpointStore, repl_history_path
from widgets.ansi import guest_text
from widgets.code_editor import CodeArea, CodeEditor
from widgets.console_column import ConsoleColumn
from widgets.console_pane import ConsolePane
from widgets.console_view import ConsoleView
from widgets.debugger import BreakpointsView, ReplInput, StackView, VariablesView
from widgets.error_banner import ErrorBanner
from widgets.node_overview import NodeOverview
from widgets.run_status import RunStatus
from widgets.script_view import PausedKind, ScriptView
from widgets.screen_view import ScreenPane, ScreenView
from widgets.terminal_view import TerminalView
from widgets.textual_hooks import end_strip_self_references, keymap_of
from widgets.timeline import Timeline

if TYPE_CHECKING:
    from driver.machine import Machine
    from driver.stepper import Stepper
    from vmtui.options import RunOptions
    from vmtui.session import Session

# Driver events are drawn at most FRAME_RATE times a second: a flooding
# guest costs one repaint per frame, however many lines it writes.  While
# consoles flood (more lines per frame than anyone can read) the rate drops
# to FLOOD_FRAME_RATE, leaving the time to keys and the rest of the UI.
FRAME_RATE = 30.0
FLOOD_FRAME_RATE = 12.0
FLOOD_LINES_PER_FRAME = 400
# Measured and left out (benchmarks/bench_keys.py, alternating runs): holding
# a due batch until a key just typed is drawn made keys at a typist's pace
# slower (editor p50 15 -> 30 ms); a 1 ms GIL switch interval
# (sys.setswitchinterval) changed nothing beyond the noise.

# Objects allocated between two young collections (Python's default: 700).
# Every frame makes thousands of short-lived objects, many in reference
# cycles (Textual's Strip caches itself), which only a collection frees.
# With the default, frames' leftovers are promoted before they die, and the
# old generation fills with garbage that a full collection must then walk:
# 30-90 ms pauses several times a second while consoles flood.  A larger
# young generation lets that garbage die young (benchmarks/bench_keys.py
# --trace: no full collection left while typing; p99 of a key in the editor
# 148 ms -> 58 ms at load 2).  Measured again once strips stopped caching
# themselves (widgets/textual_hooks.py), alternating runs at load ~1: p99
# 34-41 ms at 700, 30-37 ms at 2,000, 30-31 ms at 10,000.
GC_YOUNG_THRESHOLD = 10_000

# Builds the Session for a config; None shows driver events only (tests,
# screenshots), with no machines behind them.
SessionFactory = Callable[[TestConfig], "Session"]


def _language_of(path: Path) -> str:
    return {".nix": "nix", ".toml": "toml", ".py": "python", ".json": "json"}.get(path.suffix, "text")


class ReplPane(Vertical):
    """The REPL's output and input line; maximised together (z) from the input."""

    ALLOW_MAXIMIZE = True


# The panes of the inspector column (see action_focus).
_INSPECTOR_PANES = frozenset({"variables", "stack", "breakpoints"})


class VmtuiApp(EditApp):
    """See the module docstring.  `session_factory(config)` builds the Session."""

    CSS_PATH = "app.tcss"
    TITLE = "vmtui"

    # Layout classes on the screen (app.tcss): narrow terminals hide the
    # inspector column, short ones shrink the timeline/REPL row.
    HORIZONTAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-short"), (32, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c,f5", "continue", "Continue", id="vmtui.continue", tooltip="Continue, or start a run of the script"),
        Binding("n,f10", "step_over", "Step", id="vmtui.step_over", tooltip="Step over one statement"),
        Binding("s,f11", "step_into", "Into", id="vmtui.step_into", tooltip="Step into a subtest block or function"),
        Binding("t,ctrl+f10", "run_to_cursor", "To cursor", id="vmtui.run_to_cursor", tooltip="Run to the cursor line"),
        Binding("b,f9", "toggle_breakpoint", "Break", id="vmtui.toggle_breakpoint", tooltip="Toggle a breakpoint on the cursor line"),
        Binding("p,f6", "pause", "Pause", id="vmtui.pause", tooltip="Pause before the next statement"),
        Binding("x,shift+f5,f17", "stop", "Stop", id="vmtui.stop", tooltip="Stop the run (interrupts a wait); VMs stay up"),
        Binding("r,ctrl+f5", "restart", "Rerun", id="vmtui.restart", tooltip="Reload the script and run it again against the running VMs"),
        Binding("z,f12", "toggle_maximize", "Max", id="vmtui.maximize", tooltip="Maximise or restore the focused pane"),
        Binding("exclamation_mark,ctrl+x", "focus_repl", "REPL", id="vmtui.focus_repl", tooltip="Type Python in the paused frame"),
        Binding("o", "open_shell", "Shell", id="vmtui.shell", tooltip="Open a root shell into the focused node (or the one last chosen); ctrl+] leaves it"),
        Binding("g", "toggle_screen", "Screen", id="vmtui.screen", tooltip="Open or close the focused node's screen (or the last chosen one's); typed keys go to the VM, ctrl+] leaves it"),
        Binding("k", "checkpoint", "Checkpoint", id="vmtui.checkpoint", show=False, tooltip="Save a checkpoint of every node (at the next statement boundary if one runs)"),
        Binding("u", "rewind", "Rewind", id="vmtui.rewind", show=False, tooltip="Rewind the VMs to just before the cursor's statement, from a checkpoint"),
        Binding("m", "rerun_mode", "Rerun mode", id="vmtui.rerun_mode", show=False, tooltip="Cycle what a save reruns: from the change, everything, the failed subtest, from a checkpoint"),
        Binding("R", "restart_changed_nodes", "Restart nodes", id="vmtui.restart_changed_nodes", show=False, tooltip="Restart the nodes whose configuration changed in the last rebuild (the others keep running), then rerun"),
        # Priority, so that focus is in the editor before the next key is routed (see EditApp.check_action).
        Binding("e", "edit", "Edit", id="vmtui.edit", priority=True, tooltip="Edit the script (or the Nix source) in place at the cursor line; Esc leaves"),
        Binding("E", "external_editor", "$EDITOR", id="vmtui.external_editor", show=False, tooltip="Open the file in $VISUAL/$EDITOR at the cursor line (vmtui waits); a change reruns"),
        Binding("ctrl+r", "run_anyway", "Run anyway", id="vmtui.run_anyway", show=False, tooltip="Run a save that the lint held back (undefined names)"),
        Binding("v", "toggle_source", "Source", id="vmtui.toggle_source", show=False, tooltip="Switch between the Python script and the Nix/TOML source"),
        Binding("C", "focus('script')", "Script", id="vmtui.focus_script", show=False, tooltip="Focus the script"),
        Binding("V", "focus('variables')", "Variables", id="vmtui.focus_variables", show=False, tooltip="Focus the variables"),
        Binding("S", "focus('stack')", "Stack", id="vmtui.focus_stack", show=False, tooltip="Focus the call stack"),
        Binding("B", "focus('breakpoints')", "Breakpoints", id="vmtui.focus_breakpoints", show=False, tooltip="Focus the breakpoints list"),
        Binding("L", "focus('timeline')", "Timeline", id="vmtui.focus_timeline", show=False, tooltip="Focus the timeline"),
        *(
            Binding(str(n % 10), f"focus_console({n})", f"Console {n}", id=f"vmtui.focus_console_{n}", show=False, tooltip=f"Show and focus node {n}'s console")
            for n in range(1, 11)
        ),
        Binding("right_square_bracket", "step_console(1)", "Next node", id="vmtui.next_console", show=False, tooltip="Show and focus the next node's console"),
        Binding("left_square_bracket", "step_console(-1)", "Previous node", id="vmtui.previous_console", show=False, tooltip="Show and focus the previous node's console"),
        Binding("P", "past_runs", "Past runs", id="vmtui.past_runs", show=False, tooltip="List the run records of this test and open one read-only"),
        Binding("question_mark,f1", "help", "Help", id="vmtui.help", tooltip="Show every key"),
        Binding("q,ctrl+c", "quit", "Quit", id="vmtui.quit", tooltip="Quit; every VM is stopped"),
    ]

    def __init__(
        self,
        config: TestConfig,
        session_factory: SessionFactory | None,
        *,
        autostart: bool = True,
        clock: Callable[[], float] | None = time.monotonic,
        keymap: dict[str, str] | None = None,
        state_dir: Path | None = None,
        owns_process: bool = False,
        nix_attr: str | None = None,
    ) -> None:
        super().__init__()
        # Frames leave no garbage for the cyclic collector (a flood's frames made
        # ~18,000 objects a second of it; see widgets/textual_hooks.py).
        end_strip_self_references()
        self.config = config
        self.session_factory = session_factory
        self.session: Session | None = None
        self.autostart = autostart
        self.clock = clock
        # True when this app is the vmtui process itself (run_tui): it then
        # handles SIGTERM/SIGHUP/SIGINT and tunes the garbage collector.
        self.owns_process = owns_process
        self.bus_bridge = EventBridge(self.post_message)
        self.breakpoint_store = BreakpointStore(state_dir)
        self.repl_history = repl_history_path(state_dir)
        self.last_result_ok: bool | None = None
        self._last_flush = 0.0
        self._frame_interval = 1.0 / FRAME_RATE
        self._flush_pending = False
        # Variables reads asked for / the newest one shown (see _variables_read).
        self._variables_asked = 0
        self._variables_shown = 0
        self._unsubscribe: Callable[[], None] | None = None
        if keymap:
            self.set_keymap(keymap)
        self.script_source = self._read(config.script_path)
        source = config.source_path
        self.alt_source_path = source if source is not None and source != config.script_path and source.is_file() else None
        # Live iteration (saves rerun the script; checkpoints; shells), once a session exists.
        self._init_live(config, nix_attr)
        # This session's run record (driver/record.py), when run_tui made one.
        self.run_record: RunRecord | None = None
        self.screens = ScreenPanes(self, self._machine_named)
        # The script editor (e, E, ctrl+s) and the lint before a run.
        self._init_editing()

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the test script: {exc.strerror}") from None

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield RunStatus(self.config.name, id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Horizontal(id="code-row"):
                    with ContentSwitcher(id="sources", initial="script"):
                        yield ScriptView(self.script_source, id="script")
                        yield CodeEditor(self.script_source, id="script-editor")
                        if self.alt_source_path is not None:
                            alt_text = self._read(self.alt_source_path)
                            language = _language_of(self.alt_source_path)
                            yield ScriptView(alt_text, language=language, debugger_gutter=False, id="alt-source")
                            yield CodeEditor(alt_text, language=language, id="alt-editor")
                    with Vertical(id="inspector"):
                        yield VariablesView(id="variables")
                        yield StackView(id="stack")
                        yield BreakpointsView(id="breakpoints")
                yield ErrorBanner(id="error-banner")
                with Horizontal(id="bottom-row"):
                    yield Timeline(id="timeline")
                    with ReplPane(id="repl-pane"):
                        yield RichLog(id="repl-log", wrap=True, markup=False, highlight=False, min_width=20)
                        yield ReplInput(history_path=self.repl_history, id="repl")
            yield ConsoleColumn([node.name for node in self.config.nodes], clock=self.clock, id="consoles")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._title_panes()
        self.query_one("#script", ScriptView).focus()
        self._show_breakpoints()
        if not self.config.nodes:
            self.query_one("#consoles").display = False
        if self.owns_process:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                loop.add_signal_handler(signum, self._exit_on_signal, 128 + signum)
            # Everything built so far (Textual, the DOM, the driver's modules)
            # lives as long as the app: moving it out of the collector's view
            # makes the full collections a console flood provokes short
            # (measured: a 150 ms pause became tens of ms, benchmarks/bench_keys.py).
            self.call_after_refresh(gc.freeze)
            _, older, oldest = gc.get_threshold()
            gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
        if self.session_factory is not None:
            self._open_session()

    def _exit_on_signal(self, status: int) -> None:
        """SIGTERM/SIGHUP/SIGINT: leave like `q` does (terminal restored, VMs ended).

        Should the orderly way hang (a terminal that went away can block the
        last screen write), a watchdog ends every child and the process.
        """
        self.exit(status)
        threading.Thread(target=_force_exit_after, args=(SIGNAL_EXIT_GRACE, status), daemon=True).start()

    def on_unmount(self) -> None:
        # However the app ends (quit, a signal, a test leaving run_test), the
        # script thread must end too: a run paused in the stepper would
        # otherwise block forever, and with it the interpreter's exit.
        if self.session is not None:
            self.session.cancel()
        # The session may outlive the app (tests share booted machines).
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._stop_live()
        self.screens.close_all()

    def _title_panes(self) -> None:
        script = self.config.script_path.name
        alt = f"   [dim]v: {self.alt_source_path.name}[/]" if self.alt_source_path else ""
        self.query_one("#sources").border_title = f"[b]{script}[/b]{alt}"
        self.query_one("#variables").border_title = "Variables"
        self.query_one("#stack").border_title = "Stack"
        self.query_one("#breakpoints").border_title = "Breakpoints"
        self.query_one("#timeline").border_title = "Timeline"
        self.query_one("#repl-pane").border_title = "REPL"

    @property
    def console_column(self) -> ConsoleColumn:
        return self.query_one(ConsoleColumn)

    @property
    def panes(self) -> list[ConsolePane]:
        return self.console_column.panes

    def pane_for(self, machine: str) -> ConsolePane:
        column = self.console_column
        # A machine the script created itself (create_machine) gets a pane.
        column.display = True
        return column.pane_for(machine)

    # -- the session ------------------------------------------------------------

    def _open_session(self) -> None:
        self.query_one(RunStatus).set_message("starting", "creating the machines")
        self._create_session()

    @work(thread=True, group="session", exit_on_error=False, name="open session")
    def _create_session(self) -> None:
        assert self.session_factory is not None
        try:
            session = self.session_factory(self.config)
        except ConfigError as exc:
            self._answer(SessionFailed(str(exc)))
            return
        self._unsubscribe = session.bus.subscribe(self.bus_bridge)
        try:
            session.load()
        except ConfigError as exc:
            self._answer(SessionOpened(session, str(exc)))
        else:
            self._answer(SessionOpened(session, None))

    @on(SessionOpened)
    @while_running
    def _attach_session(self, message: SessionOpened) -> None:
        # Set on the UI thread, and only once the script is loaded (or known
        # not to compile), so no key can reach a half-made session.
        self.session = message.session
        if message.load_error is not None:
            self._show_load_error(message.load_error)
            return
        self._session_ready()

    @on(SessionFailed)
    @while_running
    def _session_failed(self, message: SessionFailed) -> None:
        self._fatal(message.message)

    def _fatal(self, message: str) -> None:
        self.query_one(RunStatus).set_message("error", message)
        self._show_error(message, hint="Fix the test and start vmtui again.", title="error")

    def _show_load_error(self, message: str) -> None:
        self.query_one(RunStatus).set_message("syntax error", message)
        self._show_error(message, hint="Fix the script and press r to reload it.", title="syntax error")

    def _session_ready(self) -> None:
        """The script is loaded: saved breakpoints go to the stepper, the run may start."""
        assert self.session is not None
        self._start_live()
        stepper = self.session.stepper
        for line in self.breakpoint_store.load(self.config.script_path):
            stepper.set_breakpoint(line)
        self._show_breakpoints()
        self._hide_error()
        self.query_one(RunStatus).set_message("ready", "c: run   n: step")
        if self.autostart or self.live.run_requested:
            self._start_run(stop_at_start=False)

    @property
    def script_running(self) -> bool:
        return self.session is not None and self.session.is_running

    def _start_run(self, *, stop_at_start: bool, run_to_line: int | None = None) -> None:
        session = self.session
        if session is None:
            self.live.run_requested = True
            return
        if session.is_running:
            return
        session.stepper.stop_at_start = stop_at_start or run_to_line is not None
        self.live.run_started(run_to_line)
        self._run_script()

    @work(thread=True, group="script", exit_on_error=False, name="script")
    def _run_script(self, start: int = 0, until: int | None = None) -> bool:
        assert self.session is not None
        result = self.session.run(start, until)
        return bool(result.ok)

    def _machine_named(self, name: str) -> Machine:
        if self.session is None:
            raise MachineError(f"{name}: the machines are not ready yet")
        return self.session.driver.machine_named(name)

    def action_toggle_screen(self, machine: str | None = None) -> None:
        machine = self._node_for_action(machine)
        if machine is None:
            return
        open_pane = next((pane for pane in self.query(ScreenPane) if pane.machine == machine), None)
        if open_pane is not None:
            self.screens.close(open_pane)
            return
        consoles = self.query_one("#consoles")
        consoles.display = True
        self.screens.open(machine, consoles)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "script" and worker.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            if worker.state is WorkerState.ERROR:
                self._repl_write(Text(f"internal error in the script thread: {worker.error!r}", style="bold red"))
            else:
                self.last_result_ok = bool(worker.result)
            if self.live.run_ended():
                self._reload_and_run()
        elif worker.group == "session" and worker.state is WorkerState.ERROR:
            self._fatal(f"cannot start the machines: {worker.error}")
        elif worker.state is WorkerState.ERROR:
            # Every other worker answers with a message; an exception it did
            # not expect is still the user's to see, never swallowed.
            self.notify(f"{type(worker.error).__name__}: {worker.error}", title=f"{worker.name} failed",
                        severity="error", timeout=10)

    # -- driver events ---------------------------------------------------------

    @on(EventsPending)
    def _events_pending(self) -> None:
        wait = self._last_flush + self._frame_interval - time.monotonic()
        if wait > 0:
            if not self._flush_pending:
                self._flush_pending = True
                self.set_timer(wait, self._draw_pending_events)
        else:
            self._draw_pending_events()

    def _draw_pending_events(self) -> None:
        self._flush_pending = False
        if not self.is_running:
            return  # shutting down: the widgets the events would go to are leaving
        self._last_flush = time.monotonic()
        batch = self.bus_bridge.drain()
        flooding = batch.console_line_count > FLOOD_LINES_PER_FRAME
        self._frame_interval = 1.0 / (FLOOD_FRAME_RATE if flooding else FRAME_RATE)
        self.apply_batch(batch)

    def apply_batch(self, batch: Batch) -> None:
        column = self.console_column
        for machine, lines in batch.console.items():
            column.display = True
            column.append_lines(machine, lines)
        for event in batch.events:
            self.apply_event(event)
        self.editor_saw_events(batch.events)

    def apply_event(self, event: Event) -> None:
        status = self.query_one(RunStatus)
        script = self.script_view
        if isinstance(event, MachineStateChanged):
            self.console_column.display = True
            self.console_column.apply_state(event)
            return
        if isinstance(event, (BlockOpened, BlockClosed, LogMessage, ScreenCaptured)):
            self.query_one(Timeline).apply(event)
            return
        if isinstance(event, WaitProgress):
            self.query_one(Timeline).apply(event)
            status.apply(event)
            return
        status.apply(event)
        if isinstance(event, ScriptStarted):
            self.query_one(Timeline).apply(event)
            script.mark_all_stale()
            script.set_paused(None)
            script.set_error_line(None)
            self._hide_error()
            self.query_one(StackView).clear_stack()
        elif isinstance(event, StatementStarted):
            script.mark_running(event.line, event.end_line)
        elif isinstance(event, StatementFinished):
            script.mark_finished(event.line, event.end_line, event.ok, event.duration)
        elif isinstance(event, DebuggerPaused):
            self._paused(event)
        elif isinstance(event, DebuggerResumed):
            script.set_paused(None)
            self.query_one(StackView).clear_stack()
        elif isinstance(event, ScriptFinished):
            self.query_one(Timeline).apply(event)
            script.set_paused(None)
            self.query_one(StackView).clear_stack()
            if not event.ok and not event.cancelled:
                script.set_error_line(event.error_line)
                self._show_error(event.error or "the script failed", line=event.error_line)
            self._refresh_variables()

    def _paused(self, event: DebuggerPaused) -> None:
        line = self.live.first_pause(event.reason)
        if line is not None and self.session is not None:
            self.session.stepper.run_to_line(line)
            return
        script = self.script_view
        failed = event.reason == "exception"
        if failed:
            # The run has failed, though it waits in post-mortem: quitting now exits 1.
            self.last_result_ok = False
        script.set_paused(event.line, PausedKind.ERROR if failed else PausedKind.PAUSED)
        script.goto_line(event.line)
        self.query_one(StackView).show_stack(event.stack)
        if failed:
            self._show_error(
                event.error or "the script failed",
                line=event.line,
                hint="The VMs are still up: inspect them with the REPL (!).  c or x ends the run, r reruns.",
                title="post-mortem",
            )
        self._refresh_variables()

    # -- inspecting -----------------------------------------------------------------

    def _refresh_variables(self) -> None:
        if self.session is not None:
            self._variables_asked += 1
            self._read_variables(self.session, self._variables_asked)

    @work(thread=True, group="inspect", exclusive=True, exit_on_error=False, name="variables")
    def _read_variables(self, session: Session, generation: int) -> None:
        self._answer(VariablesRead(generation, session.variables()))

    @on(VariablesRead)
    @while_running
    def _variables_read(self, message: VariablesRead) -> None:
        # Reads can finish out of order (a thread worker is never interrupted):
        # a superseded read must not replace the newest one shown.
        if message.generation < self._variables_shown:
            return
        self._variables_shown = message.generation
        self.query_one(VariablesView).show_variables(message.values)

    @on(ReplInput.Left)
    def _repl_left(self) -> None:
        self.script_view.focus()

    @on(ReplInput.Evaluate)
    def _evaluate_requested(self, event: ReplInput.Evaluate) -> None:
        self._repl_write(Text(f">>> {event.source}", style="bold"))
        if self.session is None:
            self._repl_write(Text("the machines are not ready yet", style="yellow"))
            return
        self._evaluate(self.session, event.source)

    @on(VariablesView.Inspect)
    def _inspect_variable(self, event: VariablesView.Inspect) -> None:
        # The whole value, where there is room for it: the REPL, as if typed.
        self._evaluate_requested(ReplInput.Evaluate(self.query_one(ReplInput), event.name))

    @work(thread=True, group="repl", exit_on_error=False, name="evaluate")
    def _evaluate(self, session: Session, source: str) -> None:
        try:
            evaluation = session.evaluate(source)
        except Exception as exc:  # noqa: BLE001 - a REPL shows errors, it never dies of them
            evaluation = Evaluation(f"{type(exc).__name__}: {exc}", failed=True)
        self._answer(ReplAnswered(evaluation))

    @on(ReplAnswered)
    @while_running
    def _repl_answered(self, message: ReplAnswered) -> None:
        if message.evaluation.output:
            self._repl_write(repl_text(message.evaluation))
        self._refresh_variables()

    def _repl_write(self, text: Text) -> None:
        self.query_one("#repl-log", RichLog).write(text)

    def notify(self, message: str, *, title: str = "", **options: Any) -> None:
        # Notifications can quote guest output (a shell's error, a rerun's reason).
        super().notify(plain_text(message), title=plain_text(title), **options)

    # -- breakpoints ------------------------------------------------------------------

    def _show_breakpoints(self) -> None:
        if self.session is not None:
            lines: Iterable[int] = self.session.stepper.breakpoints
        else:  # still starting: show the saved ones, the stepper gets them when it exists
            lines = self.breakpoint_store.load(self.config.script_path)
        self.script_view.set_breakpoints(lines)
        self.query_one(BreakpointsView).show_breakpoints(lines, self.script_view.line_text)

    def toggle_breakpoint(self, line: int) -> None:
        if self.session is None:
            self.notify("the session is still starting", severity="warning", timeout=2)
            return
        self.session.stepper.toggle_breakpoint(line)
        self.breakpoint_store.save(self.config.script_path, self.session.stepper.breakpoints)
        self._show_breakpoints()

    @on(ScriptView.BreakpointClicked)
    def _breakpoint_clicked(self, event: ScriptView.BreakpointClicked) -> None:
        self.toggle_breakpoint(event.line)

    @on(BreakpointsView.RemoveRequested)
    def _breakpoint_removed(self, event: BreakpointsView.RemoveRequested) -> None:
        self.toggle_breakpoint(event.line)

    @on(BreakpointsView.LineSelected)
    @on(Timeline.LineSelected)
    def _show_line(self, event: BreakpointsView.LineSelected | Timeline.LineSelected) -> None:
        self.query_one(ContentSwitcher).current = "script"
        self.script_view.goto_line(event.line)

    @on(StackView.FrameSelected)
    def _frame_selected(self, event: StackView.FrameSelected) -> None:
        self.script_view.goto_line(event.frame.line)

    # -- actions --------------------------------------------------------------------------

    def _paused_stepper(self) -> Stepper | None:
        session = self.session
        if session is not None and session.is_running and session.stepper.is_paused:
            return session.stepper
        return None

    def action_continue(self) -> None:
        stepper = self._paused_stepper()
        if stepper is not None:
            stepper.resume()
        elif not self.script_running:
            self._start_run(stop_at_start=False)

    def action_step_over(self) -> None:
        stepper = self._paused_stepper()
        if stepper is not None:
            stepper.step_over()
        elif not self.script_running:
            self._start_run(stop_at_start=True)

    def action_step_into(self) -> None:
        stepper = self._paused_stepper()
        if stepper is not None:
            stepper.step_into()
        elif not self.script_running:
            self._start_run(stop_at_start=True)

    def action_run_to_cursor(self) -> None:
        line = self.script_view.cursor_line
        stepper = self._paused_stepper()
        if stepper is not None:
            stepper.run_to_line(line)
        elif not self.script_running:
            self._start_run(stop_at_start=False, run_to_line=line)

    def action_pause(self) -> None:
        if self.session is not None and self.script_running and self._paused_stepper() is None:
            self.session.stepper.pause()

    def action_stop(self) -> None:
        if self.session is not None and self.script_running:
            self.query_one(RunStatus).set_message("stopping", "VMs stay up")
            self.session.cancel()

    def action_restart(self) -> None:
        if self.session is None:
            return
        if self.script_running:
            self.live.restart_when_idle = True
            self.session.cancel()
        else:
            self._reload_and_run()

    def _reload_and_run(self) -> None:
        assert self.session is not None
        was_loaded = bool(self.session.runner.statements)
        try:
            self.session.load()
        except ConfigError as exc:
            self._show_load_error(str(exc))
            return
        self.script_source = self.session.source
        self.script_view.load(self.script_source)
        if not was_loaded:
            self.live.run_requested = True
            self._session_ready()
            return
        self._show_breakpoints()
        self._start_run(stop_at_start=False)

    def action_toggle_breakpoint(self) -> None:
        self.toggle_breakpoint(self.script_view.cursor_line)

    def action_toggle_maximize(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None:
            screen.maximize(screen.focused)

    def action_focus_repl(self) -> None:
        self.query_one(ReplInput).focus()

    async def action_focus(self, widget_id: str) -> None:
        if widget_id == "script":
            self.query_one(ContentSwitcher).current = "script"
        if widget_id in _INSPECTOR_PANES:
            # On a narrow screen the inspector shows while one of its panes has focus.
            self.screen.add_class("-inspecting")
        self.query_one(f"#{widget_id}").focus()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if not self.screen_stack:
            return  # the app is closing: its screens are gone
        if not any(node.id == "inspector" for node in event.widget.ancestors):
            self.screen.remove_class("-inspecting")

    def action_focus_console(self, number: int) -> None:
        self.console_column.select(number)

    def action_step_console(self, delta: int) -> None:
        self.console_column.step(delta)

    def action_toggle_source(self) -> None:
        if self.alt_source_path is None:
            self.notify("this test has no Nix or TOML source besides the script", timeout=2)
            return
        switcher = self.query_one(ContentSwitcher)
        switcher.current = "alt-source" if switcher.current == "script" else "script"
        shown = self.alt_source_path.name if switcher.current == "alt-source" else self.config.script_path.name
        other = self.config.script_path.name if switcher.current == "alt-source" else self.alt_source_path.name
        switcher.border_title = f"[b]{shown}[/b]   [dim]v: {other}[/]"
        self._title_sources()
        self.query_one(f"#{switcher.current}").focus()

    # -- run records (vmtui/replay/past_runs.py) ---------------------------------

    def action_past_runs(self) -> None:
        from vmtui.replay.past_runs import PastRunsScreen

        current = self.run_record.directory if self.run_record is not None else None
        self.push_screen(PastRunsScreen(self.config.name, current), self._open_past_run)

    def _open_past_run(self, path: Path | None) -> None:
        if path is None:
            return
        from vmtui.replay.past_runs import open_in_replay

        # The replay takes the terminal; the VMs and the run go on meanwhile.
        with self.suspend():
            open_in_replay(path)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections()))

    @staticmethod
    def help_sections() -> list[tuple[str, type]]:
        return [
            ("Debugger and panes", VmtuiApp),
            ("Script", ScriptView),
            ("Script editor (e)", CodeEditor),
            ("Script editor text", CodeArea),
            ("Console", ConsoleView),
            ("Console pane", ConsolePane),
            ("Node overview", NodeOverview),
            ("Breakpoints list", BreakpointsView),
            ("REPL line", ReplInput),
            ("Shell pane", TerminalView),
            ("Screen pane", ScreenView),
        ]

    async def action_quit(self) -> None:
        if self.ask_before_quit():
            return  # unsaved edits: finish_quit runs once the user has chosen
        self.finish_quit()

    def finish_quit(self) -> None:
        if self.session is not None:
            self.session.cancel()
        self.exit(0 if self.last_result_ok in (None, True) else 1)

    def _palette_entry(self, binding: Binding, title: str, help_text: str) -> SystemCommand:
        """A command palette entry that runs `binding`'s action and names its keys (as remapped)."""
        bound = keymap_of(self).get(binding.id or "", binding.key)
        keys = ", ".join(self.get_key_display(Binding(key, binding.action)) for key in bound.split(","))
        return SystemCommand(title, f"{help_text} ({keys})", partial(self.run_action, binding.action))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in bindings_of(VmtuiApp):
            if binding.show and binding.action != "quit":
                yield self._palette_entry(binding, binding.tooltip, binding.description)
        if self.rebuilder is not None:
            restart = next(b for b in bindings_of(VmtuiApp) if b.action == "restart_changed_nodes")
            yield self._palette_entry(restart, "Restart changed nodes", restart.tooltip)
        for index, pane in enumerate(self.panes, 1):
            yield SystemCommand(f"Console: {pane.machine}", f"Focus {pane.machine}'s console", partial(self.action_focus_console, index))
            yield SystemCommand(f"Shell: {pane.machine}", f"Open a root shell into {pane.machine}", partial(self.action_open_shell, pane.machine))
            yield SystemCommand(f"Screen: {pane.machine}", f"Open or close {pane.machine}'s screen", partial(self.action_toggle_screen, pane.machine))


# Seconds an orderly exit after a signal may take (VM shutdown included).
SIGNAL_EXIT_GRACE = 20.0


def _force_exit_after(delay: float, status: int) -> None:
    time.sleep(delay)
    from driver.processes import cleanup

    cleanup()
    os._exit(status)


def repl_text(evaluation: Evaluation) -> Text:
    """REPL output as a reader wants it.

    `server.succeed(...)` returns the command's stdout, and its repr puts a
    whole listing on one line full of `\\n`: a multi-line string result is
    shown as its text instead (dimmed quotes mark it as a string).
    """
    output = evaluation.output
    if evaluation.failed:
        return guest_text(output, style="red")
    value = evaluation.string_value
    if value is not None and "\n" in value and output == repr(value):
        # The string's own text: only its colours may reach the screen.
        return Text.assemble((output[0], "dim"), guest_text(value.rstrip("\n")), (output[0], "dim"))
    return guest_text(output)


def known_binding_ids() -> set[str]:
    ids: set[str] = set()
    for _, owner in VmtuiApp.help_sections():
        ids.update(binding.id for binding in bindings_of(owner) if binding.id)
    return ids


def run_tui(config: TestConfig, options: RunOptions) -> int:
    """Open the TUI on a test; returns the exit status (0 passed/quit, 1 failed, 2 bad input)."""
    from vmtui.session import Session

    try:
        keymap = load_keymap(default_keymap_path(), known_binding_ids())
    except ConfigError as exc:
        print(f"vmtui: {exc}", file=sys.stderr)
        return 2
    out_dir, keep_state = options.out_dir, options.keep_state
    sessions: list[Session] = []
    records: list[RunRecord] = []

    def make_session(cfg: TestConfig) -> Session:
        from vmtui.replay.past_runs import start_tui_record

        bus = EventBus()
        # Subscribed before the machines exist, so the record sees their first lines.
        record = start_tui_record(
            cfg, bus, lambda: list(session.driver.machines),
            warn=lambda message: app.call_from_thread(app.notify, message, severity="warning"),
        )
        session = Session(cfg, bus, out_dir=out_dir, keep_state=keep_state)
        sessions.append(session)
        if record is not None:
            records.append(record)
            app.run_record = record
        return session

    try:
        app = VmtuiApp(config, make_session, keymap=keymap, owns_process=True,
                       nix_attr=options.attr)
    except ConfigError as exc:
        print(f"vmtui: {exc}", file=sys.stderr)
        return 2
    # Asking the terminal about graphics works only before Textual owns it.
    app.screens.pixel_class = pixel_image_class()
    try:
        status = app.run()
    finally:
        for session in sessions:
            session.close()
        for record in records:
            record.close()
    return 0 if status is None else int(status)
