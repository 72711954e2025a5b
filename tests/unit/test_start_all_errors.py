"""`start_all()` when start scripts fail at once: one readable error.

The start scripts are real processes that exit before QEMU would run; no
guest boots.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from driver.config import NodeConfig
from driver.config import TestConfig as Config  # not "Test*": pytest would collect it
from driver.driver import Driver
from driver.errors import MachineError
from driver.events import EventBus


def _failing_start_script(directory: Path, name: str, message: str) -> Path:
    script = directory / f"run-{name}-vm"
    script.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 3\n")
    script.chmod(0o755)
    return script


def _driver(tmp_path: Path, names: list[str]) -> Driver:
    test_script = tmp_path / "test.py"
    test_script.write_text("start_all()\n")
    nodes = [NodeConfig(name, str(_failing_start_script(tmp_path, name, f"{name} cannot start"))) for name in names]
    config = Config(nodes=nodes, vlans=[], script_path=test_script)
    return Driver(config, bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state")


def test_one_failed_start_names_the_machine_once(tmp_path: Path) -> None:
    with _driver(tmp_path, ["web-server"]) as driver, pytest.raises(MachineError) as caught:
        driver.start_all()
    message = str(caught.value)
    assert message.startswith("could not start web-server: QEMU exited with status 3"), message
    assert message.count("web-server:") == 1, message
    assert "web-server cannot start" in message


def test_several_failed_starts_each_say_why(tmp_path: Path) -> None:
    with _driver(tmp_path, ["db", "web"]) as driver, pytest.raises(MachineError) as caught:
        driver.start_all()
    message = str(caught.value)
    assert message.startswith("could not start db: QEMU exited with status 3"), message
    assert "; web: QEMU exited with status 3" in message, message
    assert message.count("db:") == 1 and message.count("web:") == 1, message
