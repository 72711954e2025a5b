"""Every error vmtui raises on purpose, in one tree.

```
VmtuiError                          (Exception) root of the errors below
├── TestScriptError                 a check in the script failed (NixOS name)
│   ├── RequestedAssertionFailed    succeed(), fail(), wait_*, t.assert* (NixOS name)
│   └── PollingConditionError       a polling_condition failed
├── MachineError                    a machine cannot do what was asked (NixOS name)
│   ├── MachineDied                 its QEMU exited while the driver talked to it
│   ├── BackdoorTimeout             the guest did not answer before the host's deadline
│   ├── ShellRestarted              the backdoor shell started again (the guest rebooted)
│   ├── CheckpointError             a checkpoint cannot be saved or restored
│   └── ShellError                  a shell pane could not be opened
├── ConfigError                     bad input: the CLI prints one line, exit 2
│   ├── ScriptSyntaxError           the test script does not compile
│   └── vmtui.nix.NixError ...      Nix could not produce a driver
└── BuildError                      (also a RuntimeError) a built-in guest could not be built
    ├── GuestBuildError             the tiny guest
    ├── ImageBuildError             the systemd guest's image
    └── PackageError                a Debian package for a guest

Cancelled                           (BaseException) a stop the user asked for, not a failure
├── ScriptCancelled                 the run was stopped; the VMs stay up
└── vmtui.nix.NixBuildCancelled     a newer save took over a rebuild
```

The NixOS names (`RequestedAssertionFailed`, `MachineError`, ...) are what
test scripts catch, so they keep their names and meaning.  Errors carry
what they are about as fields (`machine`, `line`, ...), so a front end never
parses a message to learn it; their text stays the one line users read.
tests/unit/test_errors.py keeps every exception class of vmtui in the tree.
"""

from __future__ import annotations


class VmtuiError(Exception):
    """Root of vmtui's own errors (cancellation aside: see `Cancelled`)."""


class TestScriptError(VmtuiError):
    """Base of the errors a test script is expected to raise on failure."""

    __test__ = False  # not a pytest test class


class RequestedAssertionFailed(TestScriptError, AssertionError):
    """A check in the script failed: succeed(), fail(), wait_*, t.assert*.

    Also an `AssertionError`, as in the NixOS driver since 2026, so a script's
    `except AssertionError` catches a failed command or a wait that timed out.
    """


class PollingConditionError(TestScriptError):
    """A polling_condition failed while its block was active."""


class MachineError(VmtuiError):
    """A machine cannot do what was asked (not an assertion in the script).

    `machine` names it when the raiser knows it (the message names it too).
    """

    def __init__(self, *args: object, machine: str | None = None) -> None:
        super().__init__(*args)
        self.machine = machine


class MachineDied(MachineError):
    """The QEMU process of a machine exited while the driver talked to it."""


class BackdoorTimeout(MachineError):
    """The guest did not answer on the backdoor before the host's deadline."""


class ShellRestarted(MachineError):
    """The marker appeared again while a reply was awaited (the guest rebooted).

    The command's fate is unknown; the next command waits for the new shell.
    """


class CheckpointError(MachineError):
    """A checkpoint cannot be saved or restored; the message says why."""


class ShellError(MachineError):
    """A shell could not be opened; the message says why."""


class EfiStoreError(VmtuiError, ValueError):
    """A file is not an OVMF variable store vmtui understands (driver/efi_vars.py)."""


class EventDecodeError(VmtuiError, ValueError):
    """A line of a run record's events.jsonl is no event this vmtui knows."""


class ConfigError(VmtuiError):
    """Bad input: a missing file, a malformed spec or wrapper, an unknown node.

    The CLI prints its message as one line and exits with status 2.
    """


class ScriptSyntaxError(ConfigError):
    """The script does not compile; raised by `load()` before anything runs."""

    def __init__(self, filename: str, line: int | None, msg: str) -> None:
        self.filename = filename
        self.line = line
        self.msg = msg
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: syntax error: {msg}")


class BuildError(VmtuiError, RuntimeError):
    """A built-in guest could not be built (the message says which step)."""


class GuestBuildError(BuildError):
    """The tiny guest could not be built (the message says why, in one line)."""


class ImageBuildError(BuildError):
    """Building the systemd guest image failed (the message says which step)."""


class PackageError(BuildError):
    """A package could not be resolved, downloaded or unpacked."""


class Cancelled(BaseException):
    """A stop the user asked for: neither a failure nor a bug.

    A BaseException so that `except Exception` (in a test script, or in
    code reporting failures) cannot swallow it.
    """


class ScriptCancelled(Cancelled):
    """Raised inside the script thread to stop a run (not a test failure)."""
