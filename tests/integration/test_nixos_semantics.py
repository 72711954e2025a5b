"""Where a script can tell drivers apart, vmtui behaves as the NixOS driver.

Each test here pins one behaviour of the NixOS driver (2026) on a real tiny
guest: what `except AssertionError` catches, how commands run in the guest,
what a command may be, the type of `full_console_log`, how long a wait with
a slow check keeps trying, and that `start(allow_reboot=True)` holds for
that start only.  One booted node is shared by the module; the reboot test
comes last because it restarts the node.
"""

from __future__ import annotations

import pathlib
import textwrap
import threading
import time
from typing import Iterator

import pytest

from driver.driver import Driver
from driver.events import EventBus, LogLevel, LogMessage
from driver.runner import ScriptRunner
from driver.spec import load_spec

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    base = tmp_path_factory.mktemp("sem")
    (base / "test.py").write_text("start_all()\n")
    (base / "test.toml").write_text('script = "test.py"\n[nodes.machine]\n')
    config = load_spec(base / "test.toml", work_dir=base / "work")
    with Driver(config, bus=EventBus(), out_dir=base / "out", tmp_dir=base / "state") as d:
        d.machines[0].start()
        d.machines[0].connect()
        yield d


def run(driver: Driver, source: str) -> tuple[dict[str, object], list[str]]:
    """Run a script; return its namespace and the ERROR lines it logged."""
    errors: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, LogMessage) and event.level == LogLevel.ERROR:
            errors.append(event.message)

    unsubscribe = driver.bus.subscribe(on_event)
    try:
        runner = ScriptRunner(driver, driver.bus)
        runner.load(textwrap.dedent(source), "/tests/semantics_test.py")
        result = runner.run()
    finally:
        unsubscribe()
    assert result.ok, errors
    assert runner.namespace is not None
    return runner.namespace, errors


def test_except_assertion_error_catches_failed_checks(driver: Driver) -> None:
    namespace, _ = run(
        driver,
        """\
        caught = []
        try:
            machine.succeed("exit 3")
        except AssertionError as error:
            caught.append(("succeed", type(error).__name__, str(error)))
        try:
            machine.wait_until_succeeds("false", timeout=1)
        except AssertionError as error:
            caught.append(("wait", type(error).__name__, str(error)))
        try:
            t.assertEqual(1, 2)
        except AssertionError as error:
            caught.append(("t", type(error).__name__, str(error)))
        """,
    )
    caught = namespace["caught"]
    assert [(what, kind) for what, kind, _ in caught] == [  # type: ignore[misc, union-attr]
        ("succeed", "RequestedAssertionFailed"),
        ("wait", "RequestedAssertionFailed"),
        ("t", "RequestedAssertionFailed"),
    ]
    messages = [message for _, _, message in caught]  # type: ignore[misc, union-attr]
    assert messages[0] == "command `exit 3` failed (exit code 3)"
    assert "action timed out after" in messages[1] and "(timeout=1)" in messages[1]


def test_commands_run_as_bash_c_without_the_helper(driver: Driver) -> None:
    machine = driver.machines[0]
    name, flags, count = machine.succeed('echo "$0"; echo "$-"; echo "$#"').splitlines()
    assert name == "bash" and "c" in flags and count == "0"
    # vmtui's helper functions and variables are none of the command's business.
    listing = "{ declare -F | cut -d' ' -f3; ( set -o posix; set ); } | grep -c '^__vmtui' || true"
    assert machine.succeed(listing) == "0\n"
    assert machine.execute("__vmtui_run 1 '' true")[0] == 127
    # With a guest-side timeout too.
    assert machine.execute('echo "$0 $-"', timeout=30)[1].startswith("bash ")


def test_any_object_is_formatted_into_the_command(driver: Driver) -> None:
    machine = driver.machines[0]
    machine.succeed("printf '#!/bin/sh\\necho from a path\\n' > /tmp/hello.sh; chmod +x /tmp/hello.sh")
    assert machine.succeed(pathlib.Path("/tmp/hello.sh")) == "from a path\n"
    assert machine.execute(pathlib.Path("/tmp/hello.sh")) == (0, "from a path\n")
    # 42 is no command: bash says so (status 127); no TypeError on the host.
    assert machine.execute(42)[0] == 127
    with pytest.raises(AssertionError, match=r"command `42` failed \(exit code 127\)"):
        machine.succeed(42)
    assert machine.fail(42) == ""
    assert machine.wait_until_succeeds(pathlib.Path("/tmp/hello.sh"), timeout=30) == "from a path\n"


def test_full_console_log_is_a_list_of_lines(driver: Driver) -> None:
    machine = driver.machines[0]
    machine.succeed("echo console-marker-line > /dev/ttyS0")
    machine.wait_for_console_text("console-marker-line")
    log = machine.full_console_log
    assert isinstance(log, list) and all(isinstance(line, str) for line in log)
    assert "console-marker-line" in log
    assert machine.get_console_log() == "\n".join(log)


def test_a_slow_check_gets_as_many_attempts_as_nixos_gives(driver: Driver) -> None:
    machine = driver.machines[0]
    machine.succeed("rm -f /tmp/attempts")
    # Each attempt takes 2 s; NixOS makes timeout (3) attempts one second
    # apart, then the last one: 4.  A clock-only wait would stop after 2.
    started = time.monotonic()
    with pytest.raises(AssertionError, match="action timed out"):
        machine.wait_until_succeeds("echo x >> /tmp/attempts; sleep 2; false", timeout=3)
    attempts = int(machine.succeed("wc -l < /tmp/attempts"))
    assert attempts >= 4
    assert time.monotonic() - started >= 3 * 2


def test_allow_reboot_holds_for_one_start_only(driver: Driver) -> None:
    machine = driver.machines[0]
    machine.release()
    machine.start(allow_reboot=True)
    pid = machine.pid
    machine.succeed("touch /tmp/before-reboot")
    machine.execute("reboot", check_return=False)
    machine.wait_until_fails("test -e /tmp/before-reboot", timeout=600)
    assert machine.pid == pid  # the guest rebooted inside the same QEMU
    machine.shutdown()

    # A plain start: -no-reboot again, so a guest reboot ends QEMU and
    # wait_for_shutdown() returns.
    machine.start()
    machine.connect()
    machine.execute("reboot", check_return=False)
    waiter = threading.Thread(target=machine.wait_for_shutdown, daemon=True)
    waiter.start()
    waiter.join(300)
    stuck = waiter.is_alive()
    if stuck:
        machine.release()  # end the wait; the assertion says what went wrong
    assert not stuck, "wait_for_shutdown() did not return: the guest rebooted instead of QEMU exiting"
    assert not machine.booted
