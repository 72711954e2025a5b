"""The headless runner: the NixOS driver's terminal log, JUnit XML, exit codes.

Everything goes to stderr, in the NixOS format:

    server: must succeed: test -s /srv/www/todos.json
    server: (finished: must succeed: test -s /srv/www/todos.json, in 0.02 seconds)
    server # [    1.234] httpd: listening on port 3000
    !!! Traceback (most recent call last):

Blocks are not indented (NixOS nests them by sequence only); serial lines
are dimmed and errors red when stderr is a terminal, plain otherwise.
Guest text (serial lines, and messages that quote command output or a
console tail) goes through `driver.terminal_text` first: on a terminal it
keeps its colours as fresh SGR sequences and nothing else, in a file or
pipe it is plain text.

Exit codes: 0 the test passed, 1 it failed (the failing script line is
printed last), 2 bad input (the CLI prints the one-line reason).
"""

from __future__ import annotations

import linecache
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from driver import processes
from driver.config import TestConfig
from driver.driver import Driver, expected_symbol_names, preflight
from driver.errors import ConfigError
from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    Event,
    EventBus,
    LogLevel,
    LogMessage,
    ScriptFinished,
)
from driver.record import RunRecord, headless_record_directory
from driver.runner import RunResult, ScriptRunner, compile_script, find_unknown_node_names
from driver.terminal_text import plain_line, plain_text, terminal_line
from vmtui.options import RunOptions
from vmtui.stderr_budget import SerialBudget, serial_limit_from_env

# How long the script may keep running after the global timeout fired and
# every VM was released, before the runner gives up waiting for it.
TIMEOUT_GRACE_SECONDS = 30.0

_RESET = "\x1b[0m"
_BRIGHT_GREEN = "\x1b[1;32m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_DIM = "\x1b[2m"
# SGR parameters of the styles above, for guest text printed inside them.
_YELLOW_PARAMETERS = "33"
_DIM_PARAMETERS = "2"

_LEVELS = {"debug": LogLevel.DEBUG, "info": LogLevel.INFO, "warning": LogLevel.WARNING, "error": LogLevel.ERROR}


def parse_log_level(name: str) -> LogLevel:
    try:
        return _LEVELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown log level {name!r} (use debug, info, warning or error)") from None


class TerminalLog:
    """A bus subscriber printing events in the NixOS terminal format."""

    def __init__(
        self,
        stream: TextIO,
        *,
        color: bool | None = None,
        level: LogLevel = LogLevel.INFO,
        serial_enabled: Callable[[], bool] = lambda: True,
        serial_budget: SerialBudget | None = None,
    ) -> None:
        self.stream = stream
        # Keeps stderr under Hydra's log limit by trimming serial lines.
        self.serial_budget = serial_budget
        self.color = stream.isatty() if color is None else color
        self.level = level
        # Asked for every console line: serial_stdout_on/off in the script.
        self.serial_enabled = serial_enabled
        # Reentrant: a signal's announcement is printed on the main thread,
        # which the signal may have interrupted inside a write.
        self._lock = threading.RLock()
        self._open_blocks: dict[int, tuple[str, str | None]] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, LogMessage):
            self._message(event)
        elif isinstance(event, BlockOpened):
            self._open_blocks[event.block_id] = (event.title, event.machine)
            if self.level <= LogLevel.INFO:
                self._print(self._paint(_BRIGHT_GREEN, plain_text(event.title)), event.machine)
        elif isinstance(event, BlockClosed):
            title, machine = self._open_blocks.pop(event.block_id, ("?", None))
            # NixOS prints no "finished" line for a block left by an exception.
            if self.level <= LogLevel.INFO and event.ok and event.duration is not None:
                self._print(f"(finished: {plain_text(title)}, in {event.duration:.2f} seconds)", machine)
        elif isinstance(event, ConsoleOutput):
            if self.level <= LogLevel.INFO and self.serial_enabled():
                if self.color:
                    lines = [self._paint(_DIM, f"{event.machine} # {terminal_line(line, _DIM_PARAMETERS)}") for line in event.lines]
                else:
                    lines = [f"{event.machine} # {plain_line(line)}" for line in event.lines]
                if self.serial_budget is not None:
                    lines = self.serial_budget.admit(event.machine, lines)
                self._write(lines)

    def _message(self, event: LogMessage) -> None:
        if event.level < self.level and event.level < LogLevel.ERROR:
            return
        if event.level >= LogLevel.ERROR:
            prefix = self._paint(_RED, "!!! ")
            self._write([prefix + _prefixed(line, event.machine) for line in self._safe_lines(event.message)])
        elif event.level == LogLevel.WARNING:
            lines = self._safe_lines(event.message, _YELLOW_PARAMETERS)
            self._write([self._paint(_YELLOW, _prefixed(line, event.machine)) for line in lines])
        elif event.level == LogLevel.DEBUG:
            lines = self._safe_lines(event.message, _DIM_PARAMETERS)
            self._write([self._paint(_DIM, _prefixed(line, event.machine)) for line in lines])
        else:
            self._write([_prefixed(line, event.machine) for line in self._safe_lines(event.message)])

    def _safe_lines(self, message: str, base: str = "") -> list[str]:
        """The lines of a message (it may quote guest output), each safe to print in a style."""
        # Split on newlines only: `str.splitlines` would also split at a lone
        # `\r`, which the decoder plays out as a terminal does.
        lines = message.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()
        if self.color:
            return [terminal_line(line, base) for line in lines]
        return [plain_line(line) for line in lines]

    def _paint(self, style: str, text: str) -> str:
        return f"{style}{text}{_RESET}" if self.color else text

    def _print(self, text: str, machine: str | None) -> None:
        self._write([_prefixed(text, machine)])

    def _write(self, lines: list[str]) -> None:
        with self._lock:
            text = "".join(line + "\n" for line in lines)
            if self.serial_budget is not None:
                self.serial_budget.count(len(text.encode("utf-8", "replace")))
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stderr must not fail the test


