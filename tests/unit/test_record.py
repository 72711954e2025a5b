"""The run record (driver/record.py) fed with driver events, and read back by replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driver.config import NodeConfig, TestConfig
from driver.event_codec import EventDecodeError, decode_event, encode_event
from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    DebuggerPaused,
    Event,
    EventBus,
    FrameSummary,
    LogLevel,
    LogMessage,
    MachineState,
    MachineStateChanged,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
)
from driver.record import (
    CappedLog,
    RunRecord,
    headless_record_directory,
    is_record,
    list_runs,
    new_tui_record_directory,
    prune_runs,
)
from driver.errors import ConfigError
from vmtui.replay.recordlog import RecordReader, read_lines
from vmtui.stderr_budget import SerialBudget


def make_config(tmp_path: Path) -> TestConfig:
    script = tmp_path / "src" / "web.py"
    script.parent.mkdir()
    script.write_text('start_all()\nserver.wait_for_unit("nginx.service")\n')
    spec = tmp_path / "src" / "web.toml"
    spec.write_text('script = "web.py"\n[nodes.server]\n')
    return TestConfig(nodes=[NodeConfig("server", "run-server-vm")], vlans=[1], script_path=script,
                      source_path=spec, name="web")


def failing_run(record: RunRecord | EventBus) -> None:
    publish = record.publish if isinstance(record, EventBus) else record
    publish(ScriptStarted(filename="web.py", run_id=1))
    publish(MachineStateChanged(machine="server", state=MachineState.BOOTING, pid=42))
    publish(ConsoleOutput(machine="server", lines=("\x1b[32mbooting\x1b[0m", "line 2")))
    publish(StatementStarted(run_id=1, line=2, end_line=2))
    publish(BlockOpened(block_id=7, parent_id=None, title="waiting for unit nginx.service", machine="server",
                        script_line=2))
    publish(ConsoleOutput(machine="server", lines=("nginx: bind() failed",)))
    publish(BlockClosed(block_id=7, duration=3.5, ok=False, error="RequestedAssertionFailed: unit failed"))
    publish(LogMessage("Traceback (most recent call last):", level=LogLevel.ERROR))
    publish(LogMessage('    server.wait_for_unit("nginx.service")', level=LogLevel.ERROR))
    publish(StatementFinished(run_id=1, line=2, end_line=2, ok=False, duration=3.5, error="unit failed"))
    publish(ScriptFinished(run_id=1, ok=False, duration=4.0, error="RequestedAssertionFailed: unit failed",
                           error_line=2))


def test_every_event_survives_the_json_round_trip() -> None:
    events: list[Event] = [
        MachineStateChanged(machine="a", state=MachineState.EXITED, exit_code=-9, detail="killed"),
        MachineStateChanged(machine="a", state=MachineState.BOOTING, pid=7, accelerator="tcg"),
        LogMessage("hi", machine="a", level=LogLevel.WARNING),
        BlockOpened(block_id=1, parent_id=None, title="t", kind="subtest", script_line=3),
        BlockClosed(block_id=1, duration=1.5, ok=False, error="boom"),
        DebuggerPaused(run_id=1, line=4, reason="exception",
                       stack=(FrameSummary("test.py", 4, "<module>", True),), error="x"),
        ScriptFinished(run_id=1, ok=True, duration=2.0),
    ]
    for event in events:
        assert decode_event(json.loads(json.dumps(encode_event(event)))) == event
    console = ConsoleOutput(machine="a", lines=("x", "y"), timestamp=5.0)
    data = encode_event(console, console_first=10)
    assert data == {"type": "ConsoleOutput", "t": 5.0, "machine": "a", "first": 10, "count": 2}
    assert decode_event(data, ("x", "y")) == console
    with pytest.raises(EventDecodeError):
        decode_event({"type": "Nope"})
    with pytest.raises(EventDecodeError):
        decode_event({"type": "LogMessage", "message": "m", "colour": "red"})


def test_a_failed_run_writes_consoles_driver_log_events_sources_and_a_failure_bundle(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record = RunRecord(tmp_path / "rec", config, kind="headless")
    failing_run(record)
    bundle = record.write_failure_bundle()
    record.close(ok=False)
    rec = tmp_path / "rec"
    assert (rec / "consoles" / "server.log").read_text() == "\x1b[32mbooting\x1b[0m\nline 2\nnginx: bind() failed\n"
    assert (rec / "web.py").read_text() == config.script_path.read_text()
    assert (rec / "web.toml").is_file()
    # NixOS format: no finished line for a failed block, `!!!` errors, serial without colours.
    assert (rec / "driver.log").read_text().splitlines() == [
        "server # booting",
        "server # line 2",
        "server: waiting for unit nginx.service",
        "server # nginx: bind() failed",
        "!!! Traceback (most recent call last):",
        '!!!     server.wait_for_unit("nginx.service")',
    ]
    lines = [json.loads(line) for line in (rec / "events.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines][:3] == ["ScriptStarted", "MachineStateChanged", "ConsoleOutput"]
    assert lines[5] == {**lines[5], "type": "ConsoleOutput", "first": 2, "count": 1}
    assert all("wall" in line and "t" in line for line in lines)
    meta = json.loads((rec / "meta.json").read_text())
    assert meta["ok"] is False and meta["error_line"] == 2 and meta["script"] == "web.py"
    assert meta["source"] == "web.toml" and meta["nodes"] == ["server"] and meta["ended"]
    assert bundle == rec / "failure"
    failure = (bundle / "failure.txt").read_text()
    assert "failing line: web.py:2" in failure
    assert 'server.wait_for_unit("nginx.service")' in failure
    assert "failed waiting for unit nginx.service on server" in failure
    assert "Traceback (most recent call last):" in failure


class GuestWithoutScreen:
    """The failure bundle's view of a node, with a guest that answers commands."""

    name = "server"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def is_up(self) -> bool:
        return True

    def is_graphical(self) -> bool:
        return False

    def screenshot(self, filename: str) -> None:
        raise AssertionError("a node without a display is not asked for a screenshot")

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: float | None = 900) -> tuple[int, str]:
        self.commands.append(command)
        return 3, f"output of {command.split()[0]}\n"


