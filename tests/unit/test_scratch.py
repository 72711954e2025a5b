"""driver.scratch: temp dirs removed by their maker, at exit, and on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from driver import scratch

REPO = Path(__file__).resolve().parents[2]

# A vmtui-like process: exit handlers installed, one scratch dir with a file
# in it, then it prints the dir and waits for its end.
HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from driver import processes, scratch
    processes.install_exit_handlers()
    path = scratch.make_temp_dir("vmtui-")
    (path / "vde1.ctl").mkdir()
    (path / "vde1.ctl" / "ctl").write_text("")
    print(path, flush=True)
    if {wait!r}:
        time.sleep(600)
    """
)


def test_a_dir_is_removed_by_its_maker_with_what_it_holds(tmp_path: Path) -> None:
    path = scratch.make_temp_dir("vmtui-", tmp_path)
    (path / "sub").mkdir()
    (path / "sub" / "file").write_text("x")
    assert path.parent == tmp_path and oct(path.stat().st_mode & 0o777) == "0o700"
    assert path in scratch.registered()
    scratch.remove(path)
    assert not path.exists() and path not in scratch.registered()


def test_temp_dir_is_removed_when_its_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with scratch.temp_dir("bench-", tmp_path) as path:
            (path / "f").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_remove_all_takes_what_is_left(tmp_path: Path) -> None:
    paths = [scratch.make_temp_dir("vmtui-", tmp_path) for _ in range(3)]
    scratch.remove_all()
    assert not any(p.exists() for p in paths) and scratch.registered() == []
    scratch.remove_all()  # nothing left: a no-op


def _holder(tmp_path: Path, *, wait: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(repo=str(REPO), wait=wait)],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_normal_exit_removes_the_dirs(tmp_path: Path) -> None:
    holder = _holder(tmp_path, wait=False)
    assert holder.stdout is not None
    path = Path(holder.stdout.readline().strip())
    assert holder.wait(60) == 0
    holder.stdout.close()
    assert path.parent == tmp_path and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_removes_the_dirs(tmp_path: Path, signum: int) -> None:
    # The handlers die of the signal itself, past atexit: only the cleanup they run removes it.
    holder = _holder(tmp_path, wait=True)
    assert holder.stdout is not None
    try:
        path = Path(holder.stdout.readline().strip())
        assert (path / "vde1.ctl" / "ctl").exists()
        holder.send_signal(signum)
        assert holder.wait(60) == -signum
        assert list(tmp_path.iterdir()) == []
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
