"""The app's glue for live iteration: saves, rebuilds, restarts, checkpoints, shells.

`LiveApp` is the base of `VmtuiApp` (vmtui/app.py) that wires `LiveState`
(the decisions, vmtui/live.py) and `RerunController` (vmtui/rerun.py) to
the screen.  Its workers do the blocking parts and answer with the typed
messages of vmtui/messages.py, handled here with `@on` on the UI thread.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from textual import on, work
from textual.app import App
from textual.message import Message

from driver.config import TestConfig
from driver.errors import ConfigError
from driver.logger import Logger
from vmtui.live import (
    LiveState,
    Notice,
    RestartRequest,
    checkpoint_notice,
    next_rerun_mode,
    rewind_notice,
    save_view,
    saved_files,
    statement_at,
)
from vmtui.messages import (
    CheckpointFailed,
    CheckpointTaken,
    FilesSaved,
    NodesRestarted,
    RebuildFailed,
    RebuildFinished,
    RebuildProgress,
    RerunRequested,
    RestartFailed,
    Rewound,
    SaveApplied,
    ShellFailed,
    ShellOpened,
    while_running,
)
from vmtui.nix import NixBuildCancelled
from vmtui.rebuild import SourceRebuilder
from vmtui.rerun import RerunController, RerunMode
from vmtui.watch import FileWatcher
from widgets.console_column import ConsoleColumn
from widgets.console_pane import ConsolePane
from widgets.error_banner import ErrorBanner
from widgets.run_status import RunStatus
from widgets.script_view import ScriptView
from widgets.screen_view import ScreenPane
from widgets.terminal_view import ShellPane, TerminalView
from widgets.textual_hooks import keymap_of

if TYPE_CHECKING:
    from driver.shell import Shells
    from vmtui.session import Session


class LiveApp(App[int]):
    """Live iteration for `VmtuiApp`; see the module docstring."""

    config: TestConfig
    session: Session | None
    script_source: str
    alt_source_path: Path | None

    def _init_live(self, config: TestConfig, nix_attr: str | None) -> None:
        # Saves of the .nix/.toml source: rebuild, swap the script, restart changed nodes.
        self.rebuilder = SourceRebuilder.for_config(config, attr=nix_attr) if self.alt_source_path else None
        # Every decision of live iteration (rebuilds, restarts, reruns) and its flags.
        self.live = LiveState(restart_key=lambda: self._key_for("vmtui.restart_changed_nodes", "R"))
        self.rerun: RerunController | None = None
        self._watcher: FileWatcher | None = None
        self._watch_lock = threading.Lock()
        self._live_stopped = False
        self._unsubscribe_rerun: Callable[[], None] | None = None

    def _stop_live(self) -> None:
        # Under the lock: a worker may be starting a watcher right now, and
        # none may start after this (its thread would outlive the app).
        with self._watch_lock:
            self._live_stopped = True
            if self._watcher is not None:
                self._watcher.stop()
        if self._unsubscribe_rerun is not None:
            self._unsubscribe_rerun()

    # Provided by VmtuiApp (the script pane and the script worker).

    @property
    def script_view(self) -> ScriptView:
        return self.query_one("#script", ScriptView)

    def _run_script(self, start: int = 0, until: int | None = None) -> object:
        raise NotImplementedError

    def _show_breakpoints(self) -> None:
        raise NotImplementedError

    # -- worker answers and the error banner ---------------------------------------

    def _answer(self, message: Message) -> None:
        """Post a worker's answer to the app (from any thread); dropped once the app is gone."""
        try:
            self.post_message(message)
        except RuntimeError:
            pass  # the app's loop is closing

    def _show_error(self, error: str, *, line: int | None = None, hint: str = "", title: str = "failed") -> None:
        line_text = self.script_view.line_text(line) if line is not None else ""
        self.query_one(ErrorBanner).show_error(error, line=line, line_text=line_text, hint=hint, title=title)
        if line is not None:
            # The banner takes rows from the script view: keep the line in sight.
            self.call_after_refresh(self.script_view.goto_line, line)

    def _show_paragraph(self, message: str, *, title: str, hint: str = "") -> None:
        self.query_one(ErrorBanner).show_paragraph(message, title=title, hint=hint)

    def _hide_error(self) -> None:
        self.query_one(ErrorBanner).hide()

    # -- live iteration: rerun on save, checkpoints, shells ------------------------

    @property
    def pending_restart(self) -> dict[str, str]:
        return self.live.pending_restart

    @property
    def rebuilding(self) -> bool:
        return self.live.rebuilding

    def _start_live(self) -> None:
        """Saves of the script rerun it against the running VMs (see vmtui/rerun.py)."""
        session = self.session
        if self.rerun is not None or session is None:
            return
        self.rerun = RerunController(
            session.runner,
            self.config.script_path,
            start_run=lambda start, stop: self._answer(RerunRequested(start, stop)),
            cancel_event=session.driver.cancel_event,
            checkpoints=session.checkpoints,
            all_nodes_up=lambda: bool(session.driver.machines) and all(m.is_up() for m in session.driver.machines),
            log=session.driver.logger.info,
        )
        # Before the first run starts: the tracker and the boot checkpoint see it.
        self._unsubscribe_rerun = session.bus.subscribe(self.rerun.on_event)
        self._watch_files(wait=False)

    def _watch_files(self, *, wait: bool = True) -> None:
        """Watch the script and the source; again after the script moved (blocks briefly)."""
        watched = {self.config.script_path}
        if self.alt_source_path is not None:
            watched.add(self.alt_source_path)
        with self._watch_lock:
            if self._live_stopped:
                return
            if self._watcher is not None:
                if self._watcher.paths == frozenset(p.resolve() for p in watched):
                    return
                self._watcher.stop()
            self._watcher = FileWatcher(watched, lambda paths: self._answer(FilesSaved(frozenset(paths))))
            self._watcher.start(wait=wait)

    @on(FilesSaved)
    @while_running
    def _on_files_saved(self, message: FilesSaved) -> None:
        saved = saved_files(message.paths, self.config.script_path, self.alt_source_path)
        if saved.script:
            self._script_saved()
        if saved.source:
            self._source_saved()

    # What a save of each file does (EditApp lints and checks for conflicts first).

    def _script_saved(self) -> None:
        self._apply_save()

    def _source_saved(self) -> None:
        self.start_rebuild()

    # -- live iteration: the .nix/.toml source -----------------------------------------

    def start_rebuild(self) -> None:
        """The source was saved: resolve it again (Nix builds) in a worker.

        A rebuild still under way is stale now: it is cancelled (Nix is
        killed) and its result, should it arrive, is dropped.
        """
        if self.rebuilder is None or self.session is None or self.rerun is None:
            self.notify("the source changed before the session was ready: restart vmtui to apply it",
                        title="source saved", severity="warning", timeout=6)
            return
        cancel = self.live.begin_rebuild()
        self._load_alt_source()
        self.query_one(RunStatus).set_message("rebuilding", self.rebuilder.source.name)
        # The worker diffs against a copy: the UI thread may point the
        # session's config at a moved script meanwhile.
        self._rebuild(self.rebuilder, dataclasses.replace(self.session.config), self.session.driver.logger, cancel)

    def _load_alt_source(self) -> None:
        if self.alt_source_path is None:
            return
        try:
            text = self.alt_source_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        self.query_one("#alt-source", ScriptView).load(text)

    @work(thread=True, group="rebuild", exit_on_error=False, name="rebuild the source")
    def _rebuild(self, rebuilder: SourceRebuilder, config: TestConfig, logger: Logger, cancel: threading.Event) -> None:
        def progress(line: str) -> None:
            # Nix's reader thread: its lines go to the timeline (under the
            # rebuild block) and the newest one to the status line.
            if cancel.is_set() or not line.strip():
                return
            logger.info(line)
            self._answer(RebuildProgress(cancel, line.strip()))

        try:
            with logger.nested(f"rebuilding {rebuilder.source.name}"):
                result = rebuilder.rebuild(config, on_progress=progress, cancel=cancel)
        except NixBuildCancelled:
            return  # a newer save took over
        except Exception as error:  # noqa: BLE001 - ConfigError/NixError above all; the VMs stay up regardless
            message = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
            if not cancel.is_set():
                self._answer(RebuildFailed(cancel, message))
            return
        if not cancel.is_set():
            self._answer(RebuildFinished(cancel, result))

    @on(RebuildProgress)
    @while_running
    def _rebuild_progress(self, message: RebuildProgress) -> None:
        if message.cancel is self.live.rebuild_cancel and self.rebuilder is not None:
            self.query_one(RunStatus).set_message("rebuilding", f"{self.rebuilder.source.name}: {message.line}")

    @on(RebuildFailed)
    @while_running
    def _rebuild_failed(self, message: RebuildFailed) -> None:
        if not self.live.finish_rebuild(message.cancel):
            return
        name = self.alt_source_path.name if self.alt_source_path else "the source"
        self.query_one(RunStatus).set_message("rebuild failed", f"{name}: the VMs keep running")
        self._show_paragraph(message.message, title="rebuild failed",
                             hint=f"The VMs and the script are as they were.  Fix {name} and save it again.")

    @on(RebuildFinished)
    @while_running
    def _rebuilt(self, message: RebuildFinished) -> None:
        if not self.live.finish_rebuild(message.cancel) or self.session is None:
            return
        self._hide_error()
        decision = self.live.rebuilt(message.result)
        for warning in decision.warnings:
            self.session.driver.logger.warning(warning)
        if decision.status is not None:
            self.query_one(RunStatus).set_message(decision.status.state, decision.status.detail)
        for notice in decision.notices:
            self._notify(notice)
        if decision.swap is not None:
            self._adopt_script_path(decision.swap.path)
            self._swap_script(decision.swap.path, decision.swap.run)

    def _notify(self, notice: Notice) -> None:
        self.notify(notice.message, title=notice.title, severity=notice.severity, timeout=notice.timeout)

    def _key_for(self, binding_id: str, default: str) -> str:
        return keymap_of(self).get(binding_id, default).split(",")[0]

    def _adopt_script_path(self, path: Path) -> None:
        """UI thread, before any worker uses it: every holder of the config learns where the script lives now."""
        holders = [self.config]
        if self.session is not None:
            holders += [self.session.config, self.session.driver.config]
        for config in {id(c): c for c in holders}.values():
            config.script_path = path
        if self.rerun is not None:
            self.rerun.script_path = path

    @work(thread=True, group="live", exit_on_error=False, name="swap the script")
    def _swap_script(self, path: Path, run: bool) -> None:
        assert self.rerun is not None
        if run:
            self._answer(SaveApplied(self.rerun.swap_script(path)))
        self._watch_files()

    def action_restart_changed_nodes(self) -> None:
        if self.session is None or self.rerun is None:
            self.notify("the machines are not ready yet", severity="warning", timeout=2)
            return
        request = self.live.take_restart()
        if request is None:
            self.notify("no node needs a restart: the last rebuild changed no node", timeout=3)
            return
        self.query_one(RunStatus).set_message("restarting", request.names)
        self._restart_nodes(self.rerun, self.session, request)

    @work(thread=True, group="live", exit_on_error=False, name="restart changed nodes")
    def _restart_nodes(self, rerun: RerunController, session: Session, request: RestartRequest) -> None:
        try:
            rerun.stop_run()
            session.restart_nodes(request.nodes)
        except Exception as error:  # noqa: BLE001 - shown; the other nodes keep running
            self._answer(RestartFailed(request, str(error)))
            return
        self._answer(NodesRestarted(request))

    @on(RestartFailed)
    @while_running
    def _restart_failed(self, message: RestartFailed) -> None:
        self.live.restart_failed(message.request)
        self.query_one(RunStatus).set_message("restart failed", message.request.names)
        self._show_paragraph(message.message, title="restart failed",
                             hint="The other nodes keep running.  R tries again; or fix the source and save it.")

    @on(NodesRestarted)
    @while_running
    def _nodes_restarted(self, message: NodesRestarted) -> None:
        self.notify(f"restarted {message.request.names}; the others kept running", title="nodes", timeout=5)
        # The restarted nodes lost every effect of the script: run all of it.
        script = message.request.script
        if script is not None:
            self._adopt_script_path(script)
        self._rerun_all(script)

    @work(thread=True, group="live", exit_on_error=False, name="rerun after a restart")
    def _rerun_all(self, script: Path | None) -> None:
        assert self.rerun is not None
        if script is not None:
            outcome = self.rerun.swap_script(script, RerunMode.ALL)
            self._watch_files()
        else:
            outcome = self.rerun.rerun(RerunMode.ALL)
        self._answer(SaveApplied(outcome))

    @work(thread=True, group="live", exit_on_error=False, name="rerun on save")
    def _apply_save(self) -> None:
        assert self.rerun is not None
        self._answer(SaveApplied(self.rerun.saved()))

    def _sync_script_view(self) -> None:
        if self.session is not None and self.session.source != self.script_source:
            self.script_source = self.session.source
            self.script_view.load(self.script_source)
            self._show_breakpoints()

    @on(RerunRequested)
    @while_running
    def _start_rerun(self, message: RerunRequested) -> None:
        assert self.session is not None
        # The view shows the loaded version before the rerun marks its lines.
        self._sync_script_view()
        self.session.stepper.stop_at_start = False
        self.live.run_started(None)
        self._run_script(message.start, message.until)

    @on(SaveApplied)
    @while_running
    def _show_save_outcome(self, message: SaveApplied) -> None:
        view = save_view(message.outcome)
        if view.syntax_error is not None:
            try:
                self.script_view.load(self.config.script_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                pass
            self.script_view.set_error_line(view.syntax_error_line)
            self._show_error(view.syntax_error, line=view.syntax_error_line, title="syntax error",
                             hint="Nothing runs until the script compiles again; the VMs stay up.")
            return
        self._sync_script_view()
        if view.hide_error:
            self._hide_error()
        if view.notice is not None:
            self._notify(view.notice)

    def action_rerun_mode(self) -> None:
        if self.rerun is None:
            return
        self.rerun.mode = next_rerun_mode(self.rerun.mode)
        self.notify(self.rerun.describe_mode(), title="rerun mode", timeout=3)

    def action_checkpoint(self) -> None:
        if self.rerun is None:
            self.notify("the machines are not ready yet", severity="warning", timeout=2)
            return
        self._take_checkpoint(self.rerun)

    @work(thread=True, group="live", exit_on_error=False, name="checkpoint")
    def _take_checkpoint(self, rerun: RerunController) -> None:
        try:
            checkpoint = rerun.checkpoint_now()
        except Exception as exc:  # noqa: BLE001 - shown to the user, the VMs stay as they are
            self._answer(CheckpointFailed(str(exc)))
            return
        if checkpoint is None:
            self._answer(CheckpointTaken(None, 0.0))
        else:
            self._answer(CheckpointTaken(checkpoint.name, checkpoint.save_seconds))

    @on(CheckpointTaken)
    @while_running
    def _checkpoint_taken(self, message: CheckpointTaken) -> None:
        self._notify(checkpoint_notice(message.name, message.save_seconds))

    @on(CheckpointFailed)
    @while_running
    def _checkpoint_failed(self, message: CheckpointFailed) -> None:
        self.notify(message.message, title="checkpoint", severity="error", timeout=8)

    def action_rewind(self) -> None:
        if self.rerun is None or self.session is None:
            return
        index = statement_at(self.session.runner.statements, self.script_view.cursor_line)
        if index is None:
            self.notify("put the cursor on a top-level statement", timeout=3)
            return
        self._rewind(self.rerun, index)

    @work(thread=True, group="live", exit_on_error=False, name="rewind")
    def _rewind(self, rerun: RerunController, index: int) -> None:
        self._answer(Rewound(rerun.rewind(index)))

    @on(Rewound)
    @while_running
    def _rewound(self, message: Rewound) -> None:
        notice = rewind_notice(message.outcome)
        if notice is not None:
            self._notify(notice)

    def _focused_machine(self) -> str | None:
        node = self.focused
        while node is not None:
            if isinstance(node, (ConsolePane, ShellPane, ScreenPane)):
                return node.machine
            node = node.parent  # type: ignore[assignment]
        return None

    def _node_for_action(self, machine: str | None) -> str | None:
        """The node a per-node key acts on: the one named, else the focused
        pane's, else the node last chosen (1-9, 0, [, ], the overview), else
        the first; None (and a notice) before the session is up."""
        if self.session is None:
            self.notify("the machines are not ready yet", severity="warning", timeout=2)
            return None
        chosen = self.query_one(ConsoleColumn).current
        return (machine or self._focused_machine() or (chosen.machine if chosen is not None else None)
                or (self.config.nodes[0].name if self.config.nodes else None))

    def action_open_shell(self, machine: str | None = None) -> None:
        machine = self._node_for_action(machine)
        if machine is None:
            return
        pane = ShellPane(machine)
        consoles = self.query_one("#consoles")
        consoles.display = True
        consoles.mount(pane)
        # The size is read here, on the UI thread; the pane is sized after mounting.
        self.call_after_refresh(self._size_and_open_shell, pane)

    def _size_and_open_shell(self, pane: ShellPane) -> None:
        assert self.session is not None
        size = pane.view.size
        self._open_shell(self.session.shells, pane, max(size.width, 20), max(size.height, 5))

    @work(thread=True, group="shell", exit_on_error=False, name="open shell")
    def _open_shell(self, shells: Shells, pane: ShellPane, columns: int, lines: int) -> None:
        view = pane.view
        try:
            shell = shells.open(pane.machine, on_output=view.feed, on_closed=view.mark_closed,
                                columns=columns, lines=lines)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._answer(ShellFailed(pane, str(exc)))
            return
        self._answer(ShellOpened(pane, shell))

    @on(ShellOpened)
    @while_running
    def _shell_opened(self, message: ShellOpened) -> None:
        message.pane.attach(message.shell, f"/dev/hvc{message.shell.channel}")

    @on(ShellFailed)
    @while_running
    def _shell_failed(self, message: ShellFailed) -> None:
        message.pane.remove()
        self.notify(message.message, title=f"shell on {message.pane.machine}", severity="error", timeout=8)

    @on(TerminalView.Closed)
    def _shell_closed(self, event: TerminalView.Closed) -> None:
        pane = event.view.parent
        if isinstance(pane, ShellPane):
            pane.remove()
            self.notify(event.reason, title=f"shell on {pane.machine}", timeout=3)