def test_the_failure_bundle_asks_the_node_for_the_failed_unit(tmp_path: Path) -> None:
    record = RunRecord(tmp_path / "rec", make_config(tmp_path), kind="headless")
    failing_run(record)
    guest = GuestWithoutScreen()
    bundle = record.write_failure_bundle([guest])
    assert bundle is not None
    assert guest.commands == [
        "systemctl status --no-pager --full nginx.service",
        "journalctl --no-pager -n 200 -u nginx.service",
    ]
    unit = (bundle / "unit-server-nginx.service.txt").read_text()
    assert "(exit status 3)\noutput of systemctl" in unit and "output of journalctl" in unit
    failure = (bundle / "failure.txt").read_text()
    assert "server: no screenshot (no display device)" in failure
    assert not list(bundle.glob("screenshot-*"))


def test_a_passing_run_has_no_failure_bundle(tmp_path: Path) -> None:
    record = RunRecord(tmp_path / "rec", make_config(tmp_path), kind="headless")
    record(ScriptStarted(filename="web.py", run_id=1))
    record(ScriptFinished(run_id=1, ok=True, duration=1.0))
    assert record.write_failure_bundle() is None
    record.close(ok=True)
    assert not (tmp_path / "rec" / "failure").exists()


def test_a_flooding_console_is_rotated_with_a_note_and_replay_reads_across(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    record = RunRecord(tmp_path / "rec", config, kind="headless", max_file_bytes=4096)
    record(ScriptStarted(filename="web.py", run_id=1))
    for chunk in range(100):
        record(ConsoleOutput(machine="server", lines=tuple(f"chunk {chunk} line {i} " + "x" * 40 for i in range(5))))
    record(ScriptFinished(run_id=1, ok=True, duration=1.0))
    record.close()
    consoles = tmp_path / "rec" / "consoles"
    files = sorted(path.name for path in consoles.iterdir())
    assert files == ["server.log", "server.log.1"]
    for path in consoles.iterdir():
        assert path.stat().st_size <= 4096
    first = (consoles / "server.log").read_text().splitlines()[0]
    assert first.startswith("[vmtui record: cut here: 4096 bytes reached; the part before is in server.log.1")
    assert json.loads((tmp_path / "rec" / "meta.json").read_text())["rotated"][0] == "consoles/server.log"
    # Replay gets the newest lines with their real numbers; older ones are named as cut.
    numbered = list(read_lines(consoles / "server.log"))
    assert numbered[-1] == (499, "chunk 99 line 4 " + "x" * 40)
    console = [e for e in RecordReader(tmp_path / "rec").events() if isinstance(e, ConsoleOutput)]
    assert console[-1].lines[-1] == "chunk 99 line 4 " + "x" * 40
    assert console[0].lines == ("[vmtui: 5 console lines here were rotated out of the record]",)


def test_a_capped_log_keeps_line_numbers_across_rotations(tmp_path: Path) -> None:
    log = CappedLog(tmp_path / "x.log", 1024)
    for i in range(300):
        log.write_lines([f"line {i}"])
    log.close()
    assert log.rotations >= 2
    assert [n for n, _ in read_lines(tmp_path / "x.log")][-1] == 299
    assert all(text == f"line {n}" for n, text in read_lines(tmp_path / "x.log"))


def test_replaying_a_record_gives_back_the_events_it_saw(tmp_path: Path) -> None:
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(seen.append)
    record = RunRecord(tmp_path / "rec", make_config(tmp_path), kind="headless")
    bus.subscribe(record)
    failing_run(bus)
    record.close()
    assert list(RecordReader(tmp_path / "rec").events()) == seen


def test_tui_records_keep_the_newest_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config = make_config(tmp_path)
    made = []
    for _ in range(4):
        directory = new_tui_record_directory("web", keep=2)
        RunRecord(directory, config, kind="tui").close(ok=True)
        made.append(directory)
    parent = tmp_path / "state" / "vmtui" / "runs" / "web"
    assert list_runs(parent) == made[-2:]
    (parent / "not-a-record").mkdir()
    assert prune_runs(parent, keep=1) == [made[-2]]
    assert (parent / "not-a-record").is_dir()


def test_the_headless_record_replaces_only_an_earlier_record(tmp_path: Path) -> None:
    first = headless_record_directory(tmp_path)
    RunRecord(first, make_config(tmp_path), kind="headless").close()
    assert is_record(first)
    assert headless_record_directory(tmp_path) == first and not first.exists()
    first.mkdir()
    (first / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a vmtui run record"):
        headless_record_directory(tmp_path)


def test_the_serial_budget_trims_serial_lines_once_with_a_note() -> None:
    budget = SerialBudget(100, lambda machine: f"/out/vmtui-run/consoles/{machine}.log")
    first = ["a" * 40, "b" * 40]
    assert budget.admit("server", first) == first
    budget.count(82)
    note = budget.admit("server", ["c" * 40])
    assert len(note) == 1 and "serial output of server is trimmed" in note[0]
    assert "/out/vmtui-run/consoles/server.log" in note[0]
    assert budget.admit("server", ["d"]) == []
    assert budget.trimmed_lines == 2


def test_a_tui_session_records_under_the_state_dir_and_bundles_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from vmtui.replay.past_runs import keep_runs, start_tui_record

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("VMTUI_KEEP_RUNS", "3")
    assert keep_runs() == 3
    bus = EventBus()
    warnings: list[str] = []
    record = start_tui_record(make_config(tmp_path), bus, lambda: [], warn=warnings.append)
    assert record is not None and not warnings
    assert record.directory.parent == tmp_path / "state" / "vmtui" / "runs" / "web"
    failing_run(bus)
    for _ in range(200):  # the bundle is written by a thread of its own
        done = record.directory / "failure" / "failure.txt"
        if done.exists() and "failing line" in done.read_text():
            break
        time.sleep(0.01)
    record.close()
    assert "failing line: web.py:2" in (record.directory / "failure" / "failure.txt").read_text()
    monkeypatch.setenv("VMTUI_KEEP_RUNS", "zero")
    assert keep_runs() == 20


def test_a_screen_picture_round_trips_through_events_jsonl() -> None:
    # A screenshot publishes its PNG bytes; events.jsonl is JSON, so they travel as base64.
    from driver.events import ScreenCaptured

    event = ScreenCaptured("desk", "screenshot shot.png", 2, 1, b"\x89PNG\r\n\x1a\nrest", path="/out/shot.png", block_id=3)
    line = json.dumps(encode_event(event))
    assert decode_event(json.loads(line)) == event
