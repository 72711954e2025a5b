"""ScriptRunner without VMs: the namespace comes from a small fake host."""

from __future__ import annotations

import linecache
import textwrap
import threading
import traceback
from typing import Any

import pytest

from driver.errors import ConfigError, RequestedAssertionFailed, ScriptCancelled
from driver.events import (
    BlockOpened,
    EventBus,
    LogLevel,
    LogMessage,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
)
from driver.logger import Logger
from driver.runner import (
    RunResult,
    ScriptRunner,
    ScriptSyntaxError,
    Statement,
    first_changed_statement,
)


class FakeNode:
    """Stands in for a Machine: only what these scripts call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.commands: list[str] = []

    def succeed(self, command: str) -> str:
        self.commands.append(command)
        if command.startswith("false"):
            raise RequestedAssertionFailed(f"command `{command}` failed (exit code 1)")
        return "ok\n"


class FakeHost:
    def __init__(self, bus: EventBus) -> None:
        self.logger = Logger(bus)
        self.cancel_event = threading.Event()
        self.node_names = ["server", "client"]
        self.server = FakeNode("server")
        self.symbols_built = 0

    def test_symbols(self) -> dict[str, Any]:
        self.symbols_built += 1
        return {"server": self.server, "subtest": self.logger.subtest, "log": self.logger}


class Recorder:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.events: list[object] = []
        self.bus.subscribe(self.events.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def make(source: str, filename: str = "/tests/t.py") -> tuple[ScriptRunner, FakeHost, Recorder]:
    recorder = Recorder()
    host = FakeHost(recorder.bus)
    runner = ScriptRunner(host, recorder.bus)
    runner.load(textwrap.dedent(source), filename)
    return runner, host, recorder


def test_statements_have_line_ranges_and_text() -> None:
    runner, _, _ = make(
        """\
        x = 1

        @staticmethod
        def f():
            return 2
        with subtest("a"):
            y = f(
            )
        """
    )
    assert [(s.index, s.line, s.end_line) for s in runner.statements] == [(0, 1, 1), (1, 3, 5), (2, 6, 8)]
    assert runner.statements[1].text.startswith("@staticmethod\ndef f():")


def test_syntax_error_is_reported_with_line_and_changes_nothing() -> None:
    runner, _, _ = make("a = 1\n")
    with pytest.raises(ScriptSyntaxError) as caught:
        runner.load("a = 1\nif x\n", "/tests/t.py")
    assert caught.value.line == 2
    assert isinstance(caught.value, ConfigError)
    assert str(caught.value).startswith("/tests/t.py:2: syntax error:")
    assert len(runner.statements) == 1


def test_compile_time_errors_are_syntax_errors_too() -> None:
    runner, _, _ = make("a = 1\n")
    with pytest.raises(ScriptSyntaxError) as caught:
        runner.load("a = 1\nreturn a\n", "/tests/t.py")
    assert caught.value.line == 2


def test_run_executes_in_one_namespace_and_publishes_events() -> None:
    runner, host, rec = make(
        """\
        a = 2
        b = a * 3
        server.succeed(f"echo {b}")
        """
    )
    result = runner.run()
    assert result == RunResult(ok=True)
    assert runner.namespace is not None and runner.namespace["b"] == 6
    assert host.server.commands == ["echo 6"]
    started = rec.of(ScriptStarted)
    assert started[0].filename == "/tests/t.py" and started[0].first_line == 1
    assert [e.line for e in rec.of(StatementStarted)] == [1, 2, 3]
    assert all(e.ok for e in rec.of(StatementFinished))
    finished = rec.of(ScriptFinished)
    assert finished[0].ok and finished[0].run_id == started[0].run_id


def test_failure_is_reported_nixos_style_with_script_frames_only() -> None:
    runner, _, rec = make(
        """\
        def check():
            server.succeed("false 1")
        x = 1
        check()
        y = 2
        """
    )
    result = runner.run()
    assert not result.ok and not result.cancelled
    assert result.error == "RequestedAssertionFailed: command `false 1` failed (exit code 1)"
    assert result.error_line == 2
    errors = [e.message for e in rec.of(LogMessage) if e.level == LogLevel.ERROR]
    assert errors == [
        "Traceback (most recent call last):",
        '  File "/tests/t.py", line 4, in <module>',
        "    check()",
        '  File "/tests/t.py", line 2, in check',
        '    server.succeed("false 1")',
        "RequestedAssertionFailed: command `false 1` failed (exit code 1)",
    ]
    # The statement after the failure never ran.
    assert [e.line for e in rec.of(StatementStarted)] == [1, 3, 4]
    assert rec.of(StatementFinished)[-1].ok is False
    finished = rec.of(ScriptFinished)[0]
    assert (finished.ok, finished.error_line) == (False, 2)
    assert finished.error == result.error


def test_unexpected_errors_also_get_a_full_traceback_at_debug_level() -> None:
    runner, _, rec = make("x = {}['missing']\n")
    result = runner.run()
    assert result.error == "KeyError: 'missing'"
    debug = [e.message for e in rec.of(LogMessage) if e.level == LogLevel.DEBUG]
    assert any("Traceback" in line for line in debug)


def test_tracebacks_point_at_real_lines_through_linecache() -> None:
    runner, _, _ = make("a = 1\nb = 1 / 0\n")
    runner.run()
    assert linecache.getline(runner.code_filename, 2) == "b = 1 / 0\n"
    try:
        exec(compile("1/0", runner.code_filename, "exec"))
    except ZeroDivisionError as exc:
        # traceback formatting finds the source line of the pseudo-file.
        assert "a = 1" in "".join(traceback.format_exception(exc))


def test_blocks_know_the_script_line() -> None:
    runner, _, rec = make(
        """\
        x = 1
        with subtest("first"):
            log.info("inside")
        """
    )
    runner.run()
    opened = rec.of(BlockOpened)
    assert [(o.title, o.script_line) for o in opened] == [("subtest: first", 2)]


def test_rerun_from_a_statement_reuses_the_namespace() -> None:
    runner, host, rec = make("a = 1\nb = a + 1\n")
    runner.run()
    namespace = runner.namespace
    runner.load("a = 1\nb = a + 10\n", "/tests/t.py")
    index = first_changed_statement(
        [Statement(0, 1, 1, "a = 1"), Statement(1, 2, 2, "b = a + 1")], runner.statements
    )
    assert index == 1
    runner.namespace["a"] = 5  # proves the old namespace is kept
    result = runner.run(from_statement=1)
    assert result.ok
    assert runner.namespace is namespace and namespace["b"] == 15
    assert host.symbols_built == 1
    assert rec.of(ScriptStarted)[-1].first_line == 2


def test_run_from_zero_starts_fresh() -> None:
    runner, host, _ = make("a = 1\n")
    runner.run()
    first = runner.namespace
    runner.run()
    assert runner.namespace is not first and host.symbols_built == 2


def test_first_changed_statement() -> None:
    a = [Statement(0, 1, 1, "x = 1"), Statement(1, 2, 2, "y = 2")]
    moved = [Statement(0, 2, 2, "x = 1"), Statement(1, 3, 3, "y = 2")]
    assert first_changed_statement(a, moved) is None
    assert first_changed_statement(a, a[:1]) == 1
    assert first_changed_statement(a, [*a, Statement(2, 3, 3, "z = 3")]) == 2


def test_future_imports_apply_to_later_statements() -> None:
    runner, _, _ = make(
        """\
        from __future__ import annotations
        def f(x: undefined_name) -> None:
            return None
        """
    )
    assert runner.run().ok


def test_cancel_ends_a_blocking_wait_and_marks_the_run_cancelled() -> None:
    runner, host, rec = make(
        """\
        started = True
        wait_for_cancel()
        never = 1
        """
    )

    def wait_for_cancel() -> None:
        # What a machine wait does: poll, and give up once the run is cancelled.
        host.cancel_event.wait()
        raise ScriptCancelled()

    runner.driver.test_symbols = lambda: {"wait_for_cancel": wait_for_cancel}  # type: ignore[method-assign]
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run()))
    waiting = threading.Event()
    rec.bus.subscribe(lambda e: waiting.set() if isinstance(e, StatementStarted) and e.line == 2 else None)
    thread.start()
    waiting.wait()
    runner.cancel()
    thread.join()
    assert results == [RunResult(ok=False, cancelled=True)]
    assert rec.of(ScriptFinished)[0].cancelled
    assert "never" not in (runner.namespace or {})
    # Once the run has ended, the machines are usable again (REPL, next run).
    assert not host.cancel_event.is_set()


def test_a_new_run_clears_the_cancel_event() -> None:
    runner, host, _ = make("x = 1\n")
    host.cancel_event.set()
    assert runner.run().ok
    assert not host.cancel_event.is_set()


def test_script_cancelled_from_a_wait_marks_the_run_cancelled() -> None:
    runner, _, rec = make("raise_cancel()\nnever = 1\n")
    assert runner.namespace is None

    def raise_cancel() -> None:
        raise ScriptCancelled()

    runner.driver.test_symbols = lambda: {"raise_cancel": raise_cancel}  # type: ignore[method-assign]
    result = runner.run()
    assert result.cancelled and not result.ok
    assert rec.of(StatementFinished)[0].error == "cancelled"


def test_sys_exit_zero_ends_the_run_successfully() -> None:
    runner, _, rec = make("import sys\nsys.exit(0)\nnever = 1\n")
    assert runner.run().ok
    assert [e.line for e in rec.of(StatementStarted)] == [1, 2]


def test_unknown_node_names_are_found_before_running() -> None:
    runner, _, _ = make(
        """\
        import json
        clinet.succeed("true")
        def helper(node):
            node.succeed("true")
        for m in [server]:
            m.wait_for_unit("x")
        json.dumps({})
        """
    )
    assert runner.unknown_node_names({"server"}) == [("clinet", 2)]


def test_name_error_on_a_node_like_name_is_flagged() -> None:
    runner, _, _ = make("x = 1\nsevrer.succeed('true')\n")
    result = runner.run()
    assert result.unknown_node == "sevrer"
    runner, _, _ = make("print(undefined_thing)\n")
    assert runner.run().unknown_node is None


def test_run_requires_a_loaded_script() -> None:
    rec = Recorder()
    runner = ScriptRunner(FakeHost(rec.bus), rec.bus)
    with pytest.raises(RuntimeError):
        runner.run()


def test_an_empty_script_runs() -> None:
    runner, _, rec = make("# nothing\n")
    assert runner.run().ok
    assert rec.of(ScriptStarted)[0].first_line is None
