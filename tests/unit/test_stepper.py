"""The stepper on a real ScriptRunner; the namespace is a small fake host.

Each test runs the script in a thread, like the TUI's worker does, and
drives it from the test thread through the stepper's control calls.
"""

from __future__ import annotations

import queue
import textwrap
import threading
import time
from typing import Any, Callable

import pytest

from driver.errors import RequestedAssertionFailed
from driver.events import DebuggerPaused, DebuggerResumed, EventBus, ScriptFinished, ScriptStarted, StatementFinished
from driver.logger import Logger
from driver.runner import RunResult, ScriptRunner
from driver.stepper import Stepper

# A safety net so a broken stepper fails the test instead of hanging it;
# not a timing assertion.
EVENT_WAIT = 60


def call_back(fn: Callable[[], Any]) -> Any:
    """Plays a driver helper (like retry) that calls back into the script."""
    return fn()


class FakeHost:
    def __init__(self, bus: EventBus) -> None:
        self.logger = Logger(bus)
        self.cancel_event = threading.Event()
        self.node_names = ["server"]

    def test_symbols(self) -> dict[str, Any]:
        return {
            "subtest": self.logger.subtest,
            "call_back": call_back,
            "fail": self.fail,
            "wait_for_cancel": self.wait_for_cancel,
        }

    @staticmethod
    def fail(message: str) -> None:
        raise RequestedAssertionFailed(message)

    def wait_for_cancel(self) -> None:
        # A blocking machine wait: returns only when the run is cancelled.
        self.cancel_event.wait()
        from driver.errors import ScriptCancelled

        raise ScriptCancelled()


class Session:
    def __init__(self, source: str, *, stop_at_start: bool = False, breakpoints: tuple[int, ...] = ()) -> None:
        self.bus = EventBus()
        self.pauses: queue.Queue[DebuggerPaused | ScriptFinished] = queue.Queue()
        self.resumed = 0
        self.started = threading.Event()
        self.bus.subscribe(self._on_event)
        self.host = FakeHost(self.bus)
        self.stepper = Stepper(self.bus)
        self.stepper.stop_at_start = stop_at_start
        for line in breakpoints:
            self.stepper.set_breakpoint(line)
        self.runner = ScriptRunner(self.host, self.bus, self.stepper)
        self.runner.load(textwrap.dedent(source), "/tests/script.py")
        self.result: RunResult | None = None
        self.thread: threading.Thread | None = None

    def _on_event(self, event: object) -> None:
        if isinstance(event, (DebuggerPaused, ScriptFinished)):
            self.pauses.put(event)
        elif isinstance(event, DebuggerResumed):
            self.resumed += 1
        elif isinstance(event, ScriptStarted):
            self.started.set()

    def start(self) -> Session:
        def run() -> None:
            self.result = self.runner.run()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def next_event(self) -> DebuggerPaused | ScriptFinished:
        return self.pauses.get(timeout=EVENT_WAIT)

    def paused(self) -> DebuggerPaused:
        event = self.next_event()
        assert isinstance(event, DebuggerPaused), event
        return event

    def where(self) -> tuple[int, str]:
        event = self.paused()
        return event.line, event.reason

    def finish(self) -> RunResult:
        event = self.next_event()
        assert isinstance(event, ScriptFinished), event
        assert self.thread is not None
        self.thread.join(EVENT_WAIT)
        assert self.result is not None
        return self.result


SCRIPT = """\
x = 1
def double(a):
    b = a * 2
    return b
with subtest("one"):
    y = double(
        x,
    )
    z = y + 1
w = z + 1
"""


def test_stop_at_start_and_step_over_top_level_statements() -> None:
    s = Session(SCRIPT, stop_at_start=True).start()
    assert s.where() == (1, "step")
    s.stepper.step_over()
    assert s.where() == (2, "step")
    s.stepper.step_over()
    assert s.where() == (5, "step")
    # Over the whole `with subtest` block: next top-level statement.
    s.stepper.step_over()
    assert s.where() == (10, "step")
    s.stepper.step_over()
    result = s.finish()
    assert result.ok
    assert s.runner.namespace is not None and s.runner.namespace["w"] == 4


def test_step_into_enters_blocks_and_script_functions() -> None:
    s = Session(SCRIPT, stop_at_start=True).start()
    s.where()
    s.stepper.step_over()
    s.where()
    s.stepper.step_over()
    assert s.where() == (5, "step")
    s.stepper.step_into()
    assert s.where() == (6, "step")
    s.stepper.step_into()
    event = s.paused()
    assert (event.line, event.reason) == (3, "step")
    assert [(f.function, f.line, f.in_script) for f in event.stack] == [("<module>", 6, True), ("double", 3, True)]
    assert all(f.filename == "/tests/script.py" for f in event.stack)
    # Step over inside the function, then out to the caller's next line;
    # the rest of the multi-line call is not a step of its own.
    s.stepper.step_over()
    assert s.where() == (4, "step")
    s.stepper.step_over()
    assert s.where() == (9, "step")
    # The end of the `with` body goes on to the next statement, not back to the header.
    s.stepper.step_over()
    assert s.where() == (10, "step")
    s.stepper.resume()
    assert s.finish().ok


