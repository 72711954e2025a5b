"""`vmtui run --headless` as a user runs it: a real process, real guests.

Each run gets its own TMPDIR, so the test can check afterwards that no QEMU
or vde_switch of that run is left behind, and that the run removed every
file it put there (its VM state directory), whatever way it ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A safety net for a hung run, not a timing assertion.
RUN_LIMIT = 900


def run_env(run_tmp: Path) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(run_tmp)}
    env.pop("XDG_RUNTIME_DIR", None)
    for name in ("startScripts", "vmNames", "vmStartScripts", "testScript", "vlans", "globalTimeout"):
        env.pop(name, None)
    return env


def vmtui(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Short: the machines' UNIX socket paths live under it.
    run_tmp = Path(tempfile.mkdtemp(prefix="vh-"))
    env = run_env(run_tmp)
    try:
        return subprocess.run(
            [sys.executable, "-m", "vmtui", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT,
        )
    finally:
        assert_nothing_left(run_tmp)
        shutil.rmtree(run_tmp, ignore_errors=True)


def assert_nothing_left(run_tmp: Path) -> None:
    """No process of this run survives it (their command lines name run_tmp), nor any file."""
    found = subprocess.run(["pgrep", "-f", str(run_tmp)], capture_output=True, text=True)
    assert found.stdout.strip() == "", f"left running: {found.stdout}"
    assert sorted(p.name for p in run_tmp.iterdir()) == [], "the run left files in its TMPDIR"


def write_test(tmp_path: Path, script: str, nodes: str = "[nodes.machine]\n") -> Path:
    (tmp_path / "test.py").write_text(script)
    spec = tmp_path / "test.toml"
    spec.write_text('script = "test.py"\n' + nodes)
    return spec


def assert_bad_input(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.vm
def test_the_demo_passes_with_a_nixos_style_log_and_junit(tmp_path: Path) -> None:
    result = vmtui(["run", "--headless", "demo", "--junit-xml", "junit.xml"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr.splitlines()
    assert "subtest: the server publishes the list" in log
    assert "(finished: subtest: the list comes back as JSON, in " in result.stderr
    assert "client: must succeed: wget -qO- http://server:3000/todos.json" in log
    assert any(line.startswith("server # ") for line in log)
    assert any(line.startswith("client: (finished: must fail: wget") for line in log)
    assert "!!!" not in result.stderr
    assert result.stdout == ""

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "NixOS integration test"
    names = [case.get("name") for case in suite.findall("testcase")]
    assert names == [
        "the server publishes the list",
        "the client reaches the server by host name, across the VLAN",
        "the list comes back as JSON",
        "exactly one todo is still open",
        "a missing resource is an error",
    ]
    assert suite.get("failures") == "0"


@pytest.mark.vm
def test_a_failing_script_exits_1_and_names_the_failing_line(tmp_path: Path) -> None:
    spec = write_test(
        tmp_path,
        'start_all()\n'
        'with subtest("fine"):\n'
        '    machine.succeed("true")\n'
        'with subtest("broken"):\n'
        '    machine.succeed("echo oops; exit 3")\n'
        'never = 1\n',
    )
    result = vmtui(["run", "--headless", str(spec), "--junit-xml", "junit.xml"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    log = result.stderr.splitlines()
    assert '!!! Test "broken" failed with error: "command `echo oops; exit 3` failed (exit code 3)"' in log
    assert '!!!     machine.succeed("echo oops; exit 3")' in log
    assert log[-1] == f'!!! test script failed at {tmp_path / "test.py"}:5: machine.succeed("echo oops; exit 3")'
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    assert cases["fine"].find("failure") is None
    assert cases["broken"].find("failure") is not None


@pytest.mark.vm
def test_the_global_timeout_ends_a_stuck_test(tmp_path: Path) -> None:
    spec = write_test(tmp_path, 'start_all()\nmachine.wait_until_succeeds("test -e /never", timeout=3600)\n')
    result = vmtui(["run", "--headless", "--global-timeout", "20", str(spec)], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "timeout reached; test terminating..." in result.stderr
    assert result.stderr.splitlines()[-1] == "!!! global timeout of 20 seconds reached"


@pytest.mark.vm
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_run_and_its_files(tmp_path: Path, signum: int) -> None:
    spec = write_test(tmp_path, 'start_all()\nmachine.succeed("sleep 600")\n')
    run_tmp = Path(tempfile.mkdtemp(prefix="vh-"))
    run = subprocess.Popen(
        [sys.executable, "-m", "vmtui", "run", "--headless", str(spec)],
        cwd=tmp_path,
        env=run_env(run_tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stderr is not None
    try:
        # The guest has booted and the command runs: QEMU, the switch and
        # the VM state directory all exist now.
        for line in run.stderr:
            if "(connecting took" in line:
                break
        else:
            pytest.fail("the run ended before its command started")
        assert [p.name for p in run_tmp.iterdir()] != []
        run.send_signal(signum)
        rest = run.stderr.read()
        # As NixOS's driver dies of an uncaught KeyboardInterrupt: by the signal.
        assert run.wait(RUN_LIMIT) == -signum
        assert_nothing_left(run_tmp)
        # The log says why the run ended, not that QEMU went away by itself.
        name = signal.Signals(signum).name
        assert f"!!! test interrupted by {name}" in rest, rest
        assert "QEMU exited" not in rest and "QEMU was killed" not in rest, rest
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        run.stderr.close()
        shutil.rmtree(run_tmp, ignore_errors=True)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert_bad_input(vmtui(["run", "--headless", "missing.toml"], tmp_path), "missing.toml")
    spec = write_test(tmp_path, "start_all()\nfor x in\n")
    assert_bad_input(vmtui(["run", "--headless", str(spec)], tmp_path), "test.py:2", "syntax error")
    spec = write_test(tmp_path, 'start_all()\nserver.succeed("true")\n')
    assert_bad_input(
        vmtui(["run", "--headless", str(spec)], tmp_path), "test.py:2", "'server'", "no such node"
    )
    spec = write_test(tmp_path, "start_all()\n", nodes='[nodes.machine]\nguest = "bsd"\n')
    assert_bad_input(vmtui(["run", "--headless", str(spec)], tmp_path), "unknown guest flavour 'bsd'")


@pytest.mark.vm
def test_machine_for_a_node_with_another_name_works_and_warns_once(tmp_path: Path) -> None:
    # NixOS 2026 (nixpkgs #511859): the alias still works, and says it is deprecated.
    spec = write_test(
        tmp_path,
        'start_all()\nmachine.succeed("true")\nprint(repr(machine))\nmachine.succeed("true")\nbox.succeed("true")\n',
        nodes="[nodes.box]\n",
    )
    result = vmtui(["run", "--headless", str(spec)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "`machine`" in line]
    assert len(warnings) == 1 and "deprecated" in warnings[0] and "`box`" in warnings[0], result.stderr[-3000:]
    assert result.stdout.strip() == "<QemuMachine 'box'>"
    assert "box: must succeed: true" in result.stderr
