"""`Driver.restart_machine`: swapping a node's start command, without booting.

Booting with the new command (the other nodes untouched) is covered with
real guests in tests/integration/test_nix_tui.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from driver.config import NodeConfig
from driver.config import TestConfig as Config  # not "Test*": pytest would collect it
from driver.driver import Driver
from driver.errors import ConfigError
from driver.events import EventBus


def _stub(directory: Path, name: str) -> Path:
    script = directory / name / "bin" / f"run-{name}-vm"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    test_script = tmp_path / "test.py"
    test_script.write_text("pass\n")
    config = Config(
        nodes=[NodeConfig("web-server", str(_stub(tmp_path, "old-web"))), NodeConfig("db", str(_stub(tmp_path, "db")))],
        vlans=[],
        script_path=test_script,
    )
    with Driver(config, bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as d:
        yield d


def test_the_new_command_replaces_the_old_one_in_the_machine_and_the_config(driver: Driver, tmp_path: Path) -> None:
    web = driver.machine_named("web-server")
    (web.state_dir / "web-server.qcow2").write_text("a disk of the old configuration")
    new = str(_stub(tmp_path, "new-web"))

    machine = driver.restart_machine("web_server", new, start=False)  # the Python name works too

    assert machine is web  # names bound in the script's namespace stay valid
    assert web.start_command == new
    assert {n.name: n.start_command for n in driver.config.nodes}["web-server"] == new
    # The old configuration's disk is gone; the directory is there, private.
    assert web.state_dir.is_dir() and not any(web.state_dir.iterdir())
    assert web.state_dir.stat().st_mode & 0o777 == 0o700
    db = driver.machine_named("db")
    assert db.start_command == str(tmp_path / "db" / "bin" / "run-db-vm")


def test_a_missing_start_script_changes_nothing(driver: Driver, tmp_path: Path) -> None:
    web = driver.machine_named("web-server")
    before = web.start_command
    with pytest.raises(ConfigError, match="web-server: start script not found"):
        driver.restart_machine("web-server", str(tmp_path / "gone" / "bin" / "run-web-server-vm"), start=False)
    assert web.start_command == before


def test_an_unknown_node_is_named_in_the_error(driver: Driver) -> None:
    with pytest.raises(ConfigError, match=r"no node named 'cache' \(nodes: db, web-server\)"):
        driver.restart_machine("cache", start=False)


def test_a_restart_never_changes_a_node_config_another_thread_holds(driver: Driver, tmp_path: Path) -> None:
    # The TUI's thread reads the config (panes, shells, a rebuild's diff)
    # while a worker restarts nodes: it must see the old nodes or the new
    # ones, never a node changing under it.
    held_nodes = driver.config.nodes
    held = {node.name: (node, node.start_command) for node in held_nodes}
    new = str(_stub(tmp_path, "new-web"))

    driver.restart_machine("web-server", new, start=False)

    assert [(n.name, n.start_command) for n in held_nodes] == [(name, command) for name, (_, command) in held.items()]
    assert {n.name: n.start_command for n in driver.config.nodes}["web-server"] == new
    assert driver.config.nodes is not held_nodes
    assert {n.name: n for n in driver.config.nodes}["db"] is held["db"][0]  # unchanged nodes are shared
