"""A synchronous facade over `qemu.qmp.QMPClient`.

The machine code is synchronous (test scripts call it from their thread), and
`qemu.qmp` is asyncio.  Each connection runs its client on a private event
loop in a daemon thread; callers submit coroutines to it and wait with a
timeout.  QMP events are moved from the client's listener into a thread-safe
queue as they arrive, for `wait_for_event` (NixOS `wait_for_qmp_event`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import socket
import threading
import time
from typing import Any, Callable, Coroutine, Mapping, TypeVar

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError

from driver.errors import MachineDied, MachineError, RequestedAssertionFailed, ScriptCancelled

_T = TypeVar("_T")
_MAX_QUEUED_EVENTS = 10_000
_WAIT_SLICE = 0.1
DEFAULT_COMMAND_TIMEOUT = 300.0


class QMPEventTimeout(RequestedAssertionFailed, TimeoutError):
    """No matching QMP event in time: a failed check for vmtui, and the
    `TimeoutError` that NixOS's `wait_for_qmp_event` raises, for scripts
    that catch that."""


class QMPConnection:
    """One QMP session to one QEMU, usable from any thread."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"qmp-{machine}", daemon=True
        )
        self._thread.start()
        self._client: QMPClient | None = None
        self._pump: asyncio.Task[None] | None = None
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=_MAX_QUEUED_EVENTS)
        self._events_changed = threading.Condition()
        self._closed = False

    def _call(self, coroutine: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    # -- connecting --------------------------------------------------------------

    def connect(
        self,
        address: str | socket.socket,
        *,
        timeout: float = 60.0,
        is_dead: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Connect to QEMU's QMP server socket and negotiate capabilities.

        QEMU creates the socket while it starts, so a missing socket is
        retried until `timeout`, as long as QEMU lives.
        """
        deadline = time.monotonic() + timeout
        while True:
            client = QMPClient(self.machine)
            try:
                self._call(client.connect(address), max(0.1, deadline - time.monotonic()))
            except (ConnectError, concurrent.futures.TimeoutError) as error:
                reason = is_dead()
                if reason is not None:
                    raise MachineDied(f"{self.machine}: {reason} before QMP was ready") from error
                if time.monotonic() >= deadline or isinstance(address, socket.socket):
                    raise MachineError(f"{self.machine}: cannot connect to QMP at {address}: {error}") from error
                time.sleep(0.05)
                continue
            break
        self._client = client
        self._pump = self._call(self._start_pump(client), 5.0)

    async def _start_pump(self, client: QMPClient) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._pump_events(client))

    async def _pump_events(self, client: QMPClient) -> None:
        async for event in client.events:
            with self._events_changed:
                self._events.append(dict(event))
                self._events_changed.notify_all()

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._closed

    # -- commands ----------------------------------------------------------------

    def execute(
        self,
        command: str,
        arguments: Mapping[str, object] | None = None,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
    ) -> object:
        """Run a QMP command; returns its `return` value."""
        client = self._require_client()
        try:
            return self._call(client.execute(command, arguments), timeout)
        except ExecuteError as error:
            raise MachineError(f"{self.machine}: QMP command {command} failed: {error}") from error
        except ExecInterruptedError as error:
            raise MachineDied(f"{self.machine}: QMP connection lost during {command}") from error
        except concurrent.futures.TimeoutError as error:
            raise MachineError(f"{self.machine}: QMP command {command} got no answer in {timeout} seconds") from error
        except QMPError as error:
            raise MachineError(f"{self.machine}: QMP command {command} failed: {error}") from error

    def accelerator(self, timeout: float | None = DEFAULT_COMMAND_TIMEOUT) -> str:
        """How QEMU runs the guest: "kvm" when KVM is enabled, else "tcg".

        Asked of QEMU (`query-kvm`) because the command line may leave the
        choice to it (`accel=kvm:tcg` falls back to TCG without KVM).
        """
        answer = self.execute("query-kvm", timeout=timeout)
        if not isinstance(answer, dict) or not isinstance(answer.get("enabled"), bool):
            raise MachineError(f"{self.machine}: QMP query-kvm gave an unexpected answer: {answer!r}")
        return "kvm" if answer["enabled"] else "tcg"

    def send(self, command: str, arguments: Mapping[str, object] | None = None) -> dict[str, object]:
        """NixOS's `qmp_client.send`: the reply as `{"return": value}`."""
        return {"return": self.execute(command, arguments)}

    def _require_client(self) -> QMPClient:
        if self._client is None or self._closed:
            raise MachineError(f"{self.machine}: QMP is not connected")
        return self._client

    # -- events ------------------------------------------------------------------

    def wait_for_event(
        self,
        event_filter: Callable[[dict[str, Any]], bool],
        timeout: float | None = 600.0,
        *,
        cancel: threading.Event | None = None,
        is_dead: Callable[[], str | None] = lambda: None,
    ) -> dict[str, Any]:
        """Take queued events until `event_filter(event)` is true; return it.

        Events that do not match are dropped, as in NixOS.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # The filter is the caller's code and may itself talk QMP: it runs
            # without the lock, which the event pump on the loop thread needs.
            while (event := self._next_event()) is not None:
                if event_filter(event):
                    return event
            with self._events_changed:
                if self._events:
                    continue
                if cancel is not None and cancel.is_set():
                    raise ScriptCancelled(f"{self.machine}: cancelled while waiting for a QMP event")
                reason = is_dead()
                if reason is not None:
                    raise MachineDied(f"{self.machine}: {reason} while waiting for a QMP event")
                slice_ = _WAIT_SLICE
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise QMPEventTimeout(
                            f"{self.machine}: no matching QMP event within {timeout} seconds"
                        )
                    slice_ = min(slice_, remaining)
                self._events_changed.wait(slice_)

    def _next_event(self) -> dict[str, Any] | None:
        with self._events_changed:
            return self._events.popleft() if self._events else None

    def pending_events(self) -> list[dict[str, Any]]:
        """Queued events not consumed yet (a snapshot)."""
        with self._events_changed:
            return list(self._events)

    # -- closing -----------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except BaseException:
                pass
        if self._client is not None:
            try:
                # A dead QEMU makes disconnect() re-raise the reader's EOF.
                await self._client.disconnect()
            except Exception:
                pass

    def close(self) -> None:
        """Disconnect and stop the loop thread.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._shutdown(), 5.0)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()
