"""Children that cannot outlive vmtui: process groups, PDEATHSIG, exit handlers.

Real processes (`sleep`, `bash`, a child Python), no fakes: what is tested
is exactly what the kernel does with them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from driver import processes

REPO = Path(__file__).resolve().parents[2]


def is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, limit: float = 30.0) -> bool:
    """Wait (up to a generous limit, not a timing assertion) for `pid` to end."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.05)
    return is_gone(pid)


def test_child_spawned_from_a_short_lived_thread_survives_it() -> None:
    spawned: list[subprocess.Popen[bytes]] = []
    worker = threading.Thread(target=lambda: spawned.append(processes.spawn(["sleep", "300"])))
    worker.start()
    worker.join()
    child = spawned[0]
    try:
        # PDEATHSIG follows the forking thread; the fork happened on the
        # long-lived spawner thread, so the worker's end must not kill it.
        time.sleep(0.3)
        assert child.poll() is None
        assert os.getpgid(child.pid) == child.pid  # own process group
        assert os.getsid(child.pid) == child.pid  # own session
    finally:
        processes.registry.terminate(child)
    assert child.returncode == -signal.SIGTERM


def test_terminate_ends_the_whole_group() -> None:
    child = processes.spawn(
        ["bash", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    processes.registry.terminate(child)
    child.stdout.close()
    assert wait_gone(grandchild)
    assert child not in processes.registry.live()


def test_sigterm_ignored_means_sigkill_after_the_grace_period() -> None:
    # Ignored signals are inherited: both bash and sleep ignore SIGTERM.
    child = processes.spawn(["bash", "-c", "trap '' TERM; sleep 300; true"])
    time.sleep(0.2)
    processes.registry.terminate(child, grace=0.5)
    assert child.returncode == -signal.SIGKILL


def test_spawn_of_a_missing_program_raises_in_the_caller() -> None:
    with pytest.raises(OSError):
        processes.spawn(["/nonexistent/program"])


def run_parent(body: str) -> subprocess.Popen[str]:
    """A child Python that uses driver.processes and prints its child's pid."""
    code = textwrap.dedent(
        """
        import sys, time
        from driver import processes
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_pid(parent: subprocess.Popen[str]) -> int:
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line, "the parent process printed nothing"
    return int(line)


def test_child_dies_when_vmtui_is_killed_with_sigkill() -> None:
    parent = run_parent(
        """
        child = processes.spawn(["sleep", "300"])
        print(child.pid, flush=True)
        time.sleep(300)
        """
    )
    pid = read_pid(parent)
    try:
        parent.kill()
        parent.wait()
        assert wait_gone(pid)
    finally:
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_exit_handlers_clean_up_and_keep_the_conventional_status(signum: int) -> None:
    parent = run_parent(
        """
        processes.install_exit_handlers()
        processes.install_exit_handlers()  # idempotent
        # A child that ignores SIGTERM: the handler must escalate to SIGKILL.
        child = processes.spawn(["bash", "-c", "trap '' TERM; sleep 300; true"])
        print(child.pid, flush=True)
        time.sleep(300)
        """
    )
    pid = read_pid(parent)
    try:
        parent.send_signal(signum)
        assert parent.wait(60) == -signum
        assert is_gone(pid) or wait_gone(pid, 5)
    finally:
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_normal_exit_ends_children_through_atexit() -> None:
    parent = run_parent(
        """
        processes.install_exit_handlers()
        child = processes.spawn(["sleep", "300"])
        print(child.pid, flush=True)
        """
    )
    pid = read_pid(parent)
    try:
        assert parent.wait(60) == 0
        assert wait_gone(pid, 5)
    finally:
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_what_a_child_leaves_in_its_group_ends_when_it_exits(tmp_path: Path) -> None:
    # A start script's shape: a helper in the background, then the main
    # program (here it just exits, as QEMU does on a guest poweroff).
    pid_file = tmp_path / "helper"
    leader = processes.spawn(["bash", "-c", f'sleep 600 & echo $! > {pid_file}; exec sleep 0.3'])
    processes.end_group_with_leader(leader, grace=2.0)
    while not pid_file.exists() or not pid_file.read_text().strip():
        time.sleep(0.01)
    helper = int(pid_file.read_text())
    assert leader.wait(30) == 0
    assert wait_gone(helper), "the helper outlived the process that started it"
    # The owner still gets the exit status (the watcher does not reap it first).
    assert leader.returncode == 0


def test_terminate_ends_a_group_whose_leader_is_gone(tmp_path: Path) -> None:
    pid_file = tmp_path / "helper"
    leader = processes.spawn(["bash", "-c", f'sleep 600 & echo $! > {pid_file}; exit 0'])
    assert leader.wait(30) == 0
    helper = int(pid_file.read_text())
    assert not is_gone(helper)
    processes.registry.terminate(leader, grace=2.0)
    assert wait_gone(helper)


def test_terminate_ends_the_leader_before_the_helpers_it_started(tmp_path: Path) -> None:
    # A virtiofs start script's shape: virtiofsd in the background, then
    # `exec qemu`.  QEMU still talks to virtiofsd while it shuts down, so
    # the helper must outlive it (else QEMU logs vhost-user errors).
    log = tmp_path / "order"
    ready = tmp_path / "ready"
    helper = f"trap 'echo helper >> {log}; exit 0' TERM; touch {ready}.helper; while :; do sleep 0.02; done"
    leader_script = (
        f"bash -c {shlex.quote(helper)} & "
        f"trap 'sleep 0.3; echo leader >> {log}; exit 0' TERM; touch {ready}.leader; while :; do sleep 0.02; done"
    )
    leader = processes.spawn(["bash", "-c", leader_script])
    try:
        while not (Path(f"{ready}.helper").exists() and Path(f"{ready}.leader").exists()):
            time.sleep(0.01)  # both traps are set
        processes.registry.terminate(leader, grace=5.0)
        assert log.read_text().split() == ["leader", "helper"]
    finally:
        # Whatever happened above, the helper (which traps SIGTERM) must not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
