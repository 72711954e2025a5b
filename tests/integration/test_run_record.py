"""Run records written by real headless runs, read back by replay's parsers.

A real process on real guests: the record in `<out>/vmtui-run/`, its
driver.log and the headless stderr (what `nix log` would show) parsed as a
NixOS log into the same panes and timeline as the record's own events; the
failure bundle; stderr trimmed under its budget while the record keeps every
serial line.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from driver.events import BlockOpened, ConsoleOutput, Event, ScriptFinished
from test_headless import vmtui, write_test
from vmtui.replay.nixlog import NixosLogParser
from vmtui.replay.source import open_source

FLOOD_LINES = 20000
KERNEL_MESSAGE = re.compile(r"\[ *\d+\.\d+\] [^\n]*\n")


def blocks_and_consoles(events: list[Event]) -> tuple[list[str], dict[str, list[str]]]:
    titles = [f"{e.machine}: {e.title}" if e.machine else e.title for e in events if isinstance(e, BlockOpened)]
    consoles: dict[str, list[str]] = {}
    for event in events:
        if isinstance(event, ConsoleOutput):
            consoles.setdefault(event.machine, []).extend(event.lines)
    return titles, consoles


def parse_text_log(text: str) -> list[Event]:
    parser = NixosLogParser()
    events: list[Event] = []
    for line in text.splitlines():
        events += parser.feed(line)
    return events + parser.finish()


@pytest.mark.vm
def test_a_failed_headless_run_leaves_a_record_that_replays_like_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_test(
        tmp_path,
        'start_all()\n'
        'with subtest("serial noise"):\n'
        f'    machine.succeed("seq 1 {FLOOD_LINES} > /dev/ttyS0")\n'
        'with subtest("broken"):\n'
        '    machine.succeed("echo oops; exit 3")\n',
    )
    monkeypatch.setenv("VMTUI_STDERR_SERIAL_LIMIT", "30000")
    result = vmtui(["run", "--headless", str(spec), "--junit-xml", "junit.xml"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    record = tmp_path / "vmtui-run"

    # stderr stayed under its budget, with a note naming the full console.
    console_path = record / "consoles" / "machine.log"
    assert f"vmtui: serial output of machine is trimmed from here on, to keep this log under 64 MB; " \
           f"its whole console is in {console_path}" in result.stderr.splitlines()
    assert f"machine # {FLOOD_LINES}" not in result.stderr
    assert len(result.stderr.encode()) < 60000
    # ... while the record kept every serial line, as received.
    text = console_path.read_text()
    console = text.splitlines()
    # The guest's kernel may print in the middle of the flood (the NIC's link
    # coming up lands as "3158[    4.45] IPv6: ... ready"): take its messages
    # out before counting, so the check is about vmtui losing nothing.
    numbers = [line for line in KERNEL_MESSAGE.sub("", text).splitlines() if line.isdigit()]
    assert numbers[-FLOOD_LINES:] == [str(n) for n in range(1, FLOOD_LINES + 1)]

    # The record's events, its driver.log and the stderr log give one timeline.
    source = open_source(record)
    assert source.kind == "record" and source.nodes == ["machine"] and source.script_path == record / "test.py"
    events = list(source.events())
    titles, consoles = blocks_and_consoles(events)
    assert "subtest: broken" in titles and "machine: must succeed: echo oops; exit 3" in titles
    assert consoles["machine"] == console
    finished = [e for e in events if isinstance(e, ScriptFinished)]
    assert finished[-1].ok is False and finished[-1].error_line == 5

    from_driver_log = parse_text_log((record / "driver.log").read_text())
    log_titles, log_consoles = blocks_and_consoles(from_driver_log)
    assert [t for t in log_titles if t.startswith(("subtest", "machine: must"))] == \
           [t for t in titles if t.startswith(("subtest", "machine: must"))]
    assert log_consoles["machine"] == console
    assert [e for e in from_driver_log if isinstance(e, ScriptFinished)][-1].error_line == 5

    from_stderr = parse_text_log(result.stderr)
    stderr_titles, _ = blocks_and_consoles(from_stderr)
    assert [t for t in stderr_titles if t.startswith("subtest")] == ["subtest: serial noise", "subtest: broken"]
    assert [e for e in from_stderr if isinstance(e, ScriptFinished)][-1].ok is False

    meta = json.loads((record / "meta.json").read_text())
    assert meta["ok"] is False and meta["kind"] == "headless" and meta["source"] == "test.toml"
    failure = (record / "failure" / "failure.txt").read_text()
    assert "failing line: test.py:5" in failure and 'machine.succeed("echo oops; exit 3")' in failure
    # The tiny guest has no display device: no screenshot, and the bundle says why.
    assert "machine: no screenshot" in failure and not list((record / "failure").glob("*.png"))

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert [c.get("name") for c in suite.findall("testcase")] == ["serial noise", "broken"]
    assert f"machine # {FLOOD_LINES}" in (suite.findtext("system-out") or "")


SYSTEMD_NODE = """[nodes.server]
guest = "systemd"
memory = 1024
packages = ["postgresql"]
"""


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_failed_wait_for_a_unit_brings_its_status_and_journal(tmp_path: Path) -> None:
    spec = write_test(
        tmp_path,
        'start_all()\n'
        'server.succeed("printf \'[Service]\\\\nExecStart=/bin/sh -c \\"echo broken-on-purpose; exit 3\\"\\\\n\' '
        '> /etc/systemd/system/broken.service && systemctl daemon-reload")\n'
        'server.succeed("systemctl start broken.service")\n'
        'server.wait_for_unit("broken.service")\n',
        nodes=SYSTEMD_NODE,
    )
    result = vmtui(["run", "--headless", str(spec)], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    bundle = tmp_path / "vmtui-run" / "failure"
    failure = (bundle / "failure.txt").read_text()
    assert "failed waiting for unit broken.service on server" in failure
    unit = (bundle / "unit-server-broken.service.txt").read_text()
    assert "$ systemctl status --no-pager --full broken.service   (exit status 3)" in unit
    assert "broken.service" in unit and "broken-on-purpose" in unit
    assert "$ journalctl --no-pager -n 200 -u broken.service" in unit


@pytest.mark.vm
def test_the_failure_bundle_has_a_screenshot_of_each_node_with_a_display(vm_network, tmp_path: Path) -> None:
    from driver.config import NodeConfig, TestConfig
    from driver.events import ScriptStarted
    from driver.record import RunRecord

    script = tmp_path / "t.py"
    script.write_text("start_all()\n")
    net = vm_network({"screen": {"vlans": [1], "command_prefix": "QEMU_OPTS='-vga std'"}, "plain": [1]})
    config = TestConfig(nodes=[NodeConfig(n, "") for n in ("plain", "screen")], vlans=[1], script_path=script)
    record = RunRecord(tmp_path / "rec", config, kind="headless")
    net.bus.subscribe(record)
    net.bus.publish(ScriptStarted(filename=str(script), run_id=1))
    net.start_all()
    net.bus.publish(ScriptFinished(run_id=1, ok=False, duration=1.0, error="AssertionError: shown", error_line=1))
    bundle = record.write_failure_bundle([net["plain"], net["screen"]])
    record.close()
    assert bundle is not None
    png = (bundle / "screenshot-screen.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert not (bundle / "screenshot-plain.png").exists()
    failure = (bundle / "failure.txt").read_text()
    assert "screen: screenshot screenshot-screen.png" in failure and "plain: no screenshot" in failure
    # The record saw the real boot: both consoles, and the screendump's own block.
    assert (tmp_path / "rec" / "consoles" / "screen.log").stat().st_size > 0
    driver_log = (tmp_path / "rec" / "driver.log").read_text()
    assert "screen: making screenshot" in driver_log
    # A node without a display is not asked for one: no screenshot block in the log.
    assert "plain: making screenshot" not in driver_log
    assert "plain: no screenshot (no display device)" in failure
