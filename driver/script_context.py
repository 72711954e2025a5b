"""What a machine built by the test script itself takes from the running test.

NixOS test scripts may build machines directly, the way the NixOS driver's
own `create_machine` does: `QemuMachine(start_command=..., name=...,
out_dir=..., tmp_dir=..., logger=...)`, usually with a subclass of
`QemuMachine` that adds methods for another init system.  Such a call knows
nothing of vmtui's event bus, shared directory or cancel event, so the
`Driver` of the running test installs them here, and `Machine` fills in what
the script did not give.  The driver also *adopts* every such machine, so it
ends with the test on every exit path like the nodes do.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from driver.events import EventBus


@dataclass(frozen=True)
class MachineDefaults:
    bus: EventBus
    logger: Any
    tmp_dir: Path
    out_dir: Path
    shared_dir: Path
    cancel_event: threading.Event
    # Called with each machine built from these defaults.
    adopt: Callable[[Any], None]


_current: MachineDefaults | None = None
_lock = threading.Lock()


def install(defaults: MachineDefaults) -> None:
    global _current
    with _lock:
        _current = defaults


def uninstall(defaults: MachineDefaults) -> None:
    """Forget `defaults` unless another driver has installed its own since."""
    global _current
    with _lock:
        if _current is defaults:
            _current = None


def current() -> MachineDefaults | None:
    return _current
