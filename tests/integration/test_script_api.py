"""NixOS-style scripts on a real tiny guest, through Driver + ScriptRunner.

One booted node is shared by the whole module; each test loads a script
into a runner over the same driver, like reruns in the TUI do.
"""

from __future__ import annotations

import queue
import textwrap
import threading
from typing import Iterator

import pytest

from driver.driver import Driver
from driver.events import DebuggerPaused, EventBus, LogLevel, LogMessage, ScriptFinished
from driver.runner import RunResult, ScriptRunner
from driver.spec import load_spec
from driver.stepper import Stepper

pytestmark = pytest.mark.vm

# Safety net against a hung test, not a timing assertion.
EVENT_WAIT = 600


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    base = tmp_path_factory.mktemp("api")
    (base / "test.py").write_text("start_all()\n")
    (base / "motd").write_text("hello from the host\n")
    (base / "test.toml").write_text(
        'script = "test.py"\n'
        "[nodes.machine]\n"
        "[nodes.machine.files]\n"
        '"/etc/motd" = "motd"\n'
    )
    config = load_spec(base / "test.toml", work_dir=base / "work")
    bus = EventBus()
    with Driver(config, bus=bus, out_dir=base / "out", tmp_dir=base / "state") as d:
        d.machines[0].start()
        d.machines[0].connect()
        yield d


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.events: list[object] = []
        self.queue: queue.Queue[object] = queue.Queue()
        self._unsubscribe = bus.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, (DebuggerPaused, ScriptFinished)):
            self.queue.put(event)

    def errors(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, LogMessage) and e.level == LogLevel.ERROR]

    def close(self) -> None:
        self._unsubscribe()


@pytest.fixture
def recorder(driver: Driver) -> Iterator[Recorder]:
    rec = Recorder(driver.bus)
    yield rec
    rec.close()


def run_script(driver: Driver, source: str, stepper: Stepper | None = None) -> tuple[ScriptRunner, RunResult]:
    runner = ScriptRunner(driver, driver.bus, stepper)
    runner.load(textwrap.dedent(source), "/tests/api_test.py")
    return runner, runner.run()


def test_a_nixos_style_script_passes(driver: Driver, recorder: Recorder) -> None:
    runner, result = run_script(
        driver,
        """\
        start_all()

        with subtest("the host's file is in the guest"):
            t.assertEqual(machine.succeed("cat /etc/motd"), "hello from the host\\n")
            t.assertIs(machine, machines[0])
            t.assertEqual(vlan1.nr, 1)

        with subtest("retry polls until the guest is ready"):
            machine.succeed("rm -f /tmp/count")
            seen = []

            def third_time_lucky(last_try):
                count = int(machine.succeed("echo x >> /tmp/count; wc -l < /tmp/count"))
                seen.append((count, last_try))
                return count >= 3

            retry(third_time_lucky, timeout_seconds=120)
            t.assertEqual([c for c, _ in seen], [1, 2, 3])

        @polling_condition(seconds_interval=0)
        def init_is_alive():
            "init is alive"
            machine.succeed("kill -0 1")

        with subtest("a polling condition holds while commands run"):
            with init_is_alive:
                machine.succeed("true")
                machine.succeed("true")

        with subtest("wait_until_succeeds and fail"):
            machine.succeed("(sleep 2; touch /tmp/ready) >/dev/null 2>&1 &")
            machine.wait_until_succeeds("test -e /tmp/ready", timeout=120)
            machine.fail("test -e /tmp/never")
        """,
    )
    assert result.ok, recorder.errors()
    assert runner.namespace is not None
    seen = runner.namespace["seen"]
    assert [last for _, last in seen] == [False, False, False]
    checks = [e for e in recorder.events if isinstance(e, LogMessage) and "Polling condition succeeded" in e.message]
    assert len(checks) >= 2


def test_a_failing_polling_condition_fails_the_next_command(driver: Driver, recorder: Recorder) -> None:
    _, result = run_script(
        driver,
        """\
        def marker_exists():
            return machine.execute("test -e /tmp/marker")[0] == 0

        machine.succeed("touch /tmp/marker")
        condition = polling_condition(marker_exists, seconds_interval=0, description="the marker exists")
        with condition:
            machine.succeed("rm /tmp/marker")
            machine.succeed("true")
        """,
    )
    assert not result.ok
    assert result.error == "PollingConditionError: Polling condition failed: the marker exists"
    assert result.error_line == 8


def test_t_assertion_failure_points_at_the_script_line(driver: Driver, recorder: Recorder) -> None:
    _, result = run_script(
        driver,
        """\
        with subtest("arithmetic in the guest"):
            answer = machine.succeed("echo $((6 * 7))").strip()
            t.assertEqual(answer, "41")
        """,
    )
    assert not result.ok and result.error_line == 3
    assert result.error is not None and result.error.startswith("RequestedAssertionFailed: '42' != '41'")
    errors = recorder.errors()
    assert 'Test "arithmetic in the guest" failed with error: "\'42\' != \'41\'' in errors[0]
    assert '    t.assertEqual(answer, "41")' in errors


def test_stepper_pauses_in_a_subtest_and_evaluates_against_the_vm(driver: Driver, recorder: Recorder) -> None:
    stepper = Stepper(driver.bus)
    stepper.set_breakpoint(3)
    runner = ScriptRunner(driver, driver.bus, stepper)
    runner.load(
        'with subtest("paused here"):\n'
        '    before = machine.succeed("hostname").strip()\n'
        '    after = "never"\n',
        "/tests/api_test.py",
    )
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run()), daemon=True)
    thread.start()
    paused = recorder.queue.get(timeout=EVENT_WAIT)
    assert isinstance(paused, DebuggerPaused) and (paused.line, paused.reason) == (3, "breakpoint")
    assert stepper.evaluate("before") == "'machine'"
    assert stepper.evaluate('machine.succeed("echo from the repl")') == "'from the repl\\n'"
    assert stepper.variables() == {"before": "'machine'"}
    stepper.stop()
    thread.join(EVENT_WAIT)
    assert results[0].cancelled
    # Stopping a run leaves the VMs up.
    assert driver.machines[0].is_up()


def test_stop_ends_a_blocking_wait_on_the_guest(driver: Driver, recorder: Recorder) -> None:
    stepper = Stepper(driver.bus)
    runner = ScriptRunner(driver, driver.bus, stepper)
    runner.load('machine.wait_until_succeeds("test -e /tmp/never-there", timeout=600)\n', "/tests/api_test.py")
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run()), daemon=True)
    thread.start()
    # Wait until the wait has polled the guest at least once, then stop.
    while not any(isinstance(e, LogMessage) or type(e).__name__ == "WaitProgress" for e in recorder.events):
        if not thread.is_alive():
            break
        threading.Event().wait(0.1)
    runner.cancel()
    thread.join(EVENT_WAIT)
    assert not thread.is_alive()
    assert results[0].cancelled
    assert driver.machines[0].succeed("echo still here") == "still here\n"


def test_rerun_from_a_statement_reuses_the_namespace(driver: Driver, recorder: Recorder) -> None:
    runner, result = run_script(driver, 'name = machine.succeed("hostname").strip()\ngreeting = "hi " + name\n')
    assert result.ok
    runner.load('name = machine.succeed("hostname").strip()\ngreeting = "hello " + name\n', "/tests/api_test.py")
    assert runner.run(from_statement=1).ok
    assert runner.namespace is not None and runner.namespace["greeting"] == "hello machine"
