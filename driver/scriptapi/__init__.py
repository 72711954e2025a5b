"""`import test_driver` inside test scripts: the NixOS driver's module surface.

Late-2026 NixOS test scripts import the driver's own modules
(`from test_driver.errors import RequestedAssertionFailed`,
`from test_driver.machine import QemuMachine, retry`, ...).  Under vmtui
those names must resolve to vmtui's classes (a node must be an instance of
the `QemuMachine` a script imports), so the package in `test_driver/` here
re-exports them.

It is importable only while a script runs (`script_modules()`): a finder at
the front of `sys.meta_path` serves `test_driver` and its submodules from
this directory, and leaving the block restores whatever `test_driver` the
process had before, so an installed NixOS driver is never shadowed outside a
run.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

PACKAGE = "test_driver"
_HERE = Path(__file__).resolve().parent


def _is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _ScriptApiFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _is_ours(fullname):
            return None
        search = [str(_HERE)] if fullname == PACKAGE else path
        return importlib.machinery.PathFinder.find_spec(fullname, search)


_finder = _ScriptApiFinder()
_lock = threading.Lock()
_depth = 0
_saved: dict[str, ModuleType] = {}


def _take_modules() -> dict[str, ModuleType]:
    taken = {name: module for name, module in sys.modules.items() if _is_ours(name)}
    for name in taken:
        del sys.modules[name]
    return taken


@contextlib.contextmanager
def script_modules() -> Iterator[None]:
    """Make `test_driver` resolve to vmtui's modules for the block (re-entrant)."""
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth == 1:
            _saved = _take_modules()
            sys.meta_path.insert(0, _finder)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                with contextlib.suppress(ValueError):
                    sys.meta_path.remove(_finder)
                _take_modules()
                sys.modules.update(_saved)
                _saved = {}
