"""The Machine API against real systemd units, on the systemd guest.

One pair of nodes, booted once for the whole module from the PostgreSQL
example (`vmtui/examples/postgres.toml`) through the real pipeline (spec ->
systemd flavour -> Driver): `server` runs PostgreSQL 15, `client` has psql.
Tests that change unit states put them back.

Boot to the backdoor takes about half a minute under TCG (more when the host
is busy), PostgreSQL a quarter of a minute more: never boot per test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driver import processes
from driver.checkpoint import Checkpoints
from driver.driver import Driver
from driver.errors import RequestedAssertionFailed, ScriptCancelled
from driver.events import ConsoleOutput, Event, EventBus
from driver.guest.systemd import TEST_USER
from driver.machine import Machine
from driver.runner import ScriptRunner
from driver.spec import load_spec

# Building an image (first run only) and booting two TCG guests on a busy
# host can take many minutes: the per-test limit covers the shared fixture.
pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(1800)]

EXAMPLES = Path(__file__).resolve().parents[2] / "vmtui" / "examples"
SPEC = EXAMPLES / "postgres.toml"
POSTGRES_UNIT = "postgresql@15-main.service"


@dataclass
class SystemdPair:
    """The example's nodes, booted through the real pipeline: `load_spec`
    (which calls the systemd flavour's builder), then the `Driver`."""

    tmp_dir: Path
    bus: EventBus = field(default_factory=EventBus)
    events: list[Event] = field(default_factory=list)
    driver: Driver | None = None

    def boot(self, spec_path: Path) -> None:
        self.bus.subscribe(self.events.append)
        self.bus.subscribe(self._log_console)
        config = load_spec(spec_path, work_dir=self.tmp_dir / "spec")
        self.driver = Driver(config, bus=self.bus, out_dir=self.tmp_dir / "out", tmp_dir=self.tmp_dir / "run")
        self.driver.start_all()
        # Connecting waits for each backdoor; both guests boot meanwhile.
        for machine in self.driver.machines:
            machine.connect()

    def _log_console(self, event: Event) -> None:
        """Each guest's console in <tmp>/console-<name>.log, to read after a failure."""
        if isinstance(event, ConsoleOutput):
            with open(self.tmp_dir / f"console-{event.machine}.log", "a") as log:
                log.writelines(f"{line}\n" for line in event.lines)

    @property
    def machines(self) -> dict[str, Machine]:
        assert self.driver is not None
        return {machine.name: machine for machine in self.driver.machines}

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]

    def close(self) -> None:
        if self.driver is not None:
            self.driver.cleanup()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdPair]:
    network = SystemdPair(tmp_path_factory.mktemp("sysd", numbered=True))
    try:
        network.boot(SPEC)
        yield network
    finally:
        network.close()
        leftovers = [p.pid for p in processes.registry.live() if p.poll() is None]
        assert not leftovers, f"processes left running: {leftovers}"


@contextmanager
def unit_file(machine: Machine, name: str, text: str, user: str | None = None) -> Iterator[None]:
    """Install a unit file for the block's duration (system or user manager)."""
    if user is None:
        directory = "/etc/systemd/system"
    else:
        directory = f"/home/{user}/.config/systemd/user"
    path = f"{directory}/{name}"
    machine.succeed(f"mkdir -p {directory} && cat > {path} <<'EOF'\n{text}EOF")
    if user is not None:
        machine.succeed(f"chown -R {user}: /home/{user}/.config")
    machine.systemctl("daemon-reload", user)
    try:
        yield
    finally:
        machine.systemctl(f"stop {name}", user)
        machine.systemctl(f"reset-failed {name}", user)
        machine.succeed(f"rm -f {path}")
        machine.systemctl("daemon-reload", user)


# -- the instrumentation ---------------------------------------------------------


