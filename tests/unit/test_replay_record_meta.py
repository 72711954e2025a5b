"""`vmtui replay DIR` of a record whose meta.json is nonsense: one line, exit 2, nothing opened.

vmtui writes meta.json whole, so a bad one was edited or comes from
elsewhere; replay refuses it naming the file and the field (see
vmtui/replay/record_meta.py) instead of opening panes made of whatever the
fields hold, or a script pane showing a file outside the record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driver.errors import ConfigError
from vmtui.replay.past_runs import describe_run
from vmtui.replay.source import open_source

SOUND: dict[str, Any] = {
    "format": "vmtui-run",
    "version": 1,
    "kind": "headless",
    "test": "todos",
    "nodes": ["server", "client"],
    "started": "2026-12-03T10:00:00Z",
    "ended": None,
    "ok": False,
    "script": "test.py",
    "source": None,
    "error": "AssertionError: boom",
    "error_line": 3,
}


def write_record(tmp_path: Path, meta: Any, *, raw: str | None = None) -> Path:
    record = tmp_path / "record"
    record.mkdir()
    (record / "meta.json").write_text(raw if raw is not None else json.dumps(meta), encoding="utf-8")
    (record / "events.jsonl").write_text("", encoding="utf-8")
    (record / "test.py").write_text("start_all()\n", encoding="utf-8")
    return record


def changed(**fields: Any) -> dict[str, Any]:
    return {**SOUND, **fields}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in SOUND.items() if k != key}


def test_a_sound_record_opens_with_its_nodes_and_script(tmp_path: Path) -> None:
    record = write_record(tmp_path, {**SOUND, "added_by_a_newer_vmtui": [1, 2]})
    source = open_source(record)
    assert (source.kind, source.name, source.nodes) == ("record", "todos", ["server", "client"])
    assert source.script_path == record / "test.py"


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (changed(nodes="abc"), '"nodes" should be a list of node names, not "abc"'),
        (changed(nodes={"server": 1}), '"nodes" should be a list of node names'),
        (changed(nodes=["server", {"x": 1}]), '"nodes" should be a list of node names'),
        (changed(nodes=["server", "a\nb"]), '"nodes" should be a list of node names'),
        (changed(nodes=["server", "server"]), '"nodes" names a node twice'),
        (changed(test=["todos"]), '"test" should be the test\'s name, not ["todos"]'),
        (changed(version="1"), '"version" should be a positive whole number, not "1"'),
        (changed(version=True), '"version" should be a positive whole number, not true'),
        (changed(version=7), "record version 7 was written by a newer vmtui (this one reads 1)"),
        (changed(ok="yes"), '"ok" should be bool or null, not "yes"'),
        (changed(error_line=False), '"error_line" should be int or null, not false'),
        (changed(script="/etc/passwd"), '"script" should be the name of a file in the record, not "/etc/passwd"'),
        (changed(script="../../outside.py"), '"script" should be the name of a file in the record'),
        (changed(source=3), '"source" should be the name of a file in the record, not 3'),
        (without("nodes"), '"nodes" is missing (vmtui writes it in every record)'),
        (without("version"), '"version" is missing'),
        (changed(format="something-else"), 'not the meta.json of a vmtui run record (no "format": "vmtui-run")'),
        ([SOUND], "not a JSON object"),
    ],
)
def test_nonsense_fields_are_one_clear_error(tmp_path: Path, meta: Any, expected: str) -> None:
    record = write_record(tmp_path, meta)
    with pytest.raises(ConfigError) as caught:
        open_source(record)
    message = str(caught.value)
    assert message.startswith(f"{record / 'meta.json'}: ") and expected in message
    assert "\n" not in message
    # The meta.json itself, named on the command line, is the same record.
    with pytest.raises(ConfigError, match="meta.json"):
        open_source(record / "meta.json")


@pytest.mark.parametrize("raw", ['{"format": "vmtui-run", ', "", "\xff not json"])
def test_a_meta_json_that_is_not_json_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: str) -> None:
    from vmtui.cli import main

    record = write_record(tmp_path, None, raw=raw)
    assert main(["replay", str(record)]) == 2
    assert main(["replay", str(record / "meta.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1]
    assert err[0].startswith(f"vmtui: {record / 'meta.json'}: not valid JSON")


def test_the_past_runs_list_shows_a_bad_record_as_unreadable(tmp_path: Path) -> None:
    record = write_record(tmp_path, changed(ok=["not", "hashable"]))
    assert describe_run(record) == 'record  unreadable: "ok" should be bool or null, not ["not", "hashable"]'
