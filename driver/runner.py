"""Run a test script as a sequence of top-level statements.

The script is split with `ast` into its top-level statements; each one is
compiled on its own (keeping its real line numbers) and executed in one
globals dict, so a front end sees where the run is, and a rerun can start
from any statement while reusing the namespace the earlier ones built.

The source is registered in `linecache` under a stable pseudo-filename
(`code_filename`), so tracebacks, the stepper and breakpoints all point at
real lines of the script even when the file on disk has changed since.

Failures are reported the NixOS way: only the script's own frames, each with
its source line, then `ExcType: message`, as error log lines; the one-line
reason and the failing line go into `ScriptFinished`.
"""

from __future__ import annotations

import __future__
import ast
import builtins
import difflib
import itertools
import linecache
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from driver import processes
from driver.errors import MachineError, ScriptCancelled, ScriptSyntaxError, TestScriptError
from driver.events import (
    EventBus,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
)
from driver.logger import Logger
from driver.scriptapi import script_modules

if TYPE_CHECKING:
    from driver.stepper import Stepper


@dataclass(frozen=True)
class Statement:
    """One top-level statement of the script (lines are 1-based, inclusive)."""

    index: int
    line: int
    end_line: int
    text: str


@dataclass(frozen=True)
class RunResult:
    ok: bool
    # One line: `ExcType: first line of the message`.
    error: str | None = None
    # The innermost line of the script where the failure happened.
    error_line: int | None = None
    cancelled: bool = False
    # Set when the run failed on a NameError for a name the script uses like
    # a node (`clinet.succeed(...)`): bad input rather than a test failure.
    unknown_node: str | None = None



class ScriptHost(Protocol):
    """What the runner needs from the Driver (a fake in unit tests)."""

    logger: Logger
    cancel_event: threading.Event

    def test_symbols(self) -> dict[str, Any]: ...

    @property
    def node_names(self) -> list[str]: ...


# Machine API names: `x.<one of these>(...)` on an unbound `x` is a node name
# the test does not have (a typo or a node missing from the spec).
MACHINE_METHODS = frozenset(
    """
    start shutdown crash reboot wait_for_shutdown is_up release connect switch_root
    execute succeed fail wait_until_succeeds wait_until_fails sleep systemctl
    start_job stop_job get_unit_info get_unit_property require_unit_state
    wait_for_unit wait_for_file wait_for_open_port wait_for_closed_port
    wait_for_open_unix_socket wait_for_console_text get_console_log send_console
    console_interact shell_interact send_monitor_command send_key send_chars
    screenshot get_screen_text get_screen_text_variants wait_for_text get_tty_text
    wait_until_tty_matches dump_tty_contents wait_for_x get_window_names
    wait_for_window forward_port block unblock wait_for_qmp_event copy_from_host
    copy_from_host_via_shell copy_from_machine copy_from_vm log nested ssh_backdoor_command
    wait_for_job create_efi_vars write_efi_vars read_efi_vars dump_efi_vars
    """.split()
)

_run_ids = itertools.count(1)


def first_changed_statement(old: list[Statement], new: list[Statement]) -> int | None:
    """Index of the first statement of `new` that differs from `old`.

    None when nothing changed.  Statements are compared by their text only,
    so moving code down by blank lines does not count as a change.
    """
    for index, (before, after) in enumerate(zip(old, new)):
        if before.text != after.text:
            return index
    if len(old) == len(new):
        return None
    return min(len(old), len(new))


@dataclass(frozen=True)
class CompiledScript:
    code_filename: str
    tree: ast.Module
    statements: list[Statement]
    codes: list[types.CodeType]


def compile_script(source: str, filename: str) -> CompiledScript:
    """Split and compile a script; `ScriptSyntaxError` when it does not compile.

    Touches no state, so front ends can check a script before any VM starts.
    """
    code_filename = pseudo_filename(filename)
    try:
        tree = ast.parse(source, filename=code_filename)
        statements, codes = _split(tree, source, code_filename)
    except SyntaxError as exc:
        raise ScriptSyntaxError(filename, exc.lineno, exc.msg or "invalid syntax") from None
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise ScriptSyntaxError(filename, None, str(exc)) from None
    return CompiledScript(code_filename=code_filename, tree=tree, statements=statements, codes=codes)


