"""One error tree (driver/errors.py): every exception class vmtui defines is in it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import driver
import vmtui
import widgets
from driver.errors import (
    Cancelled,
    MachineDied,
    MachineError,
    RequestedAssertionFailed,
    ScriptCancelled,
    ScriptSyntaxError,
    VmtuiError,
)

# Private control flow, never raised out of its module.
INTERNAL = {"vmtui.nix._NeedsArguments", "driver.guest.elf.ElfError", "driver.ocr._LegacyEngineMissing"}


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (driver, vmtui, widgets):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith("__main__") or ".examples." in info.name:  # examples are test scripts
                continue
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == module.__name__:
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found) if name not in INTERNAL]


@pytest.mark.parametrize("error", _exception_classes(), ids=lambda e: e.__qualname__)
def test_every_error_is_in_the_tree(error: type[BaseException]) -> None:
    assert issubclass(error, (VmtuiError, Cancelled)), f"{error.__module__}.{error.__qualname__} is outside the tree"


def test_cancellation_is_no_failure_and_no_exception() -> None:
    assert issubclass(ScriptCancelled, Cancelled) and not issubclass(Cancelled, Exception)
    try:
        try:
            raise ScriptCancelled("stop")
        except Exception:  # noqa: BLE001 - what a test script might write
            pytest.fail("a script's `except Exception` swallowed a cancel")
    except Cancelled:
        pass


def test_errors_carry_fields() -> None:
    error = MachineDied("server: QEMU exited with status 1 while waiting", machine="server")
    assert error.machine == "server" and str(error).startswith("server:")
    assert MachineError("plain").machine is None
    syntax = ScriptSyntaxError("t.py", 3, "invalid syntax")
    assert (syntax.filename, syntax.line, syntax.msg) == ("t.py", 3, "invalid syntax")
    assert str(syntax) == "t.py:3: syntax error: invalid syntax"
    # NixOS names stay catchable as before.
    assert issubclass(RequestedAssertionFailed, Exception)
