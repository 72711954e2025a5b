"""The app's glue for the script editor: edit in place, save is run, nothing lost.

`EditApp` sits between `LiveApp` (saves rerun the script) and `VmtuiApp`.
It puts a `CodeEditor` (widgets/code_editor.py) beside each source view and:

- `e` swaps the script pane (or the Nix source pane) for its editor at the
  cursor line; Escape swaps back (the edits stay, the title says so);
- Ctrl+S writes the file atomically and nothing more: the file watcher
  sees the save like any editor's, so the rerun (or the Nix rebuild) takes
  exactly the path an outside save takes;
- every save of the script is linted first (vmtui/lint.py; debounced while
  typing too, in a thread, so keys typed meanwhile are drawn at once): a
  save with undefined names runs nothing until the user asks (Ctrl+R) or
  fixes it;
- `E` hands the file to `$VISUAL`/`$EDITOR` with vmtui suspended;
- a change on disk while the editor holds unsaved edits asks (keep mine,
  take the file's, show the diff); quitting with unsaved edits asks too.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import SuspendNotSupported
from textual.css.query import NoMatches
from textual.message import Message
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Input, TextArea

from driver.events import Event, ScriptStarted, StatementFinished, StatementStarted
from driver.driver import pythonize_name
from vmtui.lint import complete, Diagnostic, Severity, errors_in, lint_script, script_globals
from vmtui.live_app import LiveApp
from vmtui.state_files import BreakpointStore
from vmtui.screens.editing import ConflictChoice, ConflictScreen, QuitChoice, UnsavedQuitScreen
from widgets.code_editor import CodeEditor, Finding, LineNote, focus_now
from widgets.line_anchors import line_mapping
from widgets.screen_view import ScreenView
from widgets.script_view import ScriptView, StatementMark
from widgets.terminal_view import TerminalView

# Pause in typing after which the script is linted (seconds).
LINT_DEBOUNCE = 0.3

# The panes of the sources switcher: each view and its editor.
_EDITOR_OF = {"script": "script-editor", "alt-source": "alt-editor"}
_VIEW_OF = {editor: view for view, editor in _EDITOR_OF.items()}


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` in one rename: a reader sees the old file or the new, never half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".vmtui-save")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def editor_command(path: Path, line: int) -> list[str]:
    """`$VISUAL`, else `$EDITOR`, else vi, opening `path` at `line` (`+N`, which vi, emacs, nano, micro take)."""
    chosen = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return [*shlex.split(chosen), f"+{line}", str(path)]


def notes_of(diagnostics: Iterable[Diagnostic]) -> list[LineNote]:
    return [LineNote(d.line, d.message, Finding.ERROR if d.severity is Severity.ERROR else Finding.WARNING)
            for d in diagnostics]


class LintDone(Message):
    """A background check of `text` found `found` (the editor may hold newer text by now)."""

    def __init__(self, text: str, found: list[Diagnostic]) -> None:
        super().__init__()
        self.text = text
        self.found = found


class EditApp(LiveApp):
    """The script editor for `VmtuiApp`; see the module docstring."""

    breakpoint_store: BreakpointStore

    def _init_editing(self) -> None:
        self.lint_names = script_globals(self.config)
        self.node_names = [pythonize_name(node.name) for node in self.config.nodes]
        self._lint_timer: Timer | None = None
        # The text of a script save that lint errors held back (Ctrl+R runs it anyway).
        self.held_save: str | None = None

    # -- which pane ------------------------------------------------------------------

    @property
    def script_editor(self) -> CodeEditor:
        return self.query_one("#script-editor", CodeEditor)

    def _editors(self) -> list[tuple[CodeEditor, Path]]:
        editors = [(self.script_editor, self.config.script_path)]
        if self.alt_source_path is not None:
            editors.append((self.query_one("#alt-editor", CodeEditor), self.alt_source_path))
        return editors

    def _path_of(self, editor: CodeEditor) -> Path:
        if editor.id == "alt-editor" and self.alt_source_path is not None:
            return self.alt_source_path
        return self.config.script_path

    @property
    def editing(self) -> bool:
        return self.query_one("#sources", ContentSwitcher).current in _VIEW_OF

    def _title_sources(self) -> None:
        try:
            switcher = self.query_one("#sources", ContentSwitcher)
        except NoMatches:
            return  # the app is closing
        current = switcher.current or "script"
        on_alt = current in ("alt-source", "alt-editor")
        shown = self.alt_source_path if on_alt and self.alt_source_path else self.config.script_path
        other = self.config.script_path if on_alt else self.alt_source_path
        editor = self.query_one(f"#{_EDITOR_OF[_VIEW_OF.get(current, current)]}", CodeEditor)
        title = f"[b]{shown.name}[/b]"
        if current in _VIEW_OF:
            title += "  [reverse] EDIT [/]"  # the footer names the keys
        if editor.dirty:
            title += "  [$warning]● unsaved[/]"
        if other is not None and current not in _VIEW_OF:
            title += f"   [dim]v: {other.name}[/]"
        if switcher.border_title != title:  # typing calls this per key: repaint the border only on a change
            switcher.border_title = title

    # -- e / Escape ---------------------------------------------------------------------

    def _complete(self, before_cursor: str) -> tuple[str, list[tuple[str, str]]]:
        typed, found = complete(before_cursor, self.node_names, self.lint_names)
        return typed, [(c.insert, c.detail) for c in found]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # `e` is a priority binding (handled before the key is routed, so the
        # keys typed after it already go to the editor); it means "edit" only
        # where the debugger keys apply (the script, a console, the overview,
        # the timeline, ...), never where a typed letter is text: the REPL
        # line, a search box, the editor itself, a shell or a VM's screen.
        if action == "edit":
            return not isinstance(self.focused, (Input, TextArea, TerminalView, ScreenView))
        return super().check_action(action, parameters)

    def action_edit(self) -> None:
        switcher = self.query_one("#sources", ContentSwitcher)
        view_id = switcher.current or "script"
        if view_id in _VIEW_OF:
            return
        view = self.query_one(f"#{view_id}", ScriptView)
        editor = self.query_one(f"#{_EDITOR_OF[view_id]}", CodeEditor)
        if not editor.dirty:
            editor.load(self._disk_text(self._path_of(editor)) or editor.saved_text)
        if view_id == "script":
            editor.completer = self._complete
            editor.set_breakpoints(view.breakpoints)
            self._sync_editor_marks()
            self._lint_editor()
        switcher.current = editor.id
        editor.goto_line(view.cursor_line)
        focus_now(editor.area)
        self._title_sources()

    @on(CodeEditor.Leave)
    def _leave_editor(self, message: CodeEditor.Leave) -> None:
        view_id = _VIEW_OF.get(message.editor.id or "", "script")
        self.query_one("#sources", ContentSwitcher).current = view_id
        view = self.query_one(f"#{view_id}", ScriptView)
        view.goto_line(message.line)
        focus_now(view)
        self._title_sources()

    @on(CodeEditor.Edited)
    def _edited(self, message: CodeEditor.Edited) -> None:
        self._title_sources()
        if message.editor is self.script_editor:
            if self._lint_timer is not None:
                self._lint_timer.stop()
            self._lint_timer = self.set_timer(LINT_DEBOUNCE, self._lint_in_background)

    def _lint_in_background(self) -> None:
        """The check while typing: pyflakes walks the whole script, so it runs off the UI thread."""
        try:
            text = self.script_editor.text
        except NoMatches:
            return  # the debounce fired while the app was closing
        self.run_worker(lambda: self._lint_text(text), thread=True, group="editor-lint", exclusive=True,
                        exit_on_error=False)

    def _lint_text(self, text: str) -> None:
        # Posting never blocks this thread, even while the app is closing.
        self.post_message(LintDone(text, lint_script(text, self.lint_names, self.config.script_path.name)))

    @on(LintDone)
    def _lint_done(self, message: LintDone) -> None:
        try:
            editor = self.script_editor
        except NoMatches:
            return
        if editor.text == message.text:  # else a newer check is on its way
            editor.set_notes(notes_of(message.found))

    def _lint_editor(self) -> list[Diagnostic]:
        try:
            editor = self.script_editor
        except NoMatches:
            return []  # the debounce fired while the app was closing
        found = lint_script(editor.text, self.lint_names, self.config.script_path.name)
        editor.set_notes(notes_of(found))
        return found

    # -- statement marks follow the editor's lines --------------------------------------

    def editor_saw_events(self, events: Iterable[Event]) -> None:
        """Driver events were drawn: the editor's gutter shows the new statement marks."""
        if self.editing and any(isinstance(e, (ScriptStarted, StatementStarted, StatementFinished)) for e in events):
            self._sync_editor_marks()

    def _sync_editor_marks(self) -> None:
        editor = self.script_editor
        marks = self.script_view.statement_marks
        if editor.dirty:
            # The marks are on the saved file's lines; the editor's have moved since.
            mapping = line_mapping(editor.saved_text.splitlines(), editor.text.splitlines())
            moved: dict[int, StatementMark] = {}
            for line, mark in marks.items():
                if line in mapping:
                    end = mapping.get(mark.end_line, mapping[line])
                    moved[mapping[line]] = StatementMark(mapping[line], max(end, mapping[line]), mark.mark, mark.duration, mark.stale)
            marks = moved
        editor.set_marks(marks)

    # -- Ctrl+S ----------------------------------------------------------------------------

    @on(CodeEditor.SaveRequested)
    def _save_requested(self, message: CodeEditor.SaveRequested) -> None:
        self.save_editor(message.editor)

    def save_editor(self, editor: CodeEditor) -> bool:
        """Write the editor's text; the watcher does the rest (rerun or rebuild).  False when it failed."""
        path = self._path_of(editor)
        text = editor.text
        try:
            write_atomically(path, text)
        except OSError as exc:
            self.notify(f"{path}: {exc.strerror or exc}", title="not saved", severity="error", timeout=8)
            return False
        editor.mark_saved(text)
        if editor is self.script_editor:
            self._lint_editor()
            self._adopt_editor_breakpoints(editor)
        self._title_sources()
        return True

    def _adopt_editor_breakpoints(self, editor: CodeEditor) -> None:
        """Breakpoints moved with their lines in the editor: the stepper has them where the lines are now."""
        if self.session is None:
            return
        stepper = self.session.stepper
        for line in stepper.breakpoints - editor.breakpoints:
            stepper.clear_breakpoint(line)
        for line in editor.breakpoints - stepper.breakpoints:
            stepper.set_breakpoint(line)
        self.breakpoint_store.save(self.config.script_path, stepper.breakpoints)

    # -- saves arrive (from vmtui or any editor) -------------------------------------------

    def _script_saved(self) -> None:
        text = self._disk_text(self.config.script_path)
        if text is None:
            super()._script_saved()
            return
        self._disk_changed(self.script_editor, text)
        errors = [d for d in errors_in(lint_script(text, self.lint_names)) if not d.message.startswith("SyntaxError")]
        if errors:
            # Nothing touches a VM: the user fixes the script, or asks to run it as it is.
            self.held_save = text
            listing = "\n".join(str(d) for d in errors[:6]) + ("\n…" if len(errors) > 6 else "")
            self.script_view.set_error_line(errors[0].line)
            self._show_paragraph(listing, title=f"not run: {len(errors)} lint error{'s' if len(errors) > 1 else ''}",
                                 hint="Nothing ran; the VMs are as they were.  Fix and save again, or ctrl+r runs it anyway.")
            return
        self.held_save = None
        super()._script_saved()

    def _source_saved(self) -> None:
        if self.alt_source_path is not None:
            text = self._disk_text(self.alt_source_path)
            if text is not None:
                self._disk_changed(self.query_one("#alt-editor", CodeEditor), text)
        super()._source_saved()

    def action_run_anyway(self) -> None:
        if self.held_save is None:
            self.notify("no save is waiting: ctrl+r runs a save that the lint held back", timeout=3)
            return
        self.held_save = None
        self._hide_error()
        self._apply_save()

    @on(CodeEditor.RunAnywayRequested)
    def _run_anyway_requested(self) -> None:
        self.action_run_anyway()

    @staticmethod
    def _disk_text(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def _disk_changed(self, editor: CodeEditor, text: str) -> None:
        """The file now holds `text`: the editor follows, or asks when that would drop unsaved edits."""
        if text == editor.saved_text:
            return  # our own save, or a save of what the editor already has
        if not editor.dirty:
            line = editor.cursor_line
            editor.load(text, line=line)
            self._title_sources()
            return

        def chosen(choice: ConflictChoice | None) -> None:
            if choice == "theirs":
                editor.load(text, line=editor.cursor_line)
            else:
                # Mine stays; the file stays too, until the next save.
                editor.mark_saved(text)
            self._title_sources()

        self.push_screen(ConflictScreen(self._path_of(editor).name, editor.text, text), chosen)

    # -- E: the user's own editor -----------------------------------------------------------

    def action_external_editor(self) -> None:
        switcher = self.query_one("#sources", ContentSwitcher)
        current = switcher.current or "script"
        view_id = _VIEW_OF.get(current, current)
        editor = self.query_one(f"#{_EDITOR_OF[view_id]}", CodeEditor)
        path = self._path_of(editor)
        line = editor.cursor_line if current in _VIEW_OF else self.query_one(f"#{view_id}", ScriptView).cursor_line
        if editor.dirty:
            self.notify("vmtui still holds unsaved edits of this file: you will be asked which to keep",
                        title="unsaved edits", severity="warning", timeout=6)
        before = self._disk_text(path)
        command = editor_command(path, line)
        try:
            with self.suspend():
                status = self._run_editor(command)
        except SuspendNotSupported:
            # No terminal to hand over (a headless run): the editor runs without one.
            status = self._run_editor(command, terminal=False)
        if status is None:
            self.notify(f"cannot start {command[0]} (set $VISUAL or $EDITOR)", title="editor", severity="error", timeout=8)
            return
        if status != 0:
            self.notify(f"{command[0]} exited with status {status}", title="editor", severity="warning", timeout=5)
        after = self._disk_text(path)
        if after is not None and after != before:
            # The watcher reruns (or rebuilds) as for any save; the views follow now.
            self._disk_changed(editor, after)

    @staticmethod
    def _run_editor(command: list[str], *, terminal: bool = True) -> int | None:
        try:
            done = subprocess.run(command, check=False, stdin=None if terminal else subprocess.DEVNULL)
        except OSError:
            return None
        return done.returncode

    # -- quitting ---------------------------------------------------------------------------

    def unsaved_editors(self) -> list[CodeEditor]:
        return [editor for editor, _ in self._editors() if editor.dirty]

    def ask_before_quit(self) -> bool:
        """True when unsaved edits wait: the user is asked, and `finish_quit` runs on their answer."""
        unsaved = self.unsaved_editors()
        if not unsaved:
            return False

        def chosen(choice: QuitChoice | None) -> None:
            if choice == "save":
                if not all(self.save_editor(editor) for editor in unsaved):
                    return
            if choice in ("save", "discard"):
                self.call_later(self.finish_quit)

        self.push_screen(UnsavedQuitScreen([self._path_of(e).name for e in unsaved]), chosen)
        return True

    def finish_quit(self) -> None:
        raise NotImplementedError
