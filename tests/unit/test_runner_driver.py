"""The Driver's script namespace, without booting anything.

Machines are constructed (state directories only; QEMU starts on first use)
and no VLAN is configured, so no process is spawned here.
"""

from __future__ import annotations

import os
import threading
import unittest
from pathlib import Path
from typing import Iterator

import pytest

from driver import polling
from driver.config import NodeConfig
from driver.config import TestConfig as Config  # not "Test*": pytest would collect it
from driver.driver import (
    BASE_SYMBOLS,
    Driver,
    expected_symbol_names,
    machine_name_from_start_command,
    preflight,
    pythonize_name,
)
from driver.errors import ConfigError, RequestedAssertionFailed
from driver.events import BlockOpened, EventBus, LogLevel, LogMessage
from driver.machine import Machine
from driver.runner import ScriptRunner
from driver.stepper import Stepper


@pytest.fixture
def start_script(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "run-web-server-vm"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def config(tmp_path: Path, start_script: Path) -> Config:
    test_script = tmp_path / "test.py"
    test_script.write_text("value = 1\n")
    return Config(
        nodes=[NodeConfig("web-server", str(start_script)), NodeConfig("db", str(start_script))],
        vlans=[],
        script_path=test_script,
        global_timeout=120,
    )


@pytest.fixture
def driver(config: Config, tmp_path: Path) -> Iterator[Driver]:
    with Driver(config, bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as d:
        yield d


def test_pythonized_names() -> None:
    assert pythonize_name("web-server") == "web_server"
    assert pythonize_name("1node") == "_node"
    assert pythonize_name("a.b") == "a_b"


def test_machine_names_from_start_commands() -> None:
    assert machine_name_from_start_command("/nix/store/x/bin/run-server-vm") == "server"
    assert machine_name_from_start_command("/somewhere/start.sh") == "machine"


def test_symbols_are_the_nixos_globals(driver: Driver) -> None:
    symbols = driver.test_symbols()
    assert set(BASE_SYMBOLS) <= set(symbols)
    assert symbols["web_server"].name == "web-server"
    assert [m.name for m in symbols["machines"]] == ["db", "web-server"]
    assert "machine" not in symbols  # only with exactly one node
    assert symbols["driver"] is driver and symbols["log"]._logger is driver.logger and symbols["os"] is os
    assert symbols["Machine"] is Machine and symbols["QemuMachine"] is Machine
    assert symbols["retry"] is polling.retry
    assert set(symbols) == expected_symbol_names(driver.config)
    # A fresh dict every time: a script's names never leak into the next run.
    symbols["mine"] = 1
    assert "mine" not in driver.test_symbols()


def _warnings(events: list[object]) -> list[str]:
    return [e.message for e in events if isinstance(e, LogMessage) and e.level == LogLevel.WARNING]


def test_single_node_is_also_machine_and_its_first_use_warns(tmp_path: Path, start_script: Path, config: Config) -> None:
    config.nodes = config.nodes[:1]
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    with Driver(config, bus=bus, out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as driver:
        symbols = driver.test_symbols()
        alias, node = symbols["machine"], symbols["web_server"]
        # Looking at it (a debugger's variable view) is not a use.
        assert repr(alias) == "<QemuMachine 'web-server'>"
        assert isinstance(alias, Machine) and alias == node and hash(alias) == hash(node)
        assert _warnings(events) == []
        # The first use warns, naming the node; later uses (any thread) do not.
        assert alias.name == "web-server"
        threads = [threading.Thread(target=lambda: alias.is_up()) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        alias.keep_machine_state = True
        assert node.keep_machine_state is True
        [warning] = _warnings(events)
        assert "`machine`" in warning and "deprecated" in warning and "`web-server`" in warning
        # Every run of the script (a rerun in the TUI) warns again, once.
        driver.test_symbols()["machine"].is_up()
        assert len(_warnings(events)) == 2


def test_a_node_called_machine_never_warns(tmp_path: Path, start_script: Path, config: Config) -> None:
    config.nodes = [NodeConfig("machine", str(start_script))]
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    with Driver(config, bus=bus, out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as driver:
        symbols = driver.test_symbols()
        assert symbols["machine"] is driver.machines[0]
        symbols["machine"].is_up()
        assert _warnings(events) == []


def test_a_node_shows_as_qemu_machine(driver: Driver) -> None:
    # NixOS 2026 names the node class QemuMachine, and so does its repr.
    assert {repr(m) for m in driver.machines} == {"<QemuMachine 'db'>", "<QemuMachine 'web-server'>"}


def test_t_fails_the_test_tidily(driver: Driver) -> None:
    t = driver.test_symbols()["t"]
    assert isinstance(t, unittest.TestCase)
    t.assertEqual([1, 2], [1, 2])
    with pytest.raises(RequestedAssertionFailed, match="1 != 2"):
        t.assertEqual(1, 2)
    with pytest.raises(RequestedAssertionFailed):
        t.assertIn("x", "abc")


def test_serial_stdout_switches(driver: Driver) -> None:
    symbols = driver.test_symbols()
    symbols["serial_stdout_off"]()
    assert driver.logger.serial_stdout is False
    symbols["serial_stdout_on"]()
    assert driver.logger.serial_stdout is True


def test_polling_condition_is_bound_to_the_driver_logger(driver: Driver) -> None:
    condition = driver.test_symbols()["polling_condition"](lambda: True, seconds_interval=5)
    assert isinstance(condition, polling.PollingCondition)
    assert condition.logger is driver.logger and condition.seconds_interval == 5


def test_create_machine_new_and_legacy_forms(driver: Driver, start_script: Path) -> None:
    create = driver.test_symbols()["create_machine"]
    extra = create(str(start_script))
    assert extra.name == "web-server"
    named = create(str(start_script), name="other", keep_machine_state=True)
    assert named.name == "other" and named.keep_machine_state
    events: list[object] = []
    driver.bus.subscribe(events.append)
    legacy = create({"startCommand": str(start_script), "name": "legacy", "allowReboot": True})
    assert legacy.name == "legacy" and legacy.allow_reboot
    assert any(isinstance(e, LogMessage) and e.level == LogLevel.WARNING for e in events)
    assert [m.name for m in driver.test_symbols()["machines"]][-3:] == ["web-server", "other", "legacy"]


def test_debug_breakpoint_without_a_stepper_only_warns(driver: Driver) -> None:
    events: list[object] = []
    driver.bus.subscribe(events.append)
    driver.test_symbols()["debug"].breakpoint()
    assert any("debug.breakpoint() ignored" in getattr(e, "message", "") for e in events)


def test_a_runner_with_a_stepper_hooks_debug_breakpoint(driver: Driver) -> None:
    stepper = Stepper(driver.bus)
    ScriptRunner(driver, driver.bus, stepper)
    assert driver.breakpoint_hook == stepper.request_break


def test_driver_installs_its_cancel_event_for_machine_waits(driver: Driver) -> None:
    assert polling.current_cancel_event() is driver.cancel_event
    driver.cleanup()
    assert polling.current_cancel_event() is None


def test_cleanup_is_idempotent_and_removes_its_own_tmp_dir(config: Config, tmp_path: Path) -> None:
    driver = Driver(config, bus=EventBus(), out_dir=tmp_path / "out")
    tmp_dir = driver.tmp_dir
    assert tmp_dir.is_dir() and (tmp_dir / "vm-state-db").is_dir()
    driver.cleanup()
    driver.cleanup()
    assert not tmp_dir.exists()


def test_two_drivers_of_one_test_never_share_state(config: Config, tmp_path: Path) -> None:
    with Driver(config, bus=EventBus(), out_dir=tmp_path / "a") as first:
        with Driver(config, bus=EventBus(), out_dir=tmp_path / "b") as second:
            assert first.tmp_dir != second.tmp_dir


def test_global_timeout_releases_and_calls_back(driver: Driver) -> None:
    called = threading.Event()
    driver.on_timeout.append(called.set)
    driver.terminate_test()
    assert driver.timed_out and driver.cancel_event.is_set() and called.is_set()


def test_preflight_catches_bad_input(config: Config, tmp_path: Path) -> None:
    missing_script = Config(nodes=config.nodes, vlans=[], script_path=tmp_path / "nope.py")
    with pytest.raises(ConfigError, match="test script not found"):
        preflight(missing_script)
    config.nodes = [NodeConfig("a", str(tmp_path / "missing" / "run-a-vm"))]
    with pytest.raises(ConfigError, match="start script not found"):
        preflight(config)
    config.nodes = [NodeConfig("a", "no-such-program-anywhere --x")]
    with pytest.raises(ConfigError, match="not found on PATH"):
        preflight(config)
    config.nodes = [NodeConfig("a-b", "true"), NodeConfig("a_b", "true")]
    with pytest.raises(ConfigError, match="same Python name"):
        preflight(config)


def test_preflight_wants_vde_switch_for_vlans(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    config.vlans = [1]
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="vde_switch not found"):
        preflight(config)


def test_create_machine_historical_forms_nixos_still_accepts(driver: Driver, start_script: Path) -> None:
    create = driver.test_symbols()["create_machine"]
    events: list[object] = []
    driver.bus.subscribe(events.append)
    # The keyword of the 2021-2025 drivers.
    kept = create(str(start_script), name="kept", keep_vm_state=True)
    assert kept.keep_machine_state and kept.keep_vm_state
    # The legacy dict, with the keys NixOS read from it.
    legacy = create({"startCommand": str(start_script), "name": "old", "keep_vm_state": True, "allow_reboot": True})
    assert legacy.name == "old" and legacy.keep_machine_state and legacy.allow_reboot
    warnings = [e.message for e in events if isinstance(e, LogMessage) and e.level == LogLevel.WARNING]
    assert any("keep_vm_state" in w and "deprecated" in w for w in warnings)
    assert "Using legacy create_machine(), please instantiate the Machine class directly, instead" in warnings


def test_script_log_error_ends_the_test_like_nixos(driver: Driver) -> None:
    log = driver.test_symbols()["log"]
    events: list[object] = []
    driver.bus.subscribe(events.append)
    with pytest.raises(SystemExit) as ended:
        log.error("giving up")
    assert ended.value.code == 1
    # NixOS's attributes argument names the machine.
    log.log("hello", {"machine": "web"})
    with log.nested("block", {"machine": "web"}):
        pass
    messages = [(e.message, e.machine, e.level) for e in events if isinstance(e, LogMessage)]
    assert messages == [("giving up", None, LogLevel.ERROR), ("hello", "web", LogLevel.INFO)]
    assert [e.machine for e in events if isinstance(e, BlockOpened)] == ["web"]
class _LateEvent(threading.Event):
    """A cancel event whose `set()` is slow to happen: it first gives the run
    up to `grace` seconds to end (as a thread descheduled between its check
    and its `set()` would)."""

    def __init__(self, runner_of: list[ScriptRunner], grace: float = 0.5) -> None:
        super().__init__()
        self._runner_of = runner_of
        self._grace = grace

    def set(self) -> None:
        give_up = threading.Event()
        threading.Timer(self._grace, give_up.set).start()
        while self._runner_of[0].is_running and not give_up.is_set():
            give_up.wait(0.005)
        give_up.wait(0.05)  # the run's own clean-up after `is_running` went false
        super().set()


def test_a_cancel_racing_with_the_end_of_a_run_does_not_outlive_it(tmp_path: Path) -> None:
    script = tmp_path / "test.py"
    script.write_text("import time\ntime.sleep(0.2)\n")
    config = Config(nodes=[], vlans=[], script_path=script)
    with Driver(config, bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as driver:
        runner = ScriptRunner(driver, driver.bus)
        runner.load(script.read_text(), str(script))
        driver.cancel_event = _LateEvent([runner])
        run = threading.Thread(target=runner.run)
        run.start()
        while not runner.is_running:
            threading.Event().wait(0.005)
        runner.cancel()
        run.join(10)
        # The run is over: the REPL and checkpoints must not find it cancelled.
        assert not runner.is_running
        assert not driver.cancel_event.is_set()
