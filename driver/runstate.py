"""One machine's lifecycle as one state, changed under one lock.

A machine's life is written from three threads: the script's (start,
connect, shutdown), the console reader's (QEMU exited) and a front end's
(release, restart).  Loose flags (`booted`, `connected`, "stopping") set by
each let a late writer undo an earlier one: a reboot noticed after QEMU
died marked a dead machine "booted" again.  Here every change is a move
checked against the allowed moves, atomically: a move that no longer
applies (the machine exited meanwhile) is refused, and the caller learns it.

```
CREATED ──> STARTING ──> BOOTED <──> CONNECTED
               │            │            │
               ├──────> STOPPING <───────┤      (shutdown, crash, release)
               └──────> DIED <───────────┘      (QEMU exited on its own)
every state ──> STOPPED ──> STARTING            (torn down; started again)
```
A machine whose QEMU died stays DIED (its commands fail, naming the
death) until something tears it down: it is never restarted behind the
user's back.  One that was stopped on purpose is STOPPED, and the next
command boots it again, as in NixOS.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable

from driver.errors import MachineError


class Runstate(enum.Enum):
    CREATED = "created"        # no QEMU yet
    STARTING = "starting"      # QEMU spawned; its monitor, shell and QMP not all up
    BOOTED = "booted"          # QEMU up; the backdoor shell not (or no longer) answering
    CONNECTED = "connected"    # the backdoor shell answers
    STOPPING = "stopping"      # shutdown, crash or release under way: the exit is expected
    DIED = "died"              # QEMU exited on its own; the connections are not torn down yet
    STOPPED = "stopped"        # torn down (after a stop, a death or a release)

    @property
    def booted(self) -> bool:
        """NixOS's `machine.booted`: true from the boot until the teardown."""
        return self in (Runstate.BOOTED, Runstate.CONNECTED, Runstate.STOPPING, Runstate.DIED)

    @property
    def connected(self) -> bool:
        return self is Runstate.CONNECTED


_MOVES: dict[Runstate, frozenset[Runstate]] = {
    Runstate.CREATED: frozenset({Runstate.STARTING, Runstate.STOPPED}),
    Runstate.STARTING: frozenset({Runstate.BOOTED, Runstate.STOPPING, Runstate.DIED, Runstate.STOPPED}),
    Runstate.BOOTED: frozenset({Runstate.CONNECTED, Runstate.STOPPING, Runstate.DIED, Runstate.STOPPED}),
    Runstate.CONNECTED: frozenset({Runstate.BOOTED, Runstate.STOPPING, Runstate.DIED, Runstate.STOPPED}),
    Runstate.STOPPING: frozenset({Runstate.STOPPED}),
    Runstate.DIED: frozenset({Runstate.STOPPED}),
    Runstate.STOPPED: frozenset({Runstate.STARTING}),
}


def allowed(old: Runstate, new: Runstate) -> bool:
    """Whether a machine may go from `old` to `new` (staying put always may)."""
    return old is new or new in _MOVES[old]


class RunstateError(MachineError):
    """A method was called in a state it cannot work in (the machine is named)."""


class MachineRunstate:
    """The runstate of machine `machine`; safe to use from any thread."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        self._lock = threading.Lock()
        self._state = Runstate.CREATED

    @property
    def state(self) -> Runstate:
        return self._state

    def move(self, new: Runstate, *, only_from: Iterable[Runstate] | None = None) -> bool:
        """Go to `new` if that move is allowed (and the state is one of
        `only_from`, when given); False, with nothing changed, otherwise."""
        with self._lock:
            old = self._state
            if only_from is not None and old not in set(only_from):
                return False
            if not allowed(old, new):
                return False
            self._state = new
            return True

    def require(self, *states: Runstate) -> Runstate:
        """The current state, if it is one of `states`; else `RunstateError`."""
        state = self._state
        if state not in states:
            raise RunstateError(f"{self.machine}: the machine is {_DESCRIPTIONS[state]}", machine=self.machine)
        return state


_DESCRIPTIONS = {
    Runstate.CREATED: "not running",
    Runstate.STARTING: "still starting",
    Runstate.BOOTED: "booting",
    Runstate.CONNECTED: "running",
    Runstate.STOPPING: "shutting down",
    Runstate.DIED: "not running",
    Runstate.STOPPED: "not running",
}

# The machine holds connections to a QEMU (which may have died: then a
# command on them fails naming the death).
ATTACHED = (Runstate.BOOTED, Runstate.CONNECTED, Runstate.STOPPING, Runstate.DIED)
