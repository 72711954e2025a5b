"""`Driver`: the VLANs and machines of one test, and the script's namespace.

It plays the part of the NixOS driver's `Driver` class: it starts one
`vde_switch` per VLAN, builds one `Machine` per node, and offers
`test_symbols()`, the globals a NixOS test script expects (reference §2.2).
It does not run the script itself: `driver.runner.ScriptRunner` does, one
statement at a time, so a front end can follow and step through it.

Cleanup (`cleanup()`, or leaving the `with` block) releases every machine
and switch, on every path; it is idempotent and safe from any thread.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import tempfile
import threading
import unittest
from pathlib import Path
from typing import Any, Callable, cast

from driver import duration, polling, scratch, script_context
from driver.config import TestConfig
from driver.duration import Duration, optional_seconds
from driver.errors import ConfigError, MachineError, RequestedAssertionFailed, ScriptCancelled
from driver.events import EventBus
from driver.logger import Logger, ScriptLogger
from driver.machine import Machine, machine_name_from_start_command
from driver.machine_alias import SingleNodeAlias, alias_warning
from driver.parallel import run_each
from driver.runner import pseudo_filename, register_source
from driver.scriptapi import script_modules
from driver.vlan import VLan

_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# The globals every script sees besides nodes and VLANs (for the banner and
# for telling a script's own names from injected ones before machines exist).
BASE_SYMBOLS = (
    "start_all",
    "join_all",
    "test_script",
    "run_tests",
    "machines",
    "machines_qemu",
    "machines_nspawn",
    "vlans",
    "driver",
    "log",
    "os",
    "create_machine",
    "subtest",
    "retry",
    "polling_condition",
    "serial_stdout_on",
    "serial_stdout_off",
    "t",
    "debug",
    "dump_machine_ssh",
    "Machine",
    "QemuMachine",
    "BaseMachine",
)


def pythonize_name(name: str) -> str:
    """A node name as a Python identifier, the NixOS way (`my-node` -> `my_node`)."""
    return re.sub(r"^[^A-Za-z_]|[^A-Za-z0-9_]", "_", name)


def expected_symbol_names(config: TestConfig) -> set[str]:
    """The names `test_symbols()` will define, known before any VM exists."""
    names = set(BASE_SYMBOLS)
    names.update(pythonize_name(node.name) for node in config.nodes)
    if len(config.nodes) == 1:
        names.add("machine")
    names.update(f"vlan{nr}" for nr in config.vlans)
    return names


def _start_program(start_command: str) -> str | None:
    """The program a start command runs (after `VAR=value` prefixes)."""
    try:
        words = shlex.split(start_command)
    except ValueError:
        return None
    for word in words:
        if not _ENV_ASSIGNMENT.match(word):
            return word
    return None


def preflight(config: TestConfig) -> None:
    """Check, before anything starts, what would otherwise fail late.

    Raises `ConfigError` (one line each) for a missing test script, a start
    command whose program does not exist, a missing `vde_switch`, or two
    nodes with the same Python name.
    """
    if not config.script_path.is_file():
        raise ConfigError(f"test script not found: {config.script_path}")
    seen: dict[str, str] = {}
    for node in config.nodes:
        python_name = pythonize_name(node.name)
        if python_name in seen:
            raise ConfigError(
                f"nodes {seen[python_name]!r} and {node.name!r} have the same Python name {python_name!r}"
            )
        seen[python_name] = node.name
        check_start_command(node.name, node.start_command)
    if config.vlans and shutil.which("vde_switch") is None:
        raise ConfigError("vde_switch not found on PATH (it comes with vde2); VLANs need it")


def check_start_command(node: str, start_command: str) -> None:
    """Raise ConfigError unless the program `start_command` runs exists and is executable."""
    program = _start_program(start_command)
    if program is None:
        raise ConfigError(f"node {node}: empty or malformed start command {start_command!r}")
    if "/" in program:
        if not os.access(program, os.X_OK) or not Path(program).is_file():
            raise ConfigError(f"node {node}: start script not found or not executable: {program}")
    elif shutil.which(program) is None:
        raise ConfigError(f"node {node}: {program} not found on PATH")


def default_tmp_base() -> Path:
    """Where NixOS keeps VM state: `$XDG_RUNTIME_DIR`, else the temp dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) if runtime else Path(tempfile.gettempdir())


class _Assertions(unittest.TestCase):
    """`t` in the script: unittest's asserts, failing the test tidily."""

    failureException = RequestedAssertionFailed
    maxDiff = 4000

    def runTest(self) -> None:  # a TestCase needs a test method to exist
        pass


