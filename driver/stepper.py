"""A step debugger for the test script, built on `bdb`.

The stepper traces only frames of the script itself (code compiled under
the runner's pseudo-filename): it never stops in, nor steps into, the
driver's own code.  A stop is made at a *logical* line: the first line of
the simple statement (or compound-statement header) being run, so a call
spread over several lines is one step and a breakpoint fires once.

Control calls (`resume`, `step_over`, `pause`, `stop`, `evaluate`, ...) may
come from any thread.  While paused, the script thread blocks in
`_interaction()` and serves `evaluate`/`variables` requests itself, so the
code a user types runs in the paused frame, on the thread that owns it.

Stepping:

* step over: at the first line of a top-level statement, run the whole
  statement and pause before the next one; elsewhere (inside a `with
  subtest(...)` body or a function) pause at the next line of the same
  frame, or of its caller when the frame returns.
* step into: pause at the very next script line, including inside `with`
  bodies and functions defined in the script.
* run to line, continue (breakpoints only), pause (next script line),
  stop (`ScriptCancelled` in the script thread plus the run's cancel event,
  so blocking waits end promptly; the VMs stay up).
* post-mortem: when a statement fails, the runner calls
  `post_mortem_pause()`: the stepper pauses at the failing line with reason
  "exception" and the failing frame still inspectable.
"""

from __future__ import annotations

import ast
import bdb
import contextlib
import io
import linecache
import queue
import reprlib
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driver.errors import ScriptCancelled
from driver.events import DebuggerPaused, DebuggerResumed, EventBus, FrameSummary
from driver.scriptapi import script_modules

if TYPE_CHECKING:
    from driver.runner import Statement

REPL_FILENAME = "<vmtui repl>"

_CONTINUE = "continue"
_STEP_INTO = "step-into"
_STEP_OVER = "step-over"  # next logical line in `frame` (or its caller)
_NEXT_STATEMENT = "next-statement"  # first line of a top-level frame other than `frame`
_RUN_TO = "run-to-line"
_PAUSE = "pause"
_BREAK = "break"  # requested by debug.breakpoint() in the script


@dataclass(frozen=True)
class _Plan:
    """When to stop next.  Replaced as a whole, so readers need no lock."""

    kind: str = _CONTINUE
    frame: types.FrameType | None = None
    line: int | None = None


@dataclass
class _Run:
    run_id: int
    code_filename: str
    display_filename: str
    injected_names: frozenset[str]
    cancel_event: threading.Event
    namespace: dict[str, Any]
    thread_id: int
    lines: _LineMap


@dataclass
class _Pause:
    frame: types.FrameType
    line: int
    reason: str
    post_mortem: bool


@dataclass
class _Request:
    """A job for the paused script thread; the caller waits on `done`."""

    kind: str  # "evaluate" | "variables"
    source: str = ""
    result: Any = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Go:
    plan: _Plan


class _Stop:
    pass


_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 20