def find_unknown_node_names(tree: ast.AST, known: Iterable[str]) -> list[tuple[str, int]]:
    """Names used as `name.<machine method>(...)` that nothing defines.

    Returns (name, first line using it), in line order.  Checked before any
    VM boots, so a typo in a node name is a one-line error instead of a
    failure minutes into the run.
    """
    defined = _bound_names(tree) | set(known) | set(dir(builtins))
    first_use: dict[str, int] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in MACHINE_METHODS
            and isinstance(node.value, ast.Name)
            and isinstance(node.value.ctx, ast.Load)
            and node.value.id not in defined
        ):
            name = node.value.id
            first_use[name] = min(first_use.get(name, node.lineno), node.lineno)
    return sorted(first_use.items(), key=lambda item: (item[1], item[0]))


class ScriptRunner:
    """Runs a loaded script statement by statement; see docs/internals.md."""

    def __init__(self, driver: ScriptHost, bus: EventBus, stepper: Stepper | None = None) -> None:
        self.driver = driver
        self.bus = bus
        self.stepper = stepper
        self.statements: list[Statement] = []
        self.namespace: dict[str, Any] | None = None
        self.filename = ""
        self.code_filename = ""
        self.source = ""
        self._tree: ast.Module | None = None
        self._loaded = False
        # Set by a `sys.exit(0)` in the script: the run ends early, successfully.
        self._ended_early = False
        self._codes: list[types.CodeType] = []
        self._injected: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._running = False
        self._cancelled = False
        self._script_thread: int | None = None
        self.current_statement: Statement | None = None
        if stepper is not None and hasattr(driver, "breakpoint_hook"):
            # `debug.breakpoint()` in the script pauses in this stepper.
            driver.breakpoint_hook = stepper.request_break

    # -- loading ------------------------------------------------------------

    def load(self, source: str, filename: str) -> None:
        """Parse and compile `source`; on a syntax error nothing changes."""
        script = compile_script(source, filename)
        with self._lock:
            if self._running:
                raise RuntimeError("cannot load a script while a run is in progress")
            self.source = source
            self.filename = filename
            self.code_filename = script.code_filename
            self.statements = script.statements
            self._codes = script.codes
            self._tree = script.tree
            self._loaded = True
        register_source(script.code_filename, source)

    def unknown_node_names(self, known: Iterable[str]) -> list[tuple[str, int]]:
        """See `find_unknown_node_names`; for the loaded script."""
        if self._tree is None:
            return []
        return find_unknown_node_names(self._tree, known)

    # -- running --------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._running

    def run(self, from_statement: int = 0, until: int | None = None) -> RunResult:
        """Run statements `from_statement..` (in the calling thread).

        From 0, the namespace is fresh (`driver.test_symbols()`); from k > 0
        the namespace of the previous run is reused, so a rerun continues
        where the unchanged statements left off.  With `until`, the run stops
        before that statement (rerunning only a failed subtest, or replaying
        up to a statement after restoring a checkpoint).
        """
        if not self._loaded:
            raise RuntimeError("load() a script before run()")
        if not 0 <= from_statement <= len(self.statements):
            raise ValueError(f"no statement {from_statement} (the script has {len(self.statements)})")
        if until is not None and not from_statement <= until <= len(self.statements):
            raise ValueError(f"cannot run statements {from_statement} to {until} (the script has {len(self.statements)})")
        with self._lock:
            if self._running:
                raise RuntimeError("the script is already running")
            self._running = True
            self._cancelled = False
            self._ended_early = False
            self._script_thread = threading.get_ident()
            self.driver.cancel_event.clear()
        run_id = next(_run_ids)
        try:
            with script_modules():
                return self._run(run_id, from_statement, until)
        finally:
            with self._lock:
                self._running = False
                # The VMs outlive the run: the REPL and the next run must
                # find them usable, not still cancelled.
                self.driver.cancel_event.clear()
            self.current_statement = None

    def _run(self, run_id: int, from_statement: int, until: int | None = None) -> RunResult:
        if from_statement == 0 or self.namespace is None:
            self.namespace = self._fresh_namespace()
        namespace = self.namespace
        self.driver.logger.set_line_provider(self.current_line)
        to_run = self.statements[from_statement:until]
        stepper = self.stepper
        if stepper is not None:
            # Before ScriptStarted: a front end that reacts to it can already
            # pause or stop the run.
            stepper.begin_run(
                run_id=run_id,
                code_filename=self.code_filename,
                display_filename=self.filename,
                injected_names=self._injected,
                cancel_event=self.driver.cancel_event,
                namespace=namespace,
            )
        started = time.monotonic()
        result = RunResult(ok=True)
        try:
            self.bus.publish(
                ScriptStarted(
                    filename=self.filename,
                    run_id=run_id,
                    first_line=to_run[0].line if to_run else None,
                )
            )
            for statement in to_run:
                result = self._run_statement(run_id, statement, namespace)
                if not result.ok or result.cancelled or self._ended_early:
                    break
                if self._cancelled:
                    result = RunResult(ok=False, cancelled=True)
                    break
        finally:
            if stepper is not None:
                stepper.end_run()
        self.bus.publish(
            ScriptFinished(
                run_id=run_id,
                ok=result.ok,
                duration=time.monotonic() - started,
                error=result.error,
                error_line=result.error_line,
                cancelled=result.cancelled,
            )
        )
        return result

    def _run_statement(self, run_id: int, statement: Statement, namespace: dict[str, Any]) -> RunResult:
        self.current_statement = statement
        code = self._codes[statement.index]
        self.bus.publish(StatementStarted(run_id=run_id, line=statement.line, end_line=statement.end_line))
        started = time.monotonic()
        paused_before = self._paused_seconds()

        def finished(ok: bool, error: str | None = None, *, cancelled: bool = False) -> None:
            # Time spent paused in the debugger is not the statement's.
            paused = self._paused_seconds() - paused_before
            self.bus.publish(
                StatementFinished(
                    run_id=run_id,
                    line=statement.line,
                    end_line=statement.end_line,
                    ok=ok,
                    duration=max(0.0, time.monotonic() - started - paused),
                    error=error,
                    cancelled=cancelled,
                )
            )

        try:
            if self.stepper is not None:
                self.stepper.statement_started(statement)
            exec(code, namespace)
        except ScriptCancelled:
            finished(False, "cancelled", cancelled=True)
            return RunResult(ok=False, cancelled=True)
        except SystemExit as exc:
            if exc.code in (None, 0):
                # sys.exit(0) in a script ends it early, successfully.
                finished(True)
                self._ended_early = True
                return RunResult(ok=True)
            return self._failed(exc, finished)
        except BaseException as exc:  # noqa: BLE001 - any failure of the script is reported
            if isinstance(exc, KeyboardInterrupt) or processes.ending():
                # After a signal vmtui is ending every VM: the script's failure
                # (a QEMU that went away under it) is that, not a test failure.
                finished(False, "cancelled", cancelled=True)
                return RunResult(ok=False, cancelled=True)
            return self._failed(exc, finished)
        finished(True)
        return RunResult(ok=True)

    def _paused_seconds(self) -> float:
        return self.stepper.paused_seconds if self.stepper is not None else 0.0

    def _failed(self, exc: BaseException, finished: Callable[[bool, str | None], None]) -> RunResult:
        error, error_line = self.report_failure(exc)
        finished(False, error)
        unknown = self._unknown_node(exc, error_line)
        if self.stepper is not None and self.stepper.post_mortem:
            try:
                self.stepper.post_mortem_pause(exc, error_line)
            except ScriptCancelled:
                pass  # stopping a post-mortem pause just ends the (failed) run
        return RunResult(ok=False, error=error, error_line=error_line, unknown_node=unknown)

    # -- failure reports ------------------------------------------------------

    def script_frames(self, exc: BaseException) -> list[traceback.FrameSummary]:
        return [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.code_filename]

    def report_failure(self, exc: BaseException) -> tuple[str, int | None]:
        """Log the NixOS-style report; return the one-line error and its line."""
        log = self.driver.logger
        frames = self.script_frames(exc)
        log.error("Traceback (most recent call last):")
        for frame in frames:
            log.error(f'  File "{self.filename}", line {frame.lineno}, in {frame.name}')
            source_line = linecache.getline(self.code_filename, frame.lineno or 0).strip()
            if source_line:
                log.error(f"    {source_line}")
        message = str(exc)
        log.error(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
        if not isinstance(exc, (TestScriptError, MachineError)):
            # Not a test failure: maybe a bug below the script; keep the
            # whole traceback at debug level for whoever investigates.
            for chunk in traceback.format_exception(exc):
                for line in chunk.rstrip("\n").split("\n"):
                    log.debug(line)
        first = message.strip().split("\n")[0] if message.strip() else ""
        one_line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        return one_line, (frames[-1].lineno if frames else None)

    def _unknown_node(self, exc: BaseException, error_line: int | None) -> str | None:
        if not isinstance(exc, NameError) or type(exc) is not NameError:
            return None
        name = exc.name
        if not isinstance(name, str) or not name:
            return None
        line = linecache.getline(self.code_filename, error_line or 0)
        used_as_node = any(f"{name}.{method}" in line for method in MACHINE_METHODS)
        nodes = list(getattr(self.driver, "node_names", []) or [])
        if used_as_node or difflib.get_close_matches(name, nodes, n=1, cutoff=0.75):
            return name
        return None

    # -- cancelling -----------------------------------------------------------

    def cancel(self) -> None:
        """Stop the run from any thread; the VMs stay up.

        Blocking machine waits and `retry` end through `driver.cancel_event`
        (they raise `ScriptCancelled`); with a stepper, `ScriptCancelled` is
        also raised at the next script line, which ends a script busy in a
        pure-Python loop.  Without a stepper such a loop runs on until it
        calls into the driver again.
        """
        with self._lock:
            if not self._running:
                return
            self._cancelled = True
            # Under the lock: the run's end clears the event under it too, so
            # a cancel racing with the end can never leave the event set for
            # the REPL and checkpoints after the run (they would fail as
            # "cancelled").
            self.driver.cancel_event.set()
            if self.stepper is not None:
                self.stepper.stop()

    # -- namespace and position -------------------------------------------------

    def _fresh_namespace(self) -> dict[str, Any]:
        namespace = dict(self.driver.test_symbols())
        self._injected = frozenset(namespace)
        return namespace

    @property
    def injected_names(self) -> frozenset[str]:
        """Names the driver put into the namespace (not the script's own)."""
        return self._injected

    def current_line(self) -> int | None:
        """The script line running right now, seen from any thread."""
        line = _innermost_script_line(sys._getframe(1), self.code_filename)
        if line is not None:
            return line
        thread = self._script_thread
        if self._running and thread is not None and thread != threading.get_ident():
            frame = sys._current_frames().get(thread)
            if frame is not None:
                line = _innermost_script_line(frame, self.code_filename)
                if line is not None:
                    return line
        statement = self.current_statement
        return statement.line if statement is not None else None


def pseudo_filename(filename: str) -> str:
    """The name the script's code objects carry (angle brackets: not a file)."""
    return f"<test script {filename}>"


def register_source(code_filename: str, source: str) -> None:
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # mtime None: linecache.checkcache() never evicts the entry.
    linecache.cache[code_filename] = (len(source), None, lines, code_filename)


def _innermost_script_line(frame: types.FrameType | None, code_filename: str) -> int | None:
    while frame is not None:
        if frame.f_code.co_filename == code_filename:
            return frame.f_lineno
        frame = frame.f_back
    return None


def _split(tree: ast.Module, source: str, code_filename: str) -> tuple[list[Statement], list[types.CodeType]]:
    lines = source.splitlines()
    statements: list[Statement] = []
    codes: list[types.CodeType] = []
    future_flags = 0
    for index, node in enumerate(tree.body):
        first = node.lineno
        decorators = getattr(node, "decorator_list", None) or []
        if decorators:
            first = min(first, *(d.lineno for d in decorators))
        last = node.end_lineno or node.lineno
        text = "\n".join(lines[first - 1 : last])
        module = ast.Module(body=[node], type_ignores=[])
        # `from __future__ import ...` must keep applying to later statements,
        # which are compiled separately.
        codes.append(compile(module, code_filename, "exec", flags=future_flags, dont_inherit=True))
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                if feature is not None:
                    future_flags |= feature.compiler_flag
        statements.append(Statement(index=index, line=first, end_line=last, text=text))
    return statements, codes


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the script binds anywhere (assignments, defs, imports ...)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound
