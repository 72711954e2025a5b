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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_lock = threading.Lock()
_dirs: set[Path] = set()


def make_temp_dir(prefix: str, base: Path | None = None) -> Path:
    """A fresh private directory (mode 0700) in `base` (the temp dir by default)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    with _lock:
        _dirs.add(path)
    return path


@contextmanager
def temp_dir(prefix: str, base: Path | None = None) -> Iterator[Path]:
    """`make_temp_dir` for a `with` block: removed when the block ends, or when vmtui does."""
    path = make_temp_dir(prefix, base)
    try:
        yield path
    finally:
        remove(path)


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


# Registered at import, before `driver.processes` registers its cleanup: exit
# handlers run last-registered first, so children end before this runs.
atexit.register(remove_all)
