"""`import test_driver` inside a script run, and machines a script builds itself.

No VM boots here: machines are constructed (state directories only).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

from driver import polling
from driver.config import NodeConfig
from driver.config import TestConfig as Config
from driver.driver import Driver
from driver.errors import MachineError, RequestedAssertionFailed
from driver.events import EventBus
from driver.machine import Machine
from driver.runner import ScriptRunner
from driver.scriptapi import script_modules


@pytest.fixture
def start_script(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "run-server-vm"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def driver(tmp_path: Path, start_script: Path) -> Iterator[Driver]:
    test_script = tmp_path / "test.py"
    test_script.write_text("")
    config = Config(nodes=[NodeConfig("server", str(start_script))], vlans=[], script_path=test_script)
    with Driver(config, bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as d:
        yield d


def run(driver: Driver, source: str) -> ScriptRunner:
    runner = ScriptRunner(driver, driver.bus)
    runner.load(source, str(driver.config.script_path))
    result = runner.run()
    assert result.ok, result.error
    return runner


SURFACE = """
import datetime
import test_driver
from test_driver.errors import MachineError, RequestedAssertionFailed, TestScriptError
from test_driver.machine import BaseMachine, Machine, QemuMachine, retry
from test_driver.duration import Duration
from test_driver.efi import EfiGuid, EfiVariable
from test_driver.logger import AbstractLogger
from test_driver.driver import Driver
from test_driver.polling_condition import PollingCondition
import test_driver.machine as machine_module

assert isinstance(server, QemuMachine) and isinstance(server, BaseMachine)
assert isinstance(log, AbstractLogger)
assert isinstance(driver, Driver)
assert issubclass(RequestedAssertionFailed, TestScriptError)
found = (QemuMachine, RequestedAssertionFailed, retry, EfiVariable, Duration)
"""


def test_a_script_imports_the_nixos_module_surface(driver: Driver) -> None:
    runner = run(driver, SURFACE)
    qemu_machine, failed, retry, efi_variable, _duration = runner.namespace["found"]
    assert qemu_machine is Machine and failed is RequestedAssertionFailed
    assert retry is polling.retry
    from driver.efi_vars import EfiVariable

    assert efi_variable is EfiVariable


def test_test_driver_is_importable_only_during_a_run(driver: Driver) -> None:
    assert "test_driver" not in sys.modules
    run(driver, "import test_driver.errors\n")
    assert "test_driver" not in sys.modules and "test_driver.errors" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        __import__("test_driver")


def test_an_installed_test_driver_is_shadowed_only_inside_the_run(driver: Driver) -> None:
    installed = types.ModuleType("test_driver")
    installed_errors = types.ModuleType("test_driver.errors")
    sys.modules["test_driver"], sys.modules["test_driver.errors"] = installed, installed_errors
    try:
        runner = run(driver, "import test_driver.errors as e\nours = e.RequestedAssertionFailed\n")
        assert runner.namespace["ours"] is RequestedAssertionFailed
        assert sys.modules["test_driver"] is installed and sys.modules["test_driver.errors"] is installed_errors
    finally:
        del sys.modules["test_driver"], sys.modules["test_driver.errors"]


def test_script_modules_nest() -> None:
    with script_modules():
        with script_modules():
            import test_driver.machine  # noqa: F401
        assert "test_driver.machine" in sys.modules
    assert "test_driver.machine" not in sys.modules


SUBCLASS = """
import datetime
from test_driver.machine import QemuMachine

class FinitMachine(QemuMachine):
    def wait_for_service(self, service, timeout=datetime.timedelta(minutes=15)):
        self.wait_until_succeeds(f"initctl cond get service/{service}/running", timeout=timeout)

extra = FinitMachine(start_command=START, name="extra", keep_machine_state=False, logger=log)
nameless = FinitMachine(start_command=START.replace("run-server-vm", "run-other-vm"))
"""


def test_a_script_builds_machines_of_its_own_subclass(driver: Driver, start_script: Path) -> None:
    source = f"START = {str(start_script)!r}\n" + SUBCLASS
    runner = run(driver, source)
    extra, nameless = runner.namespace["extra"], runner.namespace["nameless"]
    assert type(extra).__name__ == "FinitMachine" and isinstance(extra, Machine)
    assert repr(extra) == "<FinitMachine 'extra'>"
    assert nameless.name == "other"  # the name comes from the start script, as in NixOS
    # They joined the test: released at cleanup like the nodes, state under its tmp dir.
    assert extra in driver.machines and nameless in driver.machines
    assert extra.state_dir == driver.tmp_dir / "vm-state-extra" and extra.state_dir.is_dir()
    assert extra.bus is driver.bus and extra.cancel_event is driver.cancel_event


def test_a_machine_without_a_running_test_is_a_clear_error(start_script: Path) -> None:
    with pytest.raises(MachineError, match="needs a running vmtui test"):
        Machine(start_command=str(start_script), name="x")


def test_wait_for_job_is_wait_for_unit(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    server = driver.machine_named("server")
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(server, "wait_for_unit", lambda *args: calls.append(args))
    server.wait_for_job("nginx.service", None, 5)
    assert calls == [("nginx.service", None, 5)]


def test_a_failed_assertion_from_the_imported_module_is_the_drivers(driver: Driver) -> None:
    runner = ScriptRunner(driver, driver.bus)
    runner.load("from test_driver.errors import RequestedAssertionFailed\nraise RequestedAssertionFailed('x')\n", "t.py")
    result = runner.run()
    assert not result.ok and result.error == "RequestedAssertionFailed: x"
    assert RequestedAssertionFailed.__module__ == "driver.errors"


def test_the_repl_after_a_run_imports_test_driver_too(driver: Driver) -> None:
    from driver.stepper import Stepper

    stepper = Stepper(driver.bus)
    runner = ScriptRunner(driver, driver.bus, stepper)
    runner.load("value = 1\n", str(driver.config.script_path))
    assert runner.run().ok
    answer = stepper.evaluate("import test_driver.machine; test_driver.machine.QemuMachine is type(server)")
    assert answer.strip() == "True", answer
    assert "test_driver" not in sys.modules
