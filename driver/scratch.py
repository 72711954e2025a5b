"""Temporary directories that never outlive vmtui.

A directory made here is removed by whoever made it when its work is done
(`remove`), and otherwise on every way the process ends: at normal exit
(atexit), and by `driver.processes.cleanup()`, which the SIGTERM/SIGINT/SIGHUP
handlers and the TUI's forced exit run once every child is gone.  Nothing
outlives a SIGKILL, which is why the directories live in the temp dir.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_dirs: set[Path] = set()
_atexit_registered = False


def make_temp_dir(prefix: str, base: Path | None = None) -> Path:
    """A fresh private directory (mode 0700) in `base` (the temp dir by default)."""
    global _atexit_registered
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    with _lock:
        _dirs.add(path)
        if not _atexit_registered:
            _atexit_registered = True
            atexit.register(remove_all)
    return path


def remove(path: Path) -> None:
    """Remove a directory from `make_temp_dir` now, with everything in it."""
    with _lock:
        _dirs.discard(path)
    _rmtree(path)


def remove_all() -> None:
    """Remove every directory still registered.  Safe to call any number of times."""
    with _lock:
        paths = list(_dirs)
        _dirs.clear()
    for path in paths:
        _rmtree(path)


def registered() -> list[Path]:
    """The directories not yet removed (for tests and diagnostics)."""
    with _lock:
        return sorted(_dirs)


def _rmtree(path: Path) -> None:
    # A child that was still ending may add a file while the tree is removed
    # (QEMU closing its monitor socket): one more pass removes that too.
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
