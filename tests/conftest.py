"""The whole suite runs in a private temp area, and must leave it empty.

Every test session gets one directory of its own in the system temp dir.
`TMPDIR` (so `tempfile`, vmtui's VM state directories and GC roots, and every
subprocess) and `XDG_RUNTIME_DIR` (where a NixOS-style driver keeps VM state)
point into it, and so does pytest's `tmp_path`.  At the end of the session
anything still in the private `TMPDIR` was left behind by a run or a test, so
the session fails and names it.  The global /tmp is not examined: other
programs on the machine (another test run, say) write there at the same time.

The area is removed at the end either way, pytest's `tmp_path` directories
included, so a run leaves nothing behind even when the check fails, or when
the suite is stopped with SIGTERM (a CI job's time limit): the signal ends
the session as Ctrl-C does, and should the driver's own signal cleanup have
taken SIGTERM over, the area goes after the VMs it ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

LEFTOVER_LIMIT = 20

_area: Path | None = None


def _private_tmp() -> Path:
    assert _area is not None
    return _area / "tmp"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _area
    if _area is not None or hasattr(config, "workerinput"):
        return
    # Short: VM sockets live under TMPDIR, and a UNIX socket path has 107 bytes.
    _area = Path(tempfile.mkdtemp(prefix="vmtui-tests-"))
    for sub in ("tmp", "state", "pytest"):
        (_area / sub).mkdir()
    os.environ["TMPDIR"] = str(_private_tmp())
    os.environ["XDG_RUNTIME_DIR"] = str(_private_tmp())
    # Breakpoints and REPL history a TUI test saves are not the user's.
    os.environ["XDG_STATE_HOME"] = str(_area / "state")
    tempfile.tempdir = None  # forget the temp dir `tempfile` has already chosen
    if config.option.basetemp is None:
        config.option.basetemp = str(_area / "pytest")
    signal.signal(signal.SIGTERM, _interrupt)
    from driver import processes

    processes.add_signal_listener(_remove_area_after_the_children)


def _interrupt(signum: int, _frame: object) -> None:
    # pytest ends an interrupted session in order (fixtures torn down, the
    # session finished), which removes the area.
    raise KeyboardInterrupt(f"signal {signum}")


def _remove_area_after_the_children(_signum: int) -> None:
    # The driver's handler ends the process by the signal itself, so the
    # session never finishes: end the children first (nothing may write into
    # the area after it is gone; `cleanup` is safe to call again), then remove it.
    from driver import processes

    processes.cleanup()
    for _attempt in range(3):  # a process outside the registry may still be writing there
        if _area is None or not _area.exists():
            return
        shutil.rmtree(_area, ignore_errors=True)


@pytest.fixture(autouse=True)
def _release_gc_roots() -> Iterator[None]:
    """A test's in-process Nix builds end with it, as a vmtui process's end with the process."""
    yield
    nix = sys.modules.get("vmtui.nix")
    if nix is not None:
        nix.release_gc_roots()


def leftovers(directory: Path) -> list[str]:
    """What is in `directory`, as paths relative to it (directories end in /), sorted."""
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_dir() and not path.is_symlink() and any(path.iterdir()):
            continue  # listed through what it holds
        found.append(str(path.relative_to(directory)) + ("/" if path.is_dir() else ""))
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _area
    if _area is None:
        return
    area, _area = _area, None
    left = leftovers(area / "tmp")
    shutil.rmtree(area, ignore_errors=True)
    if not left:
        return
    shown = left[:LEFTOVER_LIMIT]
    if len(left) > LEFTOVER_LIMIT:
        shown.append(f"... and {len(left) - LEFTOVER_LIMIT} more")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "the tests left files in their TMPDIR (each run and test must remove its own):\n  "
    message += "\n  ".join(shown)
    if reporter is not None:
        reporter.write_sep("=", "files left behind", red=True)
        reporter.write_line(message)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
