"""`test_driver.machine`: the machine classes and `retry`.

`QemuMachine`, `BaseMachine` and `Machine` are all vmtui's `Machine`; a
script may subclass it and build machines of the subclass with the NixOS
constructor keywords (`start_command=`, `name=`, `keep_machine_state=`, ...):
they join the running test.
"""

import shlex
from typing import Any

from driver.errors import MachineError
from driver.machine import Machine
from driver.polling import retry

QemuMachine = Machine
BaseMachine = Machine


class NspawnMachine(Machine):
    """Containers are not supported by vmtui; the name exists for imports and type hints."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise MachineError("vmtui does not run systemd-nspawn containers (NspawnMachine)")


def make_command(args: list[Any]) -> str:
    """A shell command line from words (each formatted with str(), then quoted)."""
    return " ".join(shlex.quote(str(arg)) for arg in args)


__all__ = ["BaseMachine", "Machine", "NspawnMachine", "QemuMachine", "make_command", "retry"]