class _Debug:
    """`debug` in the script: `debug.breakpoint()` pauses in the stepper."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def breakpoint(self, host: str = "127.0.0.1", port: int = 4444) -> None:
        hook = self._driver.breakpoint_hook
        if hook is None:
            self._driver.logger.warning(
                "debug.breakpoint() ignored: no debugger is attached (open the test in the TUI to step)"
            )
            return
        hook()


class Driver:
    """The machines and VLANs of one test; see docs/internals.md."""

    def __init__(
        self,
        config: TestConfig,
        *,
        bus: EventBus,
        out_dir: Path | str,
        keep_state: bool = False,
        tmp_dir: Path | str | None = None,
        global_timeout: Duration | None = None,
    ) -> None:
        preflight(config)
        self.config = config
        self.bus = bus
        self.logger = Logger(bus)
        self.out_dir = Path(out_dir)
        self.keep_state = keep_state
        self.global_timeout = optional_seconds(global_timeout if global_timeout is not None else config.global_timeout)
        self.cancel_event = threading.Event()
        # Set by a stepper-driven front end: what `debug.breakpoint()` does.
        self.breakpoint_hook: Callable[[], None] | None = None
        # Called (from the timer thread) when the global timeout fires.
        self.on_timeout: list[Callable[[], None]] = []
        self.timed_out = False
        self.machines: list[Machine] = []
        self.vlans: list[VLan] = []
        self._timer: threading.Timer | None = None
        self._cleanup_lock = threading.Lock()
        self._cleaned_up = False
        self._banner_logged = False
        self._assertions = _Assertions()
        self._debug = _Debug(self)

        if tmp_dir is not None:
            self.tmp_dir = Path(tmp_dir)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self._owns_tmp_dir = False
        else:
            self.tmp_dir, self._owns_tmp_dir = self._make_tmp_dir()
        self.shared_dir = self.tmp_dir / "shared-xchg"
        polling.set_cancel_event(self.cancel_event)
        duration.set_deprecation_sink(self.logger.warning)
        # Machines a script builds itself (NixOS style) join this test.
        self._machine_defaults = script_context.MachineDefaults(
            bus=bus,
            logger=self.logger,
            tmp_dir=self.tmp_dir,
            out_dir=self.out_dir,
            shared_dir=self.shared_dir,
            cancel_event=self.cancel_event,
            adopt=self.machines.append,
        )
        script_context.install(self._machine_defaults)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for nr in sorted(set(config.vlans)):
                self.vlans.append(VLan(nr, self.tmp_dir))
            for node in sorted(config.nodes, key=lambda n: n.name):
                self.machines.append(self._new_machine(node.name, node.start_command, keep_state))
        except BaseException:
            self.cleanup()
            raise

    def _make_tmp_dir(self) -> tuple[Path, bool]:
        base = default_tmp_base()
        if self.keep_state:
            # A stable place, so the next run with -K finds the disks again.
            path = base / f"vmtui-{os.getuid()}-{self.config.name}"
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return path, False
        # A fresh directory per run: two runs of the same test (or two tests
        # with a node called "server") must never share sockets or disks.
        return scratch.make_temp_dir("vmtui-", base), True

    def _new_machine(self, name: str, start_command: str, keep_state: bool) -> Machine:
        return Machine(
            name,
            start_command,
            bus=self.bus,
            logger=self.logger,
            tmp_dir=self.tmp_dir,
            out_dir=self.out_dir,
            shared_dir=self.shared_dir,
            keep_state=keep_state,
            cancel_event=self.cancel_event,
        )

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- what the script sees ----------------------------------------------------------------

    @property
    def node_names(self) -> list[str]:
        return [pythonize_name(m.name) for m in self.machines]

    def test_symbols(self) -> dict[str, Any]:
        """A fresh dict of the NixOS globals (reference §2.2)."""
        machines = list(self.machines)
        symbols: dict[str, Any] = {
            "start_all": self.start_all,
            "join_all": self.join_all,
            "test_script": self.test_script,
            "run_tests": self.run_tests,
            "machines": machines,
            "machines_qemu": list(machines),
            "machines_nspawn": [],
            "vlans": list(self.vlans),
            "driver": self,
            "log": ScriptLogger(self.logger),
            "os": os,
            "create_machine": self.create_machine,
            "subtest": self.subtest,
            "retry": polling.retry,
            "polling_condition": self.polling_condition,
            "serial_stdout_on": self.serial_stdout_on,
            "serial_stdout_off": self.serial_stdout_off,
            "t": self._assertions,
            "debug": self._debug,
            "dump_machine_ssh": self.dump_machine_ssh,
            "Machine": Machine,
            "QemuMachine": Machine,
            "BaseMachine": Machine,
        }
        node_symbols = {pythonize_name(m.name): m for m in machines}
        if len(machines) == 1:
            node_symbols["machine"] = self._single_node_alias(machines[0])
        vlan_symbols = {f"vlan{v.nr}": v for v in self.vlans}
        symbols.update(node_symbols)
        symbols.update(vlan_symbols)
        if not self._banner_logged:
            self._banner_logged = True
            self.logger.info(
                "additionally exposed symbols:\n    "
                + ", ".join(node_symbols)
                + ",\n    "
                + ", ".join(vlan_symbols)
                + ",\n    "
                + ", ".join(BASE_SYMBOLS)
            )
        return symbols

    def _single_node_alias(self, node: Machine) -> Machine:
        if pythonize_name(node.name) == "machine":
            return node
        warning = alias_warning(node.name)
        # Typed as the node: it forwards everything to it (see machine_alias.py).
        return cast(Machine, SingleNodeAlias(node, lambda: self.logger.warning(warning)))

    def subtest(self, name: str) -> Any:
        return self.logger.subtest(name)

    def polling_condition(
        self,
        fun: Callable[[], Any] | None = None,
        *,
        seconds_interval: Duration | None = None,
        description: str | None = None,
        interval: Duration | None = None,
    ) -> Any:
        return polling.polling_condition(
            fun, seconds_interval=seconds_interval, description=description, logger=self.logger, interval=interval
        )

    def serial_stdout_on(self) -> None:
        self.logger.serial_stdout = True

    def serial_stdout_off(self) -> None:
        self.logger.serial_stdout = False

    def dump_machine_ssh(self) -> None:
        self.logger.info("vmtui has no SSH backdoor: open a shell pane on the node instead")

    def start_all(self) -> None:
        """Start every machine, in parallel threads (as current NixOS does)."""
        with self.logger.nested("start all VMs"):
            parent = self.logger.current_block_id()

            def start(machine: Machine) -> None:
                with self.logger.adopt_parent(parent):
                    machine.start()

            outcomes = run_each(self.machines, start, thread_name=lambda m: f"start-{m.name}")
            failures = {o.item.name: o.error for o in outcomes if o.error is not None}
            if any(isinstance(exc, ScriptCancelled) for exc in failures.values()):
                raise ScriptCancelled("the run was cancelled while starting the VMs")
            if failures:
                details = "; ".join(
                    f"{name}: {_without_prefix(str(exc), name)}" for name, exc in sorted(failures.items())
                )
                raise MachineError(f"could not start {details}")

    def join_all(self) -> None:
        with self.logger.nested("wait for all VMs to finish"):
            for machine in self.machines:
                machine.wait_for_shutdown()
            self.cancel_global_timer()

    def create_machine(
        self,
        start_command: str | dict[str, Any],
        *,
        name: str | None = None,
        keep_machine_state: bool = False,
        keep_vm_state: bool | None = None,
    ) -> Machine:
        """A machine from any NixOS-style start command.

        Also the historical forms NixOS scripts still use: `keep_vm_state=`
        (the older name of `keep_machine_state`) and the legacy dict
        (`startCommand`, `name`, `keep_vm_state`, `allow_reboot`), each with
        a deprecation line in the log.
        """
        allow_reboot = False
        if keep_vm_state is not None:
            self.logger.warning(
                "create_machine(): 'keep_vm_state' is deprecated, use 'keep_machine_state'"
            )
            keep_machine_state = keep_machine_state or keep_vm_state
        if isinstance(start_command, dict):
            legacy = start_command
            self.logger.warning(
                "Using legacy create_machine(), please instantiate the Machine class directly, instead"
            )
            if not legacy.get("startCommand"):
                raise MachineError(
                    "create_machine: the legacy dict needs a 'startCommand' "
                    "(vmtui does not build a QEMU command from 'qemuFlags'/'hda')"
                )
            start_command = str(legacy["startCommand"])
            name = legacy.get("name", name)
            keep_machine_state = bool(
                legacy.get("keep_vm_state", legacy.get("keepVmState", keep_machine_state))
            )
            allow_reboot = bool(legacy.get("allow_reboot", legacy.get("allowReboot", False)))
        machine_name = name or machine_name_from_start_command(start_command)
        machine = self._new_machine(machine_name, start_command, keep_machine_state)
        machine.allow_reboot = allow_reboot
        self.machines.append(machine)
        return machine

    def machine_named(self, name: str) -> Machine:
        """The machine of node `name` (its raw or its Python name); ConfigError if none."""
        for machine in self.machines:
            if name in (machine.name, pythonize_name(machine.name)):
                return machine
        raise ConfigError(f"no node named {name!r} (nodes: {', '.join(m.name for m in self.machines)})")

    def restart_machine(self, name: str, start_command: str | None = None, *, start: bool = True) -> Machine:
        """End node `name`'s QEMU and boot it again, with `start_command` if given.

        For a node whose configuration changed (a rebuilt test gave it a new
        start script): the other nodes keep running, and the script keeps
        its `Machine` object (names bound in the namespace stay valid).  The
        node's state directory (its disk overlays, sockets) is discarded
        unless state is kept, since it belongs to the old configuration.
        `start=False` only swaps the command.  Returns once QEMU runs; the
        guest's backdoor is `machine.connect()`'s business.
        """
        machine = self.machine_named(name)
        command = start_command if start_command is not None else machine.start_command
        check_start_command(machine.name, command)
        why = " with a new start command" if command != machine.start_command else ""
        with self.logger.nested(f"restarting {machine.name}{why}", machine=machine.name):
            machine.release()
            machine.start_command = command
            # Copy on write: a front end's thread may be reading the nodes
            # (or hold the old list); it sees the old list or the new one,
            # never a node changing under it.
            self.config.nodes = [
                dataclasses.replace(node, start_command=command) if node.name == machine.name else node
                for node in self.config.nodes
            ]
            machine.reset_state_dir()
            if start:
                machine.start()
        return machine

    def test_script(self) -> None:
        """Run the whole script once more in a fresh namespace (for the REPL)."""
        path = self.config.script_path
        source = path.read_text(encoding="utf-8")
        code_filename = pseudo_filename(str(path))
        register_source(code_filename, source)
        with script_modules():
            exec(compile(source, code_filename, "exec"), self.test_symbols())

    def run_tests(self) -> None:
        """The NixOS entry: global timer, the whole script, then `sync`."""
        self.start_global_timer()
        self.test_script()
        self.sync_machines()

    def sync_machines(self) -> None:
        """Flush the guests' disks, as NixOS does after a successful run."""
        for machine in self.machines:
            if machine.is_up():
                try:
                    machine.execute("sync")
                except (MachineError, RequestedAssertionFailed) as exc:
                    self.logger.warning(f"sync failed: {exc}", machine=machine.name)

    # -- the global timeout -------------------------------------------------------------------

    def start_global_timer(self) -> None:
        if self.global_timeout is None or self._timer is not None or self._cleaned_up:
            return
        self._timer = threading.Timer(self.global_timeout, self.terminate_test)
        self._timer.daemon = True
        self._timer.start()

    def cancel_global_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def terminate_test(self) -> None:
        """The global timeout fired: stop the run and end every VM (NixOS)."""
        with self.logger.nested("timeout reached; test terminating..."):
            self.timed_out = True
            self.cancel_event.set()
            for callback in list(self.on_timeout):
                try:
                    callback()
                except Exception as exc:  # the VMs must end regardless
                    self.logger.warning(f"timeout handler failed: {exc}")
            self.release_machines()

    # -- cleanup ------------------------------------------------------------------------------

    def release_machines(self) -> None:
        for machine in self.machines:
            try:
                machine.release()
            except Exception as exc:  # keep going: every machine must end
                self.logger.warning(f"release failed: {exc}", machine=machine.name)

    def cleanup(self) -> None:
        """End every machine and switch.  Idempotent, callable from any thread."""
        with self._cleanup_lock:
            if self._cleaned_up:
                return
            self._cleaned_up = True
        self.cancel_global_timer()
        with self.logger.nested("cleanup"):
            self.release_machines()
            for vlan in self.vlans:
                try:
                    vlan.stop()
                except Exception as exc:
                    self.logger.warning(f"stopping vlan {vlan.nr} failed: {exc}")
        polling.clear_active_conditions()
        if polling.current_cancel_event() is self.cancel_event:
            polling.set_cancel_event(None)
            duration.set_deprecation_sink(None)
        script_context.uninstall(self._machine_defaults)
        if self._owns_tmp_dir:
            scratch.remove(self.tmp_dir)


def _without_prefix(message: str, name: str) -> str:
    """A machine's error text without its leading "<name>: " (the caller names it once)."""
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
