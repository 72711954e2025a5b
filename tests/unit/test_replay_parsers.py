"""NixOS logs (both eras, terminal and XML) parsed into console panes and a timeline.

The samples in tests/data are hand-written in the shapes the NixOS driver
prints (reference §4): `nixos-envvar-era.log` as `nix build -L` shows an
older driver's run (`(N seconds)` block ends, an uncaught traceback),
`nixos-json-era.log` as `nix log` prints a 2026 driver's (colours, `!!!`
errors, subtests), `nixos-logfile.xml` the XML LOGFILE of a failed test.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driver.errors import ConfigError
from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    Event,
    LogLevel,
    LogMessage,
    MachineState,
    MachineStateChanged,
    ScriptFinished,
)
from vmtui.replay.nixlog import NixosLogParser
from vmtui.replay.script_match import ScriptMatcher, failing_line_of
from vmtui.replay.session import ReplaySession
from vmtui.replay.source import open_source

DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass
class Block:
    title: str
    machine: str | None
    script_line: int | None
    ok: bool | None = None
    duration: float | None = None
    children: list[Block] = field(default_factory=list)


@dataclass
class Replayed:
    """What the UI would show: panes, the timeline, the verdict."""

    consoles: dict[str, list[str]]
    blocks: list[Block]
    errors: list[str]
    finished: ScriptFinished
    states: list[tuple[str, MachineState]]


def replay(events: list[Event]) -> Replayed:
    consoles: dict[str, list[str]] = {}
    roots: list[Block] = []
    by_id: dict[int, Block] = {}
    errors: list[str] = []
    states: list[tuple[str, MachineState]] = []
    finished = None
    for event in events:
        if isinstance(event, ConsoleOutput):
            consoles.setdefault(event.machine, []).extend(event.lines)
        elif isinstance(event, BlockOpened):
            block = Block(event.title, event.machine, event.script_line)
            by_id[event.block_id] = block
            (by_id[event.parent_id].children if event.parent_id in by_id else roots).append(block)
        elif isinstance(event, BlockClosed):
            by_id[event.block_id].ok = event.ok
            by_id[event.block_id].duration = event.duration
        elif isinstance(event, LogMessage) and event.level == LogLevel.ERROR:
            errors.append(event.message)
        elif isinstance(event, MachineStateChanged):
            states.append((event.machine, event.state))
        elif isinstance(event, ScriptFinished):
            finished = event
    assert finished is not None
    return Replayed(consoles, roots, errors, finished, states)


def parse(name: str, script: str | None = None) -> Replayed:
    source = open_source(DATA / name, DATA / script if script else None)
    return replay(list(source.events()))


def outline(blocks: list[Block]) -> list[tuple[str, bool | None, float | None, int | None, int]]:
    return [(f"{b.machine}: {b.title}" if b.machine else b.title, b.ok, b.duration, b.script_line, len(b.children))
            for b in blocks]


def test_env_var_era_log_from_nix_build() -> None:
    log = parse("nixos-envvar-era.log", "webshop.py")
    assert log.consoles["shop"][0].startswith("Formatting '/build/vm-state-shop/shop.qcow2'")
    assert log.consoles["buyer"] == [
        "[    0.000000] Linux version 5.10.81 (nixbld@localhost) (gcc 10.3.0)",
        "[    3.804114] systemd[1]: Reached target Multi-User System.",
        "[    8.112040] curl: (22) The requested URL returned error: 500",
    ]
    # This era's driver logs its blocks one after the other at the top level;
    # the failed `must succeed` never printed its end: it failed at `cleaning up`.
    assert [(b.title, b.ok) for b in log.blocks] == [
        ("start all VMs", True),
        ("waiting for unit shopd.service", True),
        ("waiting for TCP port 8080", True),
        ("must succeed: curl -sf http://shop:8080/cart", False),
        ("cleaning up", True),
    ]
    assert log.finished.ok is False
    assert log.finished.error_line == 6
    assert log.finished.error == "Exception: command `curl -sf http://shop:8080/cart` failed (exit code 22)"
    assert ("shop", MachineState.BOOTING) in log.states and ("buyer", MachineState.CONNECTED) in log.states


def test_env_var_era_blocks_and_their_script_lines() -> None:
    source = open_source(DATA / "nixos-envvar-era.log", DATA / "webshop.py")
    opened = [e for e in source.events() if isinstance(e, BlockOpened)]
    closed = {e.block_id: e for e in source.events() if isinstance(e, BlockClosed)}
    table = [(e.machine, e.title, e.script_line, closed[e.block_id].ok, closed[e.block_id].duration) for e in opened]
    assert table == [
        (None, "start all VMs", None, True, 0.08),
        ("shop", "waiting for unit shopd.service", 2, True, 6.52),
        ("shop", "waiting for the VM to finish booting", None, True, 6.31),
        ("shop", "waiting for TCP port 8080", 3, True, 1.02),
        ("buyer", "must succeed: curl -sf http://shop:8080/cart", 6, False, None),
        ("buyer", "waiting for the VM to finish booting", None, True, 7.02),
        (None, "cleaning up", None, True, 0.01),
    ]


def test_json_era_log_with_colours_subtests_and_a_failed_unit() -> None:
    log = parse("nixos-json-era.log", "storefront.py")
    # The guest's own colours stay; the logger's dimming and the prefix go.
    assert log.consoles["store"][1] == "[    2.917113] systemd[1]: \x1b[0;1;32mStarted\x1b[0m storefront.service."
    assert log.consoles["gateway"] == ["[    0.000000] Linux version 6.12.40 (nixbld@localhost)"]
    assert [b.title for b in log.blocks] == ["start all VLans", "run the VM test script", "cleanup"]
    script_run = log.blocks[1]
    assert outline(script_run.children) == [
        ("start all VMs", True, 0.09, None, 2),
        ("subtest: the store boots", True, 6.4, 3, 1),
        ("subtest: the storefront answers", False, None, 6, 2),
    ]
    failing = script_run.children[2].children
    assert outline(failing) == [
        ("gateway: waiting for unit multi-user.target", True, 0.52, 7, 1),
        ("store: waiting for unit storefront.service", False, None, 8, 0),
    ]
    assert script_run.ok is False
    assert log.errors[0] == 'Test "the storefront answers" failed with error: "unit "storefront.service" reached state "failed""'
    assert log.finished.error_line == 8
    assert log.finished.error == 'RequestedAssertionFailed: unit "storefront.service" reached state "failed"'
    assert outline(log.blocks[2].children) == [
        ("gateway: kill machine (pid 21)", True, 0.01, None, 0),
        ("store: kill machine (pid 24)", True, 0.01, None, 0),
    ]


def test_xml_logfile_of_a_failed_test() -> None:
    log = parse("nixos-logfile.xml", "mailer.py")
    assert log.consoles["mailer"][-1] == "[    6.400512] postfix/local[815]: status=deferred (mail system is down)"
    assert [b.title for b in log.blocks] == ["start all VLans", "run the VM test script", "cleanup"]
    subtest = log.blocks[1].children[1]
    assert outline([subtest]) == [("subtest: mail is delivered", False, None, 2, 3)]
    assert outline(subtest.children) == [
        ("mailer: waiting for unit postfix.service", True, 5.31, 3, 1),
        ("mailer: must succeed: echo hi | sendmail alice", True, 0.22, 4, 0),
        ("mailer: must succeed: test -s /var/mail/alice", False, None, 5, 0),
    ]
    assert log.finished.ok is False and log.finished.error_line == 5
    assert log.errors[-1] == "RequestedAssertionFailed: command `test -s /var/mail/alice` failed (exit code 1)"


def test_the_failing_line_comes_from_the_traceback_even_without_the_script() -> None:
    log = parse("nixos-json-era.log")
    assert log.finished.error_line == 8
    assert all(b.script_line is None for b in log.blocks)


def test_a_compressed_log_as_saved_from_hydra(tmp_path: Path) -> None:
    path = tmp_path / "storefront.log.gz"
    path.write_bytes(gzip.compress((DATA / "nixos-json-era.log").read_bytes()))
    source = open_source(path)
    assert source.kind == "nixos-log" and source.name == "storefront"
    assert replay(list(source.events())).finished.error_line == 8


def test_a_log_cut_off_mid_block_fails_the_open_blocks() -> None:
    parser = NixosLogParser()
    events: list[Event] = []
    for line in ["server: must succeed: sleep 999", "server # still sleeping"]:
        events += parser.feed(line)
    events += parser.finish()
    log = replay(events)
    assert outline(log.blocks) == [("server: must succeed: sleep 999", False, None, None, 0)]
    assert log.finished.ok is False


def test_a_passing_log_is_a_pass_and_a_word_before_a_colon_is_not_a_node() -> None:
    parser = NixosLogParser()
    events: list[Event] = []
    for line in ["error: this is not a node", "machine: must succeed: true",
                 "machine: (finished: must succeed: true, in 0.01 seconds)"]:
        events += parser.feed(line)
    events += parser.finish()
    log = replay(events)
    assert log.finished.ok is True
    assert parser.machines == {"machine"}
    assert outline(log.blocks) == [("machine: must succeed: true", True, 0.01, None, 0)]


def test_script_matching_moves_forward_and_wraps() -> None:
    matcher = ScriptMatcher('a.succeed("ls /x")\nb.succeed("ls /y")\nfor i in range(2):\n    a.succeed("ls /x")\n')
    assert matcher.line_for("must succeed: ls /x") == 1
    assert matcher.line_for("must succeed: ls /y") == 2
    assert matcher.line_for("must succeed: ls /x") == 4
    assert matcher.line_for("must succeed: ls /y") == 2
    assert matcher.line_for("start all VMs") is None
    assert failing_line_of(['  File "/nix/store/x-driver/lib/python3.13/site-packages/test_driver/driver.py", line 9',
                            '  File "<string>", line 4, in <module>',
                            '  File "/nix/store/x-driver/lib/python3.13/site-packages/test_driver/machine.py", line 1']) == 4


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        open_source(tmp_path / "missing.log")
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(ConfigError, match="not a NixOS test log"):
        open_source(binary)
    with pytest.raises(ConfigError, match="not a vmtui run record"):
        open_source(tmp_path)
    with pytest.raises(ConfigError, match="no such test script"):
        open_source(DATA / "nixos-json-era.log", tmp_path / "nope.py")


def test_the_session_keeps_moments_and_searches_from_disk(tmp_path: Path) -> None:
    session = ReplaySession(open_source(DATA / "nixos-json-era.log", DATA / "storefront.py"), tmp_path)
    published: list[Event] = []
    session.stream(published.append)
    assert session.finished.is_set() and session.result is not None
    opened = {e.title: e.block_id for e in published if isinstance(e, BlockOpened) and e.machine == "store"}
    # When store started waiting for storefront.service, it had printed 3 lines.
    assert session.moment_of(opened["waiting for unit storefront.service"]) == {"store": 3, "gateway": 1}
    first, window = session.console_window("store", 3, before=2, after=1)
    assert first == 1 and window[-1] == "[    7.001204] storefront[733]: panic: database is locked"
    hits = session.search("storefront")
    assert [(h.where, h.block_id is not None) for h in hits][:2] == [("(driver)", True), ("(driver)", True)]
    assert ("store", 1) in [(h.where, h.line) for h in hits]
    session.close()


def test_control_characters_in_driver_lines_never_reach_a_widget() -> None:
    parser = NixosLogParser()
    events = parser.feed("machine: must succeed: echo \x1b]0;pwned\x07\x1b[2J\x08done")
    opened = [e for e in events if isinstance(e, BlockOpened)]
    # The escapes go; the backspace steps back over the space, as on a terminal.
    assert opened[0].title == "must succeed: echodone"


def test_driver_lines_read_as_a_terminal_shows_them() -> None:
    parser = NixosLogParser()
    # A progress line redrawn with `\r` shows its last drawing, not every
    # drawing run together; an 8-bit CSI and other C1 controls go whole; the
    # guest's colours inside a message do not survive as bytes.
    events = parser.feed("server: downloading 10%\rdownloading 100%\n")
    events += parser.feed("\x9b31mred\x9b0m text\x85")
    events += parser.feed("!!! failed: \x1b[1;31mboom\x1b[0m")
    events += parser.feed("!!! step 1/2\rstep 2/2")
    messages = [e.message for e in events if isinstance(e, LogMessage)]
    assert messages == ["server: downloading 100%", "red text", "failed: boom", "step 2/2"]
    for message in messages:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in message)


def test_xml_log_driver_lines_read_as_a_terminal_shows_them() -> None:
    from vmtui.replay.xmllog import XmlLogParser

    # C1 controls and `\r` are legal in XML (ESC is not); serial lines stay raw for the panes.
    xml = (
        '<logfile><nest><head machine="box">must succeed: echo \x9b2Jhi</head>'
        '<line machine="box">step 1/2&#13;step 2/2</line>'
        '<line machine="box" type="serial">boot 10%&#13;boot 100%</line>'
        '<line>(finished: must succeed: echo \x9b2Jhi, in 0.10 seconds)</line></nest></logfile>'
    ).encode()
    events = list(XmlLogParser().parse(io.BytesIO(xml)))
    assert [e.title for e in events if isinstance(e, BlockOpened)] == ["must succeed: echo hi"]
    assert [e.message for e in events if isinstance(e, LogMessage)] == ["step 2/2"]
    assert [e.lines for e in events if isinstance(e, ConsoleOutput)] == [("boot 10%\rboot 100%",)]
    closed = [e for e in events if isinstance(e, BlockClosed)]
    assert len(closed) == 1 and closed[0].ok
