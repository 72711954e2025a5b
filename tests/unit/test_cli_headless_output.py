"""The headless terminal log and JUnit report, fed with synthetic events."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    LogLevel,
    LogMessage,
    ScriptFinished,
)
from vmtui.headless import JUnitReport, TerminalLog


def test_nixos_terminal_format_plain() -> None:
    out = io.StringIO()
    log = TerminalLog(out, color=False)
    log(LogMessage("starting", machine="server"))
    log(BlockOpened(block_id=1, parent_id=None, title="must succeed: true", machine="server"))
    log(ConsoleOutput(machine="server", lines=("\x1b[1mbooted\x1b[0m", "ready")))
    log(BlockClosed(block_id=1, duration=1.234))
    log(LogMessage("Traceback (most recent call last):\nValueError: x", level=LogLevel.ERROR))
    log(LogMessage("hidden", level=LogLevel.DEBUG))
    assert out.getvalue().splitlines() == [
        "server: starting",
        "server: must succeed: true",
        "server # booted",
        "server # ready",
        "server: (finished: must succeed: true, in 1.23 seconds)",
        "!!! Traceback (most recent call last):",
        "!!! ValueError: x",
    ]


def test_colours_on_a_terminal() -> None:
    out = io.StringIO()
    log = TerminalLog(out, color=True)
    log(BlockOpened(block_id=1, parent_id=None, title="subtest: a"))
    log(ConsoleOutput(machine="m", lines=("x",)))
    log(LogMessage("bad", level=LogLevel.ERROR))
    lines = out.getvalue().splitlines()
    assert lines[0] == "\x1b[1;32msubtest: a\x1b[0m"
    assert lines[1] == "\x1b[2mm # x\x1b[0m"
    assert lines[2] == "\x1b[31m!!! \x1b[0mbad"


def test_serial_output_can_be_switched_off() -> None:
    out = io.StringIO()
    enabled = [True]
    log = TerminalLog(out, color=False, serial_enabled=lambda: enabled[0])
    log(ConsoleOutput(machine="m", lines=("one",)))
    enabled[0] = False
    log(ConsoleOutput(machine="m", lines=("two",)))
    assert out.getvalue() == "m # one\n"


def test_log_levels_filter_but_errors_always_show() -> None:
    out = io.StringIO()
    log = TerminalLog(out, color=False, level=LogLevel.WARNING)
    log(LogMessage("info"))
    log(BlockOpened(block_id=1, parent_id=None, title="block"))
    log(LogMessage("careful", level=LogLevel.WARNING))
    log(LogMessage("broken", level=LogLevel.ERROR))
    assert out.getvalue().splitlines() == ["careful", "!!! broken"]
    debug_out = io.StringIO()
    TerminalLog(debug_out, color=False, level=LogLevel.DEBUG)(LogMessage("detail", level=LogLevel.DEBUG))
    assert debug_out.getvalue() == "detail\n"


def subtest_events(report: JUnitReport) -> None:
    report(BlockOpened(block_id=1, parent_id=None, title="subtest: outer", kind="subtest"))
    report(LogMessage("in outer", machine="server"))
    report(BlockOpened(block_id=2, parent_id=1, title="subtest: inner", kind="subtest"))
    report(ConsoleOutput(machine="server", lines=("serial",)))
    report(BlockClosed(block_id=2, duration=2.0, ok=False, error="RequestedAssertionFailed: nope"))
    report(BlockClosed(block_id=1, duration=5.0, ok=False, error="RequestedAssertionFailed: nope"))
    report(LogMessage("Traceback (most recent call last):", level=LogLevel.ERROR))
    report(ScriptFinished(run_id=1, ok=False, duration=5.0, error="RequestedAssertionFailed: nope", error_line=3))


def test_junit_one_case_per_subtest_with_nested_time_subtracted(tmp_path: Path) -> None:
    report = JUnitReport()
    subtest_events(report)
    path = tmp_path / "deep" / "junit.xml"
    report.write(path, duration=6.0)
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("name") == "NixOS integration test"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    # Since 2026 NixOS writes "main" only when there are no subtests.
    assert list(cases) == ["outer", "inner"]
    assert cases["outer"].get("time") == "3.000" and cases["inner"].get("time") == "2.000"
    assert cases["inner"].find("failure") is not None
    assert "server # serial" in (cases["inner"].findtext("system-out") or "")
    assert "server: in outer" in (cases["outer"].findtext("system-out") or "")
    assert suite.get("tests") == "2" and suite.get("failures") == "2"


def test_junit_suite_system_out_holds_every_log_line(tmp_path: Path) -> None:
    report = JUnitReport()
    report(LogMessage("before any subtest"))
    subtest_events(report)
    path = tmp_path / "junit.xml"
    report.write(path, duration=6.0)
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    out = (suite.findtext("system-out") or "").splitlines()
    assert out == [
        "before any subtest",
        "subtest: outer",
        "server: in outer",
        "subtest: inner",
        "server # serial",
    ]
    assert suite.findtext("system-err") == "Traceback (most recent call last):"


def test_junit_without_subtests_has_main_only(tmp_path: Path) -> None:
    report = JUnitReport()
    report(LogMessage("hello"))
    report(ScriptFinished(run_id=1, ok=True, duration=1.0))
    path = tmp_path / "junit.xml"
    report.write(path, duration=1.0)
    cases = ET.parse(path).getroot().findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["main"]
    assert cases[0].find("failure") is None


def test_junit_passing_subtests_leave_main_out(tmp_path: Path) -> None:
    report = JUnitReport()
    report(BlockOpened(block_id=1, parent_id=None, title="subtest: a", kind="subtest"))
    report(BlockClosed(block_id=1, duration=1.0))
    report(ScriptFinished(run_id=1, ok=True, duration=1.0))
    path = tmp_path / "junit.xml"
    report.write(path, duration=1.0)
    assert [c.get("name") for c in ET.parse(path).getroot().findall("testsuite/testcase")] == ["a"]


def test_a_block_left_by_an_exception_has_no_finished_line() -> None:
    # As the NixOS driver: its nested() prints "(finished: ...)" only when the
    # block's body returned, so a failed command or subtest has none.
    out = io.StringIO()
    log = TerminalLog(out, color=False)
    report = JUnitReport()
    events = [
        BlockOpened(block_id=1, parent_id=None, title="subtest: fails", kind="subtest"),
        BlockOpened(block_id=2, parent_id=1, title="must succeed: false", machine="server"),
        LogMessage("output: ", machine="server"),
        BlockClosed(block_id=2, duration=0.05, ok=False, error="command `false` failed (exit code 1)"),
        BlockClosed(block_id=1, duration=0.10, ok=False, error="command `false` failed (exit code 1)"),
        BlockOpened(block_id=3, parent_id=None, title="cleanup"),
        BlockClosed(block_id=3, duration=0.01),
    ]
    for event in events:
        log(event)
        report(event)
    expected = [
        "subtest: fails",
        "server: must succeed: false",
        "server: output: ",
        "cleanup",
        "(finished: cleanup, in 0.01 seconds)",
    ]
    assert out.getvalue().splitlines() == expected
    # NixOS's JUnit logger writes no "finished" lines at all.
    assert report.suite_out == expected[:-1]
