"""The synchronous QMP facade against a fake QMP server on a socketpair."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from driver.errors import MachineDied, MachineError, RequestedAssertionFailed, ScriptCancelled
from driver.qmp import QMPConnection

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}, "capabilities": []}}


class FakeQMPServer:
    """Greets, accepts qmp_capabilities, answers commands via `handle`."""

    # Returned by a handler: send nothing back.
    NO_REPLY = object()

    def __init__(self, sock: socket.socket, handle: Callable[[str, dict[str, Any]], Any]) -> None:
        self.sock = sock
        self.handle = handle
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.sock.sendall(json.dumps(message).encode() + b"\r\n")

    def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        self.send({"event": name, "data": data or {}, "timestamp": {"seconds": int(time.time()), "microseconds": 0}})

    def _serve(self) -> None:
        self.send(GREETING)
        # The client need not end a message with a newline: parse a stream.
        decoder = json.JSONDecoder()
        buffer = ""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk.decode()
            while buffer.strip():
                try:
                    message, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break  # incomplete: wait for more
                buffer = buffer.lstrip()[end:]
                self._answer(message)

    def _answer(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        command = message["execute"]
        reply: dict[str, Any]
        if command == "qmp_capabilities":
            reply = {"return": {}}
        else:
            try:
                value = self.handle(command, message.get("arguments", {}))
                if value is FakeQMPServer.NO_REPLY:
                    return
                reply = {"return": value}
            except LookupError as error:
                reply = {"error": {"class": "CommandNotFound", "desc": str(error)}}
        if "id" in message:
            reply["id"] = message["id"]
        self.send(reply)


def handler(command: str, arguments: dict[str, Any]) -> Any:
    if command == "query-status":
        return {"status": "running", "running": True}
    if command == "echo":
        return arguments
    raise LookupError(f"The command {command} has not been found")


@pytest.fixture
def session() -> Iterator[tuple[QMPConnection, FakeQMPServer]]:
    client_end, server_end = socket.socketpair()
    server = FakeQMPServer(server_end, handler)
    qmp = QMPConnection("node1")
    qmp.connect(client_end, timeout=10)
    yield qmp, server
    qmp.close()
    server_end.close()


def test_execute_and_send(session: tuple[QMPConnection, FakeQMPServer]) -> None:
    qmp, server = session
    assert qmp.execute("query-status") == {"status": "running", "running": True}
    assert qmp.execute("echo", {"a": [1, 2]}) == {"a": [1, 2]}
    # NixOS-style reply shape.
    assert qmp.send("query-status") == {"return": {"status": "running", "running": True}}
    assert [m["execute"] for m in server.received] == ["qmp_capabilities", "query-status", "echo", "query-status"]


def test_error_reply_is_a_machine_error(session: tuple[QMPConnection, FakeQMPServer]) -> None:
    qmp, _server = session
    with pytest.raises(MachineError, match="node1: QMP command nope failed: The command nope has not been found"):
        qmp.execute("nope")
    # The session survives an error reply.
    assert qmp.execute("query-status")["status"] == "running"  # type: ignore[index]


def test_events_are_queued_and_filtered(session: tuple[QMPConnection, FakeQMPServer]) -> None:
    qmp, server = session
    server.event("RTC_CHANGE", {"offset": 1})
    server.event("STOP")
    server.event("RESUME")
    event = qmp.wait_for_event(lambda e: e["event"] == "STOP", timeout=10)
    assert event["event"] == "STOP"
    # Events before the match were dropped, the later one waits.
    assert qmp.wait_for_event(lambda e: True, timeout=10)["event"] == "RESUME"


def test_event_that_arrives_while_waiting(session: tuple[QMPConnection, FakeQMPServer]) -> None:
    qmp, server = session
    threading.Timer(0.2, server.event, args=("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})).start()
    event = qmp.wait_for_event(lambda e: e["event"] == "SHUTDOWN", timeout=30)
    assert event["data"] == {"guest": True, "reason": "guest-shutdown"}


def test_wait_for_event_timeout_cancel_and_death(session: tuple[QMPConnection, FakeQMPServer]) -> None:
    qmp, _server = session
    with pytest.raises(RequestedAssertionFailed, match="node1: no matching QMP event within 0.3 seconds"):
        qmp.wait_for_event(lambda e: True, timeout=0.3)
    # NixOS raises TimeoutError here: a script catching that still does.
    with pytest.raises(TimeoutError):
        qmp.wait_for_event(lambda e: True, timeout=0.1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ScriptCancelled):
        qmp.wait_for_event(lambda e: True, timeout=None, cancel=cancel)
    with pytest.raises(MachineDied, match="node1: QEMU exited with status 0"):
        qmp.wait_for_event(lambda e: True, timeout=None, is_dead=lambda: "QEMU exited with status 0")


def test_connection_lost_during_a_command() -> None:
    client_end, server_end = socket.socketpair()

    def hang_up(command: str, arguments: dict[str, Any]) -> Any:
        server_end.shutdown(socket.SHUT_RDWR)
        return FakeQMPServer.NO_REPLY

    FakeQMPServer(server_end, hang_up)
    qmp = QMPConnection("node1")
    try:
        qmp.connect(client_end, timeout=10)
        with pytest.raises(MachineError, match="node1"):
            qmp.execute("query-status", timeout=10)
    finally:
        qmp.close()
        server_end.close()


def test_connect_to_a_missing_socket_gives_up(tmp_path: Any) -> None:
    qmp = QMPConnection("node1")
    try:
        with pytest.raises(MachineDied, match="node1: QEMU exited with status 1 before QMP was ready"):
            qmp.connect(str(tmp_path / "absent"), timeout=5, is_dead=lambda: "QEMU exited with status 1")
        with pytest.raises(MachineError, match="cannot connect to QMP"):
            qmp.connect(str(tmp_path / "absent"), timeout=0.3)
    finally:
        qmp.close()


def test_close_is_idempotent_and_stops_the_thread(session: tuple[QMPConnection, FakeQMPServer]) -> None:
    qmp, _server = session
    qmp.close()
    qmp.close()
    assert not qmp.connected
    assert not qmp._thread.is_alive()
    with pytest.raises(MachineError, match="not connected"):
        qmp.execute("query-status")


def test_an_event_filter_may_itself_send_qmp_commands() -> None:
    """A filter is user code (`wait_for_qmp_event(lambda e: ...)`); one that
    asks QEMU something while an event arrives must not deadlock with the
    event pump."""

    def stop_then_answer(command: str, arguments: dict[str, Any]) -> Any:
        if command == "stop":
            # As QEMU does: the STOP event first, the reply a little later.
            server.event("STOP")
            time.sleep(0.3)
            return {}
        return handler(command, arguments)

    client_end, server_end = socket.socketpair()
    server = FakeQMPServer(server_end, stop_then_answer)
    qmp = QMPConnection("node1")
    try:
        qmp.connect(client_end, timeout=10)
        server.event("RESUME")
        seen: list[str] = []

        def event_filter(event: dict[str, Any]) -> bool:
            seen.append(event["event"])
            if event["event"] == "RESUME":
                qmp.execute("stop", timeout=10)
                return False
            return event["event"] == "STOP"

        assert qmp.wait_for_event(event_filter, timeout=20)["event"] == "STOP"
        assert seen == ["RESUME", "STOP"]
    finally:
        qmp.close()
        server_end.close()