def test_breakpoints_fire_once_per_logical_line() -> None:
    # Line 7 is inside the multi-line call that starts on line 6.
    s = Session(SCRIPT, breakpoints=(3, 7)).start()
    assert s.where() == (6, "breakpoint")
    s.stepper.resume()
    assert s.where() == (3, "breakpoint")
    s.stepper.resume()
    assert s.finish().ok


def test_toggle_and_clear_breakpoints() -> None:
    stepper = Stepper(EventBus())
    assert stepper.toggle_breakpoint(4) is True
    stepper.set_breakpoint(9)
    assert stepper.breakpoints == {4, 9}
    assert stepper.toggle_breakpoint(4) is False
    stepper.clear_breakpoint(9)
    assert stepper.breakpoints == frozenset()


def test_breakpoints_survive_loading_new_source() -> None:
    s = Session(SCRIPT, breakpoints=(10,))
    s.runner.load(textwrap.dedent(SCRIPT) + "v = w\n", "/tests/script.py")
    s.start()
    assert s.where() == (10, "breakpoint")
    s.stepper.resume()
    assert s.finish().ok


def test_run_to_line() -> None:
    s = Session(SCRIPT, stop_at_start=True).start()
    s.where()
    s.stepper.run_to_line(9)
    assert s.where() == (9, "run-to-line")
    s.stepper.resume()
    assert s.finish().ok


def test_pause_a_running_loop_and_inspect_it() -> None:
    s = Session(
        """\
        i = 0
        while True:
            i += 1
        """
    ).start()
    s.started.wait(EVENT_WAIT)
    s.stepper.pause()
    line, reason = s.where()
    assert reason == "pause" and line in (2, 3)
    assert int(s.stepper.evaluate("i")) >= 0
    s.stepper.stop()
    result = s.finish()
    assert result.cancelled and not result.ok


def test_pause_before_the_script_runs_is_harmless() -> None:
    stepper = Stepper(EventBus())
    stepper.pause()
    stepper.resume()
    stepper.step_over()
    stepper.stop()
    assert not stepper.is_paused


def test_stop_while_paused_cancels_the_run() -> None:
    s = Session(SCRIPT, stop_at_start=True).start()
    s.where()
    s.stepper.stop()
    result = s.finish()
    assert result.cancelled
    assert not s.stepper.is_paused
    assert not s.host.cancel_event.is_set()  # cleared once the run ended


def test_stop_ends_a_blocking_wait() -> None:
    s = Session("wait_for_cancel()\nnever = 1\n", breakpoints=(1,)).start()
    assert s.where() == (1, "breakpoint")
    s.stepper.resume()
    s.stepper.stop()
    assert s.finish().cancelled


def test_a_rerun_after_stop_starts_clean() -> None:
    s = Session(SCRIPT, stop_at_start=True).start()
    s.where()
    s.stepper.stop()
    assert s.finish().cancelled
    s.stepper.stop_at_start = False
    s.start()
    assert s.finish().ok


def test_post_mortem_pauses_at_the_failing_line_with_the_frame_alive() -> None:
    s = Session(
        """\
        def check(n):
            local_value = n * 10
            fail(f"bad value {local_value}")
        ready = True
        check(4)
        after = 1
        """
    ).start()
    event = s.paused()
    assert (event.line, event.reason) == (3, "exception")
    assert event.error == "RequestedAssertionFailed: bad value 40"
    assert [f.function for f in event.stack] == ["<module>", "check"]
    assert s.stepper.evaluate("local_value + 1") == "41"
    assert s.stepper.variables()["n"] == "4"
    assert s.stepper.variables()["ready"] == "True"
    s.stepper.resume()
    result = s.finish()
    assert not result.ok and result.error_line == 3
    assert "after" not in (s.runner.namespace or {})


def test_post_mortem_can_be_switched_off() -> None:
    s = Session("fail('x')\n")
    s.stepper.post_mortem = False
    s.start()
    assert not s.finish().ok


def test_exceptions_caught_by_the_script_do_not_pause() -> None:
    s = Session(
        """\
        try:
            fail("expected")
        except Exception:
            caught = True
        """
    ).start()
    assert s.finish().ok


def test_stepping_never_enters_driver_code_but_reaches_script_callbacks() -> None:
    s = Session(
        """\
        def callback():
            inner = 1
            return inner
        result = call_back(callback)
        """,
        stop_at_start=True,
    ).start()
    s.where()
    s.stepper.step_over()
    assert s.where() == (4, "step")
    s.stepper.step_into()
    event = s.paused()
    assert event.line == 2
    assert [(f.function, f.in_script) for f in event.stack] == [
        ("<module>", True),
        ("call_back", False),
        ("callback", True),
    ]
    s.stepper.resume()
    assert s.finish().ok