def test_nodes_are_instrumented_like_nixos_nodes(pair: SystemdPair) -> None:
    server, client = pair["server"], pair["client"]
    assert server.succeed("hostname") == "server\n"
    assert client.succeed("hostname") == "client\n"
    hosts = client.succeed("cat /etc/hosts")
    assert "192.168.1.1 client" in hosts and "192.168.1.2 server" in hosts
    assert "inet 192.168.1.2/24" in server.succeed("ip -4 address show eth1")
    client.succeed("ping -c 1 -W 30 server")
    server.require_unit_state("backdoor.service")
    # No getty may sit on the consoles the driver uses.
    for getty in ("serial-getty@ttyS0.service", "serial-getty@hvc0.service", "getty@tty1.service"):
        assert server.get_unit_property(getty, "LoadState") == "masked"
    # The per-node files were in place before PostgreSQL started.
    assert "listen_addresses = '*'" in server.succeed("cat /etc/postgresql/15/main/conf.d/vmtui.conf")


def test_journal_reaches_the_console(pair: SystemdPair) -> None:
    server = pair["server"]
    server.succeed("logger -t vmtui-probe journal-to-console-7f3a")
    server.wait_for_console_text("journal-to-console-7f3a", timeout=300)


def test_shared_directory_round_trip(pair: SystemdPair, tmp_path: Path) -> None:
    client = pair["client"]
    source = tmp_path / "greeting.txt"
    source.write_text("hello guest\n")
    client.copy_from_host(str(source), "/root/greeting.txt")
    assert client.succeed("cat /root/greeting.txt") == "hello guest\n"
    client.succeed("echo hello host > /root/reply.txt")
    client.copy_from_machine("/root/reply.txt")
    assert (client.out_dir / "reply.txt").read_text() == "hello host\n"


# -- units -------------------------------------------------------------------------------


def test_wait_for_unit_and_unit_info(pair: SystemdPair) -> None:
    server = pair["server"]
    server.wait_for_unit(POSTGRES_UNIT, timeout=600)
    info = server.get_unit_info(POSTGRES_UNIT)
    assert info["ActiveState"] == "active"
    assert info["Id"] == POSTGRES_UNIT
    assert server.get_unit_property(POSTGRES_UNIT, "SubState") == "running"
    server.require_unit_state(POSTGRES_UNIT, "active")
    with pytest.raises(RequestedAssertionFailed, match="to to be in state 'inactive'"):
        server.require_unit_state(POSTGRES_UNIT, "inactive")
    status, output = server.systemctl(f"is-active {POSTGRES_UNIT}")
    assert (status, output) == (0, "active\n")


def test_stop_job_and_start_job(pair: SystemdPair) -> None:
    server = pair["server"]
    server.wait_for_unit(POSTGRES_UNIT, timeout=600)
    try:
        status, _ = server.stop_job(POSTGRES_UNIT)
        assert status == 0
        server.require_unit_state(POSTGRES_UNIT, "inactive")
        server.wait_for_closed_port(5432, timeout=300)
    finally:
        status, _ = server.start_job(POSTGRES_UNIT)
    assert status == 0
    server.wait_for_unit(POSTGRES_UNIT, timeout=600)
    server.wait_for_open_port(5432, timeout=300)


FAILING_UNIT = """\
[Unit]
Description=a unit that fails a moment after it starts

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'sleep 2; echo giving up; exit 3'
"""


def test_wait_for_unit_fails_fast_on_a_failed_unit(pair: SystemdPair) -> None:
    server = pair["server"]
    with unit_file(server, "doomed.service", FAILING_UNIT):
        server.systemctl("start --no-block doomed.service")
        # The timeout is far longer than the test may take: the wait must end
        # because the unit failed, not because time ran out.
        with pytest.raises(RequestedAssertionFailed, match='unit "doomed.service" reached state "failed"'):
            server.wait_for_unit("doomed.service", timeout=3600)
        assert server.get_unit_property("doomed.service", "Result") == "exit-code"


def test_wait_for_unit_fails_fast_on_an_inactive_unit_without_jobs(pair: SystemdPair) -> None:
    server = pair["server"]
    with unit_file(server, "idle.service", "[Service]\nExecStart=/bin/sleep infinity\n"):
        with pytest.raises(RequestedAssertionFailed, match="inactive and there are no pending jobs"):
            server.wait_for_unit("idle.service", timeout=3600)