def _prefixed(text: str, machine: str | None) -> str:
    return f"{machine}: {text}" if machine else text


@dataclass
class _Case:
    name: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    failure: str | None = None
    time: float = 0.0


@dataclass
class _OpenSubtest:
    block_id: int
    case: _Case
    nested_time: float = 0.0


class JUnitReport:
    """Collects subtests as JUnit test cases, as the NixOS driver writes them since 2026.

    One test suite, "NixOS integration test", whose `system-out` holds every
    log line (`system-err` the errors); one case per subtest (the time of
    nested subtests is not counted twice) with the lines logged inside it;
    a "main" case only when there are no subtests.
    """

    SUITE = "NixOS integration test"

    def __init__(self) -> None:
        # Reentrant for the same reason as TerminalLog's (a signal's announcement).
        self._lock = threading.RLock()
        self.main = _Case("main")
        self.cases: list[_Case] = []
        self._stack: list[_OpenSubtest] = []
        self.suite_out: list[str] = []
        self.suite_err: list[str] = []

    def _current(self) -> _Case:
        return self._stack[-1].case if self._stack else self.main

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, BlockOpened):
                self._out(_prefixed(plain_text(event.title), event.machine))
                if event.kind == "subtest":
                    case = _Case(event.title.removeprefix("subtest: "))
                    self.cases.append(case)
                    self._stack.append(_OpenSubtest(event.block_id, case))
            elif isinstance(event, BlockClosed):
                if self._stack and self._stack[-1].block_id == event.block_id:
                    top = self._stack.pop()
                    duration = event.duration or 0.0
                    top.case.time = max(0.0, duration - top.nested_time)
                    if not event.ok:
                        top.case.failure = plain_text(event.error or "failed")
                    if self._stack:
                        self._stack[-1].nested_time += duration
                # NixOS's JUnit logger records a block's title, never its "finished" line.
            elif isinstance(event, ConsoleOutput):
                for line in event.lines:
                    self._out(f"{event.machine} # {plain_line(line)}")
            elif isinstance(event, ScriptFinished) and not event.ok:
                # The one-line reason beats the first line of the traceback.
                self.main.failure = plain_text(event.error or ("cancelled" if event.cancelled else "failed"))
            elif isinstance(event, LogMessage):
                case = self._current()
                # Control characters are not allowed in XML at all.
                line = _prefixed(plain_text(event.message), event.machine)
                if event.level >= LogLevel.ERROR:
                    case.stderr.append(line)
                    self.suite_err.append(line)
                    if case is self.main and self.main.failure is None:
                        self.main.failure = plain_text(event.message)
                else:
                    self._out(line)

    def _out(self, line: str) -> None:
        self._current().stdout.append(line)
        self.suite_out.append(line)

    def fail_main(self, reason: str) -> None:
        with self._lock:
            self.main.failure = self.main.failure or reason

    def write(self, path: Path, *, duration: float) -> None:
        with self._lock:
            cases = list(self.cases) or [self.main]
            root = ET.Element("testsuites")
            failures = sum(1 for case in cases if case.failure is not None)
            suite = ET.SubElement(
                root,
                "testsuite",
                name=self.SUITE,
                tests=str(len(cases)),
                failures=str(failures),
                errors="0",
                time=f"{duration:.3f}",
            )
            for case in cases:
                element = ET.SubElement(
                    suite, "testcase", name=case.name, classname=self.SUITE, time=f"{case.time:.3f}"
                )
                if case.failure is not None:
                    failure = ET.SubElement(element, "failure", message=case.failure.splitlines()[0] if case.failure else "")
                    failure.text = case.failure
                if case.stdout:
                    ET.SubElement(element, "system-out").text = "\n".join(case.stdout)
                if case.stderr:
                    ET.SubElement(element, "system-err").text = "\n".join(case.stderr)
            ET.SubElement(suite, "system-out").text = "\n".join(self.suite_out)
            ET.SubElement(suite, "system-err").text = "\n".join(self.suite_err)
        ET.indent(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def check_script(config: TestConfig) -> str:
    """Read and check the script before anything starts; returns its source.

    Raises ConfigError for an unreadable script, a syntax error (file:line
    and the message) or a node name the test does not have.
    """
    path = config.script_path
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"test script not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the test script is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    script = compile_script(source, str(path))
    unknown = find_unknown_node_names(script.tree, expected_symbol_names(config))
    if unknown:
        name, line = unknown[0]
        nodes = ", ".join(sorted(node.name for node in config.nodes)) or "none"
        raise ConfigError(f"{path}:{line}: the script uses node {name!r}, but the test has no such node (nodes: {nodes})")
    return source


def run_headless(config: TestConfig, options: RunOptions, *, stream: TextIO | None = None) -> int:
    """Run the test without a UI; returns the exit code (0, 1; 2 is raised as ConfigError)."""
    out = stream if stream is not None else sys.stderr
    level = parse_log_level(options.log_level)
    source = check_script(config)
    preflight(config)

    bus = EventBus()
    # The run record (vmtui-run/ in the output directory: $out in a Nix build).
    record = RunRecord(headless_record_directory(options.out_dir), config, kind="headless")
    bus.subscribe(record)
    budget = SerialBudget(serial_limit_from_env(), lambda machine: str(record.console_path(machine)))
    printer = TerminalLog(out, level=level, serial_budget=budget)
    bus.subscribe(printer)
    junit = JUnitReport() if options.junit_xml is not None else None
    if junit is not None:
        bus.subscribe(junit)

    stop_listening = processes.add_signal_listener(lambda signum: bus.publish(_interrupted(signum)))
    try:
        code = _run_recorded(config, options, source, bus, printer, junit, record)
    finally:
        stop_listening()
        record.close()
    return code


def _interrupted(signum: int) -> LogMessage:
    """The line that says why the run ends now: the VMs go next, then vmtui dies of the signal."""
    name = signal.Signals(signum).name
    how = " (Ctrl-C)" if signum == signal.SIGINT else ""
    return LogMessage(f"test interrupted by {name}{how}: ending every VM and helper process", level=LogLevel.ERROR)


def _run_recorded(
    config: TestConfig,
    options: RunOptions,
    source: str,
    bus: EventBus,
    printer: TerminalLog,
    junit: JUnitReport | None,
    record: RunRecord,
) -> int:
    started = time.monotonic()
    global_timeout = options.global_timeout if options.global_timeout is not None else config.global_timeout
    with Driver(
        config,
        bus=bus,
        out_dir=options.out_dir,
        keep_state=options.keep_state,
        global_timeout=global_timeout,
    ) as driver:
        printer.serial_enabled = lambda: driver.logger.serial_stdout
        runner = ScriptRunner(driver, bus)
        runner.load(source, str(config.script_path))
        driver.on_timeout.append(runner.cancel)
        driver.start_global_timer()
        result = _run_script(runner, driver)
        if result.ok:
            driver.sync_machines()
        elif not driver.timed_out:
            # While the nodes are still up: screenshots, the failed unit's status.
            record.write_failure_bundle(driver.machines)
        driver.cancel_global_timer()

    if result.unknown_node is not None and not driver.timed_out:
        nodes = ", ".join(sorted(node.name for node in config.nodes)) or "none"
        raise ConfigError(
            f"{config.script_path}:{result.error_line}: the script uses node {result.unknown_node!r}, "
            f"but the test has no such node (nodes: {nodes})"
        )
    code = 0 if result.ok else 1
    if driver.timed_out:
        reason = f"global timeout of {global_timeout:g} seconds reached"
        timed_out = LogMessage(reason, level=LogLevel.ERROR)
        printer(timed_out)
        record(timed_out)
        if junit is not None:
            junit.fail_main(reason)
        code = 1
    elif not result.ok:
        summary = LogMessage(_failure_summary(runner, result), level=LogLevel.ERROR)
        printer(summary)
        record(summary)  # driver.log ends as stderr does
    if junit is not None and options.junit_xml is not None:
        junit.write(options.junit_xml, duration=time.monotonic() - started)
    record.close(ok=code == 0)
    return code


def _run_script(runner: ScriptRunner, driver: Driver) -> RunResult:
    """Run the script in a worker thread, so the global timeout can end it."""
    results: list[RunResult] = []

    def work() -> None:
        with driver.logger.nested("run the VM test script"):
            results.append(runner.run())

    worker = threading.Thread(target=work, name="test-script", daemon=True)
    worker.start()
    give_up_at: float | None = None
    while worker.is_alive():
        worker.join(0.2)
        if driver.timed_out and give_up_at is None:
            give_up_at = time.monotonic() + TIMEOUT_GRACE_SECONDS
        if give_up_at is not None and time.monotonic() > give_up_at:
            # The script ignores cancellation (a pure-Python loop, a sleep):
            # the VMs are gone already; stop waiting for it.
            return RunResult(ok=False, error="global timeout", cancelled=True)
    return results[0] if results else RunResult(ok=False, error="the script thread died")


def _failure_summary(runner: ScriptRunner, result: RunResult) -> str:
    where = runner.filename
    if result.error_line is None:
        return f"test script {where} failed: {result.error}"
    source_line = linecache.getline(runner.code_filename, result.error_line).strip()
    return f"test script failed at {where}:{result.error_line}: {source_line}"
