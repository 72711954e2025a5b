"""Exceptions of the driver core.

The names of the first three follow the NixOS test driver, so scripts that
catch them keep working.
"""

from __future__ import annotations


class TestScriptError(Exception):
    """Base of the errors a test script is expected to raise on failure."""

    __test__ = False  # not a pytest test class


class RequestedAssertionFailed(TestScriptError, AssertionError):
    """A check in the script failed: succeed(), fail(), wait_*, t.assert*.

    Also an `AssertionError`, as in the NixOS driver since 2026, so a script's
    `except AssertionError` catches a failed command or a wait that timed out.
    """


class MachineError(Exception):
    """A machine cannot do what was asked (not an assertion in the script)."""


class MachineDied(MachineError):
    """The QEMU process of a machine exited while the driver talked to it."""


class BackdoorTimeout(MachineError):
    """The guest did not answer on the backdoor before the host's deadline."""


class PollingConditionError(TestScriptError):
    """A polling_condition failed while its block was active."""


class ConfigError(Exception):
    """Bad input: a missing file, a malformed spec or wrapper, an unknown node.

    The CLI prints its message as one line and exits with status 2.
    """


class ScriptCancelled(BaseException):
    """Raised inside the script thread to stop a run (not a test failure).

    A BaseException so that `except Exception` in a test script cannot swallow it.
    """