def test_get_unit_info_raises_when_systemctl_fails(pair: SystemdPair) -> None:
    server = pair["server"]
    # `systemctl show` succeeds even for unknown units; a missing user fails.
    assert server.get_unit_info("no-such-unit.service")["LoadState"] == "not-found"
    with pytest.raises(RequestedAssertionFailed, match='retrieving systemctl info .* under user "nosuchuser"'):
        server.get_unit_info("postgresql.service", user="nosuchuser")


USER_UNIT = """\
[Unit]
Description=a user service of the test user

[Service]
ExecStart=/bin/sleep infinity
"""


def test_user_manager_units(pair: SystemdPair) -> None:
    client = pair["client"]
    # The test user lingers: its `systemd --user` runs from boot, no login needed.
    client.wait_for_unit(f"user@{client.succeed(f'id -u {TEST_USER}').strip()}.service", timeout=600)
    status, output = client.systemctl("is-system-running --wait", user=TEST_USER)
    assert output.strip() in {"running", "degraded"}, (status, output)
    with unit_file(client, "napper.service", USER_UNIT, user=TEST_USER):
        status, _ = client.start_job("napper.service", user=TEST_USER)
        assert status == 0
        client.wait_for_unit("napper.service", user=TEST_USER, timeout=600)
        info = client.get_unit_info("napper.service", user=TEST_USER)
        assert info["ActiveState"] == "active"
        # It runs as the user, under the user's manager.
        assert client.succeed(f"ps -o user= -p {info['MainPID']}").strip() == TEST_USER
        status, _ = client.stop_job("napper.service", user=TEST_USER)
        assert status == 0
        assert client.get_unit_property("napper.service", "ActiveState", user=TEST_USER) == "inactive"


# -- the example, end to end ---------------------------------------------------------------


def test_a_cancelled_command_is_killed_in_the_guest(pair: SystemdPair) -> None:
    assert pair.driver is not None
    server, cancel = pair["server"], pair.driver.cancel_event
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        with pytest.raises(ScriptCancelled):
            server.succeed("sleep 300 | cat")
    finally:
        timer.join()
        cancel.clear()
    started = time.monotonic()
    assert server.succeed("echo free") == "free\n"  # not behind the 300 s command
    assert time.monotonic() - started < 20
    server.succeed("! pgrep -x sleep")


def test_postgres_example_script_passes(pair: SystemdPair) -> None:
    assert pair.driver is not None
    runner = ScriptRunner(pair.driver, pair.bus)
    script = EXAMPLES / "postgres.py"
    runner.load(script.read_text(), str(script))
    result = runner.run()
    assert result.ok, f"{result.error} (line {result.error_line})"
    # A rerun against the running VMs works too (the SQL is reloadable).
    result = runner.run()
    assert result.ok, f"{result.error} (line {result.error_line})"


def test_checkpoint_restores_units_and_files(pair: SystemdPair) -> None:
    """A checkpoint works on this guest: the VM state goes to the qcow2 root
    overlay, and the 9p shares (node data, shared, xchg) are unmounted around
    the save and mounted again."""
    server = pair["server"]
    server.wait_for_unit(POSTGRES_UNIT, timeout=600)
    checkpoints = Checkpoints(lambda: list(pair.machines.values()))
    assert checkpoints.why_not(server) is None
    checkpoint = checkpoints.save("before-damage")
    try:
        server.succeed("echo scribbled > /root/after-checkpoint")
        server.stop_job(POSTGRES_UNIT)
        server.require_unit_state(POSTGRES_UNIT, "inactive")
        checkpoints.restore(checkpoint.name)
        server.fail("test -e /root/after-checkpoint")
        server.require_unit_state(POSTGRES_UNIT, "active")
        assert "vmtui-node on /run/vmtui/node type 9p" in server.succeed("mount")
        pair["client"].wait_for_open_port(5432, "server", timeout=300)
    finally:
        checkpoints.delete(checkpoint.name)
        server.execute(f"systemctl start {POSTGRES_UNIT}", timeout=300)