def test_evaluate_statements_expressions_output_and_errors() -> None:
    s = Session(SCRIPT, breakpoints=(10,)).start()
    s.where()
    assert s.stepper.evaluate("z") == "3"
    assert s.stepper.evaluate("print('hello'); z * 2") == "hello\n6"
    assert s.stepper.evaluate("added = 99") == ""
    assert "ZeroDivisionError: division by zero" in s.stepper.evaluate("1 / 0")
    assert "SyntaxError" in s.stepper.evaluate("if")
    assert s.stepper.evaluate("fail('in repl')").endswith("RequestedAssertionFailed: in repl")
    s.stepper.resume()
    assert s.finish().ok
    # Assignments at module level land in the script's namespace.
    assert s.runner.namespace is not None and s.runner.namespace["added"] == 99


def test_repl_results_say_whether_they_failed_without_parsing_text() -> None:
    s = Session(SCRIPT, breakpoints=(10,)).start()
    s.where()
    failed = s.stepper.run_repl("1 / 0")
    assert failed.failed and failed.output.endswith("ZeroDivisionError: division by zero")
    assert s.stepper.run_repl("if").failed
    # Text that merely looks like an error is no error.
    printed = s.stepper.run_repl("print('ValueError: not really')")
    assert not printed.failed and printed.output == "ValueError: not really"
    listing = s.stepper.run_repl("'a\\nb\\n'")
    assert listing.string_value == "a\nb\n" and listing.output == repr("a\nb\n") and not listing.failed
    assert s.stepper.run_repl("z").string_value is None
    s.stepper.resume()
    assert s.finish().ok


def test_evaluate_does_not_stop_at_breakpoints_in_script_functions() -> None:
    s = Session(SCRIPT, breakpoints=(3, 10)).start()
    assert s.where() == (3, "breakpoint")
    s.stepper.resume()
    assert s.where() == (10, "breakpoint")
    assert s.stepper.evaluate("double(21)") == "42"
    s.stepper.resume()
    assert s.finish().ok


def test_variables_show_only_the_scripts_own_names() -> None:
    s = Session("import json\nvalue = {'a': 1}\nlast = 2\n", breakpoints=(3,)).start()
    s.where()
    assert s.stepper.variables() == {"value": "{'a': 1}"}
    s.stepper.resume()
    s.finish()
    # After the run: the last namespace, from any thread.
    assert s.stepper.variables() == {"value": "{'a': 1}", "last": "2"}
    assert s.stepper.evaluate("last + 1") == "3"


def test_evaluate_while_running_is_refused() -> None:
    s = Session("i = 0\nwhile True:\n    i += 1\n").start()
    s.started.wait(EVENT_WAIT)
    # Not paused: nothing is evaluated in a running thread.
    assert s.stepper.evaluate("i") == "the script is running: pause it to evaluate code"
    s.stepper.stop()
    assert s.finish().cancelled


def test_request_break_pauses_at_the_next_line() -> None:
    s = Session("def bp():\n    pass\nbp_hook()\nafter = 1\n")
    s.host.test_symbols = lambda: {"bp_hook": s.stepper.request_break}  # type: ignore[method-assign]
    s.start()
    assert s.where() == (4, "breakpoint")
    s.stepper.resume()
    assert s.finish().ok


def test_step_over_while_running_stops_before_the_next_statement() -> None:
    s = Session("i = 0\nwhile i < 200000:\n    i += 1\nafter = 1\n", breakpoints=(1,)).start()
    s.where()
    s.stepper.resume()
    s.stepper.step_over()
    line, reason = s.where()
    assert reason == "step" and line in (2, 4)
    s.stepper.resume()
    assert s.finish().ok


def test_paused_and_resumed_events_pair_up() -> None:
    s = Session(SCRIPT, stop_at_start=True).start()
    s.where()
    assert s.stepper.is_paused and s.stepper.paused_line == 1
    s.stepper.resume()
    assert s.finish().ok
    assert s.resumed == 1
    assert not s.stepper.is_paused


@pytest.mark.parametrize("control", ["resume", "step_over", "step_into"])
def test_post_mortem_ends_the_run_on_any_resume(control: str) -> None:
    s = Session("fail('boom')\n").start()
    assert s.where() == (1, "exception")
    getattr(s.stepper, control)()
    assert not s.finish().ok


def test_time_paused_at_a_breakpoint_is_not_the_statements_time() -> None:
    # The gutter shows each statement's time: a statement paused at for a
    # while before it ran must still show how long it took to run.
    s = Session(SCRIPT, breakpoints=(10,))
    finished: list[StatementFinished] = []
    s.bus.subscribe(lambda event: finished.append(event) if isinstance(event, StatementFinished) else None)
    s.start()
    assert s.where() == (10, "breakpoint")
    pause = 1.0
    time.sleep(pause)
    s.stepper.resume()
    assert s.finish().ok
    (last,) = [event for event in finished if event.line == 10]
    assert last.ok and last.duration < pause / 2, last.duration
