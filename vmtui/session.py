"""The driver side of one interactive session: the Driver, the runner, the stepper.

The TUI keeps one Session for its whole life, so the VMs outlive any single
run of the script: a rerun, a restart after an edit, or a REPL line all talk
to the same machines.  Nothing here imports Textual; every blocking method is
meant to be called from a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from driver.checkpoint import Checkpoints
from driver.config import TestConfig
from driver.driver import Driver
from driver.errors import MachineError
from driver.events import EventBus
from driver.machine import Machine
from driver.parallel import run_each
from driver.runner import RunResult, ScriptRunner, Statement
from driver.shell import Shells
from driver.stepper import Evaluation, Stepper


class Session:
    """Owns the machines and the script state; see docs/internals.md."""

    def __init__(self, config: TestConfig, bus: EventBus, *, out_dir: Path, keep_state: bool = False) -> None:
        self.config = config
        self.bus = bus
        self.driver = Driver(config, bus=bus, out_dir=out_dir, keep_state=keep_state)
        self.stepper = Stepper(bus)
        self.runner = ScriptRunner(self.driver, bus, stepper=self.stepper)
        # `debug.breakpoint()` in a script pauses here, in the TUI's stepper.
        # (No global timer: an interactive session lasts as long as the user wants.)
        self.driver.breakpoint_hook = self.stepper.request_break
        # Live iteration: checkpoints of the nodes, shell panes into them.
        self.checkpoints = Checkpoints(lambda: self.driver.machines, log=self.driver.logger.info)
        self.shells = Shells(lambda: self.driver.machines)
        self.checkpoints.restored_listeners.append(
            lambda report: self.shells.after_restore(
                [node.machine for node in report.checkpoint.nodes], report.checkpoint.created
            )
        )
        self._close_lock = threading.Lock()
        self._closed = False

    # -- the script ---------------------------------------------------------

    def load(self) -> list[Statement]:
        """(Re)read the script from disk; raises ScriptSyntaxError, nothing changes then."""
        path = self.config.script_path
        self.runner.load(path.read_text(encoding="utf-8"), str(path))
        return self.runner.statements

    @property
    def source(self) -> str:
        return self.runner.source

    @property
    def is_running(self) -> bool:
        return self.runner.is_running

    def run(self, from_statement: int = 0, until: int | None = None) -> RunResult:
        """Run the loaded script (blocks until it ends; call in a worker thread)."""
        return self.runner.run(from_statement, until)

    def cancel(self) -> None:
        """End the current run, from any thread; the VMs stay up."""
        self.runner.cancel()

    # -- nodes ------------------------------------------------------------------

    def restart_nodes(self, start_commands: Mapping[str, str]) -> None:
        """Restart these nodes with their new start commands and wait for their backdoors.

        The other nodes keep running.  No run may be in flight (stop it
        first).  Checkpoints go: they hold the old VMs' state.  Raises
        `ConfigError` for a missing start script, `MachineError` when a node
        does not come up.
        """
        for checkpoint in list(self.checkpoints.checkpoints):
            self.checkpoints.delete(checkpoint.name)
        machines = [self.driver.restart_machine(name, command) for name, command in start_commands.items()]
        outcomes = run_each(machines, Machine.connect, thread_name=lambda m: f"reconnect-{m.name}")
        failures = {o.item.name: o.error for o in outcomes if o.error is not None}
        if failures:
            details = (f"{name} did not come up: {error}" for name, error in sorted(failures.items()))
            raise MachineError("; ".join(details))

    # -- REPL ---------------------------------------------------------------

    def evaluate(self, source: str) -> Evaluation:
        """Evaluate a REPL line in the paused frame (or the last run's namespace)."""
        return self.stepper.run_repl(source)

    def variables(self) -> dict[str, str]:
        """The script's own names with their reprs (paused frame, or the last run's)."""
        return self.stepper.variables()

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """End the run and every VM and switch; safe to call twice, from any thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.runner.cancel()
        self.shells.close_all(hang_up=False)
        self.driver.cleanup()