def short_repr(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception as exc:  # a broken __repr__ must not break the debugger
        return f"<repr failed: {type(exc).__name__}: {exc}>"


class Stepper(bdb.Bdb):
    """Breakpoints and stepping over the test script; see docs/internals.md."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__()
        self.bus = bus
        self.stop_at_start = False
        self.post_mortem = True
        # Seconds the script thread has spent paused, in all; statement
        # timings leave this out (written by the script thread only).
        self.paused_seconds = 0.0
        self._lock = threading.Lock()
        self._breakpoints: frozenset[int] = frozenset()
        self._plan = _Plan()
        self._stop_requested = False
        self._run: _Run | None = None
        self._pause: _Pause | None = None
        self._commands: queue.Queue[_Request | _Go | _Stop] = queue.Queue()
        self._statement: Statement | None = None
        # Line of the previous line event per frame, to stop once per logical line.
        self._last_logical: dict[int, int] = {}
        self._evaluating = False
        self._idle_namespace: dict[str, Any] | None = None
        self._idle_injected: frozenset[str] = frozenset()

    # -- breakpoints ------------------------------------------------------------

    @property
    def breakpoints(self) -> frozenset[int]:
        return self._breakpoints

    def set_breakpoint(self, line: int) -> None:
        with self._lock:
            self._breakpoints = self._breakpoints | {line}

    def clear_breakpoint(self, line: int) -> None:
        with self._lock:
            self._breakpoints = self._breakpoints - {line}

    def toggle_breakpoint(self, line: int) -> bool:
        """Flip the breakpoint on `line`; True when it is now set."""
        with self._lock:
            if line in self._breakpoints:
                self._breakpoints = self._breakpoints - {line}
                return False
            self._breakpoints = self._breakpoints | {line}
            return True

    def clear_all_breakpoints(self) -> None:
        with self._lock:
            self._breakpoints = frozenset()

    # -- state ------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        return self._pause is not None

    @property
    def is_running(self) -> bool:
        return self._run is not None

    @property
    def paused_line(self) -> int | None:
        pause = self._pause
        return pause.line if pause is not None else None

    # -- control (any thread) -----------------------------------------------------

    def _command_or_plan(self, plan: _Plan) -> None:
        with self._lock:
            if self._pause is not None:
                self._commands.put(_Go(plan))
            elif self._run is not None:
                self._plan = plan

    def resume(self) -> None:
        self._command_or_plan(_Plan(_CONTINUE))

    def step_into(self) -> None:
        self._command_or_plan(_Plan(_STEP_INTO))

    def step_over(self) -> None:
        with self._lock:
            pause = self._pause
            if pause is None:
                if self._run is not None:
                    # While running: pause before the next top-level statement.
                    self._plan = _Plan(_NEXT_STATEMENT)
                return
            self._commands.put(_Go(self._step_over_plan(pause)))

    def _step_over_plan(self, pause: _Pause) -> _Plan:
        frame = pause.frame
        statement = self._statement
        at_statement_start = (
            frame.f_code.co_name == "<module>" and statement is not None and pause.line == statement.line
        )
        if at_statement_start:
            return _Plan(_NEXT_STATEMENT, frame=frame)
        return _Plan(_STEP_OVER, frame=frame)

    def run_to_line(self, line: int) -> None:
        self._command_or_plan(_Plan(_RUN_TO, line=line))

    def pause(self) -> None:
        """Pause at the next script line (a running wait finishes first)."""
        with self._lock:
            if self._run is not None and self._pause is None:
                self._plan = _Plan(_PAUSE)

    def request_break(self) -> None:
        """Pause at the next script line with reason "breakpoint".

        Bound to `debug.breakpoint()` in the script namespace.
        """
        with self._lock:
            if self._run is not None and self._pause is None:
                self._plan = _Plan(_BREAK)

    def stop(self) -> None:
        """End the run: `ScriptCancelled` in the script; the VMs stay up."""
        with self._lock:
            run = self._run
            if run is None:
                return
            self._stop_requested = True
            run.cancel_event.set()
            if self._pause is not None:
                self._commands.put(_Stop())

    # -- inspection (any thread) ----------------------------------------------------

    def evaluate(self, source: str) -> str:
        """Run `source` in the paused frame; returns its output as text (see `run_repl`)."""
        return self.run_repl(source).output

    def run_repl(self, source: str) -> Evaluation:
        """Run `source` in the paused frame.

        Expressions give their repr, statements their printed output;
        exceptions come back as text (`failed`) and never end the run.  When
        no run is active, the namespace of the last run is used.
        """
        request = _Request("evaluate", source=source)
        answer = self._ask(request)
        if isinstance(answer, Evaluation):
            return answer
        with self._lock:
            running = self._run is not None
            namespace = self._idle_namespace
        if running:
            return Evaluation("the script is running: pause it to evaluate code")
        if namespace is None:
            return Evaluation("no script namespace yet: run the script first")
        # As during a run, `import test_driver` gives vmtui's modules.
        with script_modules():
            return _evaluate(source, namespace, namespace)

    def variables(self) -> dict[str, str]:
        """The script's own names (no injected globals, modules or dunders)."""
        answer = self._ask(_Request("variables"))
        if answer is not None:
            return dict(answer)
        with self._lock:
            namespace = self._idle_namespace
            injected = self._idle_injected
        if namespace is None:
            return {}
        return _script_names(namespace, injected)

    def _ask(self, request: _Request) -> Any:
        """Hand `request` to the paused script thread; None when not paused."""
        with self._lock:
            pause = self._pause
            run = self._run
            if pause is None or run is None:
                return None
            if run.thread_id == threading.get_ident():
                # Asked from the script thread itself (inside the pause).
                return self._serve(request, pause, run)
            self._commands.put(request)
        request.done.wait()
        return request.result

    # -- the runner's side (script thread) --------------------------------------------

    def begin_run(
        self,
        *,
        run_id: int,
        code_filename: str,
        display_filename: str,
        injected_names: frozenset[str],
        cancel_event: threading.Event,
        namespace: dict[str, Any],
    ) -> None:
        """Start tracing the calling (script) thread for one run."""
        self.reset()
        with self._lock:
            self._run = _Run(
                run_id=run_id,
                code_filename=code_filename,
                display_filename=display_filename,
                injected_names=injected_names,
                cancel_event=cancel_event,
                namespace=namespace,
                thread_id=threading.get_ident(),
                lines=_line_map(linecache.getlines(code_filename)),
            )
            self._stop_requested = False
            self._plan = _Plan(_STEP_INTO if self.stop_at_start else _CONTINUE)
            self._last_logical.clear()
        sys.settrace(self.trace_dispatch)

    def statement_started(self, statement: Statement) -> None:
        self._statement = statement
        if self._stop_requested:
            raise ScriptCancelled("the run was stopped")

    def end_run(self) -> None:
        sys.settrace(None)
        with self._lock:
            run = self._run
            if run is not None:
                self._idle_namespace = run.namespace
                self._idle_injected = run.injected_names
            self._run = None
            self._plan = _Plan()
            self._statement = None
            self._last_logical.clear()

    def post_mortem_pause(self, exc: BaseException, error_line: int | None) -> None:
        """Pause at the failing script line; returns when resumed."""
        run = self._run
        if run is None:
            return
        frames = [
            (tb.tb_frame, tb.tb_lineno)
            for tb in _walk_tb(exc.__traceback__)
            if tb.tb_frame.f_code.co_filename == run.code_filename
        ]
        if not frames or self._stop_requested:
            return
        frame, line = frames[-1]
        stack = tuple(
            FrameSummary(filename=run.display_filename, line=ln, function=f.f_code.co_name, in_script=True)
            for f, ln in frames
        )
        message = str(exc).strip().split("\n") if str(exc).strip() else []
        error = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
        self._interaction(frame, error_line or line, "exception", stack=stack, error=error, post_mortem=True)

    # -- bdb hooks (script thread) ----------------------------------------------------

    def dispatch_call(self, frame: types.FrameType, arg: Any) -> Any:
        run = self._run
        if run is None or self._evaluating:
            return None
        if frame.f_code.co_filename != run.code_filename:
            return None  # driver internals are never traced line by line
        return self.trace_dispatch

    def dispatch_line(self, frame: types.FrameType) -> Any:
        run = self._run
        if run is None or self._evaluating:
            return self.trace_dispatch
        if self._stop_requested:
            raise ScriptCancelled("the run was stopped")
        line = run.lines.of(frame.f_lineno)
        key = id(frame)
        previous = self._last_logical.get(key)
        self._last_logical[key] = line
        if previous == line or run.lines.is_with_exit(line, previous):
            return self.trace_dispatch  # not a new step
        reason = self._stop_reason(frame, line)
        if reason is not None:
            self._interaction(frame, line, reason, stack=self._stack(frame, run))
        return self.trace_dispatch

    def dispatch_return(self, frame: types.FrameType, arg: Any) -> Any:
        run = self._run
        if run is None or self._evaluating:
            return self.trace_dispatch
        self._last_logical.pop(id(frame), None)
        plan = self._plan
        if plan.kind == _STEP_OVER and plan.frame is frame:
            caller = _nearest_script_frame(frame.f_back, run.code_filename)
            if caller is not None:
                self._plan = _Plan(_STEP_OVER, frame=caller)
            else:  # a top-level statement ended: stop before the next one
                self._plan = _Plan(_NEXT_STATEMENT, frame=frame)
        return self.trace_dispatch

    def dispatch_exception(self, frame: types.FrameType, arg: Any) -> Any:
        # Failures are handled post-mortem, once they escape a statement:
        # an exception caught inside the script is no reason to stop.
        return self.trace_dispatch

    def _stop_reason(self, frame: types.FrameType, line: int) -> str | None:
        plan = self._plan
        if plan.kind == _STEP_INTO:
            return "step"
        if plan.kind == _PAUSE:
            return "pause"
        if plan.kind == _BREAK:
            return "breakpoint"
        if self._breakpoints and self._hits_breakpoint(line):
            return "breakpoint"
        if plan.kind == _STEP_OVER and frame is plan.frame:
            return "step"
        if plan.kind == _NEXT_STATEMENT and frame.f_code.co_name == "<module>" and frame is not plan.frame:
            return "step"
        if plan.kind == _RUN_TO and plan.line is not None and self._same_logical_line(plan.line, line):
            return "run-to-line"
        return None

    def _hits_breakpoint(self, logical_line: int) -> bool:
        return any(self._same_logical_line(bp, logical_line) for bp in self._breakpoints)

    def _same_logical_line(self, line: int, logical_line: int) -> bool:
        run = self._run
        return (run.lines.of(line) if run is not None else line) == logical_line

    # -- pausing (script thread) ----------------------------------------------------

    def _interaction(
        self,
        frame: types.FrameType,
        line: int,
        reason: str,
        *,
        stack: tuple[FrameSummary, ...],
        error: str | None = None,
        post_mortem: bool = False,
    ) -> None:
        run = self._run
        assert run is not None
        pause = _Pause(frame=frame, line=line, reason=reason, post_mortem=post_mortem)
        with self._lock:
            self._pause = pause
            self._plan = _Plan()
        self.bus.publish(DebuggerPaused(run_id=run.run_id, line=line, reason=reason, stack=stack, error=error))
        stopped = False
        paused_at = time.monotonic()
        try:
            while True:
                command = self._commands.get()
                if isinstance(command, _Request):
                    command.result = self._serve(command, pause, run)
                    command.done.set()
                elif isinstance(command, _Stop):
                    stopped = True
                    break
                else:
                    with self._lock:
                        self._plan = command.plan
                    break
        finally:
            with self._lock:
                self._pause = None
                # Controls that arrived after the one that ended the pause
                # (continue, then step over, pressed quickly) still count:
                # the last one becomes the running plan.
                for leftover in _drain(self._commands):
                    if isinstance(leftover, _Request):
                        leftover.result = "the script is no longer paused"
                        leftover.done.set()
                    elif isinstance(leftover, _Go):
                        self._plan = leftover.plan
                    else:
                        stopped = True
            self.paused_seconds += time.monotonic() - paused_at
            self.bus.publish(DebuggerResumed(run_id=run.run_id))
        if stopped or self._stop_requested:
            raise ScriptCancelled("the run was stopped")

    def _serve(self, request: _Request, pause: _Pause, run: _Run) -> Any:
        frame = pause.frame
        if request.kind == "variables":
            return self._frame_variables(frame, run)
        self._evaluating = True
        try:
            if frame.f_code.co_name == "<module>":
                return _evaluate(request.source, frame.f_globals, frame.f_globals)
            return _evaluate(request.source, frame.f_globals, frame.f_locals)
        finally:
            self._evaluating = False

    def _frame_variables(self, frame: types.FrameType, run: _Run) -> dict[str, str]:
        names = _script_names(frame.f_globals, run.injected_names)
        if frame.f_code.co_name != "<module>":
            # Locals first: they shadow globals of the same name.
            local_names = {
                name: short_repr(value)
                for name, value in frame.f_locals.items()
                if not (name.startswith("__") and name.endswith("__"))
            }
            names = {**local_names, **{k: v for k, v in names.items() if k not in local_names}}
        return names

    def _stack(self, frame: types.FrameType, run: _Run) -> tuple[FrameSummary, ...]:
        """Frames from the outermost script frame to `frame` (innermost last)."""
        frames: list[types.FrameType] = []
        current: types.FrameType | None = frame
        while current is not None:
            frames.append(current)
            current = current.f_back
        frames.reverse()
        first = next(
            (i for i, f in enumerate(frames) if f.f_code.co_filename == run.code_filename), len(frames) - 1
        )
        summaries = []
        for f in frames[first:]:
            in_script = f.f_code.co_filename == run.code_filename
            summaries.append(
                FrameSummary(
                    filename=run.display_filename if in_script else f.f_code.co_filename,
                    line=run.lines.of(f.f_lineno) if in_script else f.f_lineno,
                    function=f.f_code.co_name,
                    in_script=in_script,
                )
            )
        return tuple(summaries)


# -- helpers ----------------------------------------------------------------------------


def _drain(commands: queue.Queue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(commands.get_nowait())
        except queue.Empty:
            return items


def _walk_tb(tb: types.TracebackType | None) -> list[types.TracebackType]:
    result = []
    while tb is not None:
        result.append(tb)
        tb = tb.tb_next
    return result


def _nearest_script_frame(frame: types.FrameType | None, code_filename: str) -> types.FrameType | None:
    while frame is not None:
        if frame.f_code.co_filename == code_filename:
            return frame
        frame = frame.f_back
    return None


def _script_names(namespace: dict[str, Any], injected: frozenset[str]) -> dict[str, str]:
    return {
        name: short_repr(value)
        for name, value in namespace.items()
        if name not in injected
        and not (name.startswith("__") and name.endswith("__"))
        and not isinstance(value, types.ModuleType)
    }


@dataclass(frozen=True)
class _LineMap:
    """Where each script line belongs, for stepping by logical lines."""

    # Every line of a simple statement (or compound header) -> its first line.
    logical: dict[int, int] = field(default_factory=dict)
    # `with` header line -> last line of its body.  Python reports the
    # header again when the body ends (to run `__exit__`): not a new step.
    with_bodies: dict[int, int] = field(default_factory=dict)

    def of(self, line: int) -> int:
        return self.logical.get(line, line)

    def is_with_exit(self, line: int, previous: int | None) -> bool:
        end = self.with_bodies.get(line)
        return end is not None and previous is not None and line < previous <= end


def _line_map(lines: list[str]) -> _LineMap:
    """Python reports line events for each line of a multi-line call; the
    stepper treats them as one step."""
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return _LineMap()
    mapping: dict[int, int] = {}
    with_bodies: dict[int, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        first = node.lineno
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            # A compound statement: only its header belongs to it.
            last = max(first, body[0].lineno - 1)
            decorators = getattr(node, "decorator_list", None) or []
            first = min([first, *(d.lineno for d in decorators)])
        else:
            last = node.end_lineno or first
        for line in range(first, last + 1):
            # Inner statements are visited later and take their own lines.
            mapping[line] = first
        if isinstance(node, (ast.With, ast.AsyncWith)):
            with_bodies[first] = node.end_lineno or first
    return _LineMap(logical=mapping, with_bodies=with_bodies)


@dataclass(frozen=True)
class Evaluation:
    """What a REPL line gave, structured so nobody parses text to learn it."""

    output: str                       # prints, then the value's repr or the error, as the user reads them
    failed: bool = False              # it raised, or did not compile
    string_value: str | None = None   # the expression's value when it is a str


def _evaluate(source: str, globals_: dict[str, Any], locals_: Any) -> Evaluation:
    """Run code typed by the user; everything it prints or raises is text."""
    output = io.StringIO()
    try:
        tree = ast.parse(source, REPL_FILENAME, "exec")
    except SyntaxError as exc:
        return Evaluation("".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n"), failed=True)
    last_expression = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last_expression is None or isinstance(last_expression, ast.Expr)
    failed = False
    string_value: str | None = None
    with contextlib.redirect_stdout(output):
        try:
            if tree.body:
                exec(compile(tree, REPL_FILENAME, "exec"), globals_, locals_)
            if last_expression is not None:
                expression = ast.Expression(last_expression.value)
                value = eval(compile(expression, REPL_FILENAME, "eval"), globals_, locals_)
                if value is not None:
                    print(repr(value))
                if isinstance(value, str):
                    string_value = value
        except ScriptCancelled:
            print("cancelled")
        except BaseException as exc:  # noqa: BLE001 - user code: report, never raise
            failed = True
            print(_format_user_exception(exc), end="")
    return Evaluation(output.getvalue().rstrip("\n"), failed, string_value)


def _format_user_exception(exc: BaseException) -> str:
    # Drop the frames of this module: the user wants their code's frames only.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
