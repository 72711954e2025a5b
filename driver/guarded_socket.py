"""A socket to QEMU whose every wait is bounded and watched.

The backdoor (hvc0) and the human monitor are both non-blocking UNIX
sockets on which the driver waits for QEMU or the guest.  Neither may ever
wait blindly: between slices of at most READ_SLICE seconds each wait
checks that the run was not cancelled, that QEMU still runs and that the
deadline has not passed, and fails with an error naming the machine.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

from driver.errors import BackdoorTimeout, MachineDied, ScriptCancelled
from driver.fdwait import wait_readable, wait_writable

# The longest a wait goes without looking at QEMU, the cancel flag and the
# deadline: how late at most a dead QEMU or a cancel is noticed.  Short, so
# that stopping a run (or a save that reruns it) feels immediate; a waiting
# machine costs 50 cheap wake-ups a second (a waitpid and an Event check).
READ_SLICE = 0.02
_CHUNK = 65536


class GuardedSocket:
    """Reads into `_buffer` and writes, under the guards described above.

    `is_dead` returns None while QEMU runs and a short reason ("QEMU exited
    with status 1") once it has exited; `cancelled` tells whether the run
    was cancelled.  `channel` names the connection in error messages.
    """

    channel = "connection"

    def __init__(
        self,
        sock: socket.socket,
        machine: str,
        *,
        is_dead: Callable[[], str | None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self.machine = machine
        self._is_dead = is_dead
        self._cancelled = cancelled
        self._buffer = bytearray()
        # A write was interrupted half way: the other end holds a partial line.
        self._broken = False

    def _no_answer(self, what: str) -> str:
        """The message of a deadline that passed while waiting."""
        return f"{self.machine}: no answer on the {self.channel} while {what}"

    def _closed_reason(self) -> str:
        """Why the other end closed the connection."""
        return f"the {self.channel} connection was closed by QEMU"

    def _check(self, deadline: float | None, what: str, cancellable: bool = True) -> None:
        """Raise if the run was cancelled, QEMU died or the deadline passed."""
        if cancellable and self._cancelled():
            raise ScriptCancelled(f"{self.machine}: cancelled while {what}")
        reason = self._is_dead()
        if reason is not None:
            raise MachineDied(f"{self.machine}: {reason} while {what}")
        if deadline is not None and time.monotonic() >= deadline:
            raise BackdoorTimeout(self._no_answer(what))

    def _fill(self, deadline: float | None, what: str, cancellable: bool = True) -> None:
        """Read at least one chunk into the buffer (or raise)."""
        while True:
            self._check(deadline, what, cancellable)
            slice_ = READ_SLICE
            if deadline is not None:
                slice_ = max(0.0, min(slice_, deadline - time.monotonic()))
            if not wait_readable([self._sock], slice_):
                continue
            try:
                chunk = self._sock.recv(_CHUNK)
            except BlockingIOError:
                continue
            except OSError as error:
                raise MachineDied(f"{self.machine}: {self.channel} connection failed ({error}) while {what}") from error
            if not chunk:
                raise MachineDied(f"{self.machine}: {self._closed_reason()} while {what}")
            self._buffer += chunk
            return

    def _send_all(self, data: bytes, deadline: float | None, what: str, cancellable: bool = True) -> None:
        """Write all of `data`; a write cut short half way marks the socket broken."""
        view = memoryview(data)
        while view:
            try:
                self._check(deadline, what, cancellable)
            except BaseException:
                if len(view) != len(data):
                    self._broken = True
                raise
            if not wait_writable([self._sock], READ_SLICE):
                continue
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                continue
            except OSError as error:
                raise MachineDied(f"{self.machine}: {self.channel} connection failed ({error}) while {what}") from error
            view = view[sent:]

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
