"""Edge cases of the backdoor protocol against a scripted fake guest.

The fake speaks the wire format (it answers the sync echo and
`__vmtui_run` lines) and can misbehave on purpose: never print the marker,
split it, die, answer late, restart.
"""

from __future__ import annotations

import base64
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from driver.backdoor import MARKER, Backdoor, ShellRestarted
from driver.errors import BackdoorTimeout, MachineDied, ScriptCancelled

Responder = Callable[["FakeGuest", int, str], None]


class FakeGuest:
    """The guest end of the channel, run on a thread."""

    def __init__(self, sock: socket.socket, respond: Responder | None = None) -> None:
        self.sock = sock
        self.respond = respond or FakeGuest.echo_responder
        self.commands: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> FakeGuest:
        self._thread.start()
        return self

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, request_id: int, status: int, output: bytes = b"", crlf: bool = False) -> None:
        encoded = base64.b64encode(output).decode()
        line = f"VMTUI-REPLY {request_id} {status}" + (f" {encoded}" if output else "")
        self.send(line.encode() + (b"\r\n" if crlf else b"\n"))

    @staticmethod
    def echo_responder(guest: FakeGuest, request_id: int, command: str) -> None:
        guest.reply(request_id, 0, command.encode())

    def _serve(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._handle(line.decode())

    def _handle(self, line: str) -> None:
        if line.startswith("echo VMTUI-READY-"):
            self.send(line.removeprefix("echo ").encode() + b"\n")
        elif line.startswith("__vmtui_run "):
            _, request_id, _timeout, command = shlex.split(line)
            self.commands.append(command)
            self.respond(self, int(request_id), command)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    host_end, guest_end = socket.socketpair()
    yield host_end, guest_end
    host_end.close()
    guest_end.close()


def connected(host_end: socket.socket, guest: FakeGuest, **kwargs: object) -> Backdoor:
    backdoor = Backdoor(host_end, "node1", is_dead=lambda: None, **kwargs)  # type: ignore[arg-type]
    guest.start()
    guest.send(MARKER + b"\n")
    backdoor.wait_for_marker(time.monotonic() + 10)
    return backdoor


def test_round_trip_with_fake(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair
    backdoor = connected(host_end, FakeGuest(guest_end))
    assert backdoor.run("hello") == (0, "hello")


def test_marker_split_across_chunks(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair
    backdoor = Backdoor(host_end, "node1", is_dead=lambda: None)
    guest = FakeGuest(guest_end).start()

    def dribble() -> None:
        for byte in b"boot chatter\n" + MARKER + b"\n":
            guest.send(bytes([byte]))
            time.sleep(0.001)

    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    backdoor.wait_for_marker(time.monotonic() + 10)
    dribbler.join()
    assert backdoor.run("x") == (0, "x")


def test_no_marker_gives_up_at_the_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair
    silences: list[float] = []
    backdoor = Backdoor(host_end, "node1", is_dead=lambda: None)
    with pytest.raises(BackdoorTimeout, match="node1.*root shell did not start"):
        backdoor.wait_for_marker(
            time.monotonic() + 1.0, on_silence=silences.append, silence_interval=0.3
        )
    # The "did not produce any data yet" hook ran while waiting.
    assert silences


def test_qemu_death_while_waiting_for_the_marker(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair
    backdoor = Backdoor(host_end, "node1", is_dead=lambda: "QEMU was killed by signal 9 (SIGKILL)")
    with pytest.raises(MachineDied, match="node1: QEMU was killed by signal 9"):
        backdoor.wait_for_marker(None)


def test_connection_closed_mid_command(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair
    dead = threading.Event()

    def die(guest: FakeGuest, request_id: int, command: str) -> None:
        dead.set()
        guest.sock.shutdown(socket.SHUT_RDWR)

    backdoor = Backdoor(
        host_end, "node1", is_dead=lambda: "QEMU exited with status 1" if dead.is_set() else None
    )
    guest = FakeGuest(guest_end, die).start()
    guest.send(MARKER + b"\n")
    # The installation must succeed first: answer it before dying.
    backdoor.wait_for_marker(time.monotonic() + 10)
    with pytest.raises(MachineDied, match="node1: QEMU exited with status 1 while running `sleep 100`"):
        backdoor.run("sleep 100")


def test_cancel_then_the_next_command_skips_the_stale_reply(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    host_end, guest_end = pair
    cancel = threading.Event()
    late: list[int] = []

    def slow_first(guest: FakeGuest, request_id: int, command: str) -> None:
        if command == "slow":
            late.append(request_id)
            return  # answered later, after the host gave up
        if late:
            guest.reply(late.pop(), 0, b"stale output")
        guest.reply(request_id, 0, command.encode())

    backdoor = connected(host_end, FakeGuest(guest_end, slow_first), cancelled=cancel.is_set)
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(ScriptCancelled):
        backdoor.run("slow")
    cancel.clear()
    assert backdoor.run("fresh") == (0, "fresh")


def test_junk_and_crlf_are_tolerated(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair
    said: list[str] = []

    def noisy(guest: FakeGuest, request_id: int, command: str) -> None:
        guest.send(b"agetty: something on hvc0\r\n")
        guest.reply(request_id, 4, b"out\n", crlf=True)

    backdoor = connected(host_end, FakeGuest(guest_end, noisy), log=said.append)
    assert backdoor.run("x") == (4, "out\n")
    assert any("agetty" in line for line in said)


def test_marker_during_a_command_means_restart(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair

    def reboot(guest: FakeGuest, request_id: int, command: str) -> None:
        if command in ("reboot", "reboot-quiet"):
            guest.send(b"[ 0.0] Linux version ...\n" + MARKER + b"\n")
        else:
            guest.reply(request_id, 0, command.encode())

    backdoor = connected(host_end, FakeGuest(guest_end, reboot))
    with pytest.raises(ShellRestarted, match="node1"):
        backdoor.run("reboot")
    assert not backdoor.ready
    # The marker was consumed already: reconnecting must not wait for another.
    backdoor.wait_for_marker(time.monotonic() + 5)
    assert backdoor.run("after") == (0, "after")
    # With check_return=False a restart is what the caller expected.
    assert backdoor.run("reboot-quiet", check_return=False) == (-1, "")


def test_deadline_on_a_hung_guest(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, guest_end = pair

    def hang(guest: FakeGuest, request_id: int, command: str) -> None:
        pass

    backdoor = connected(host_end, FakeGuest(guest_end, hang))
    with pytest.raises(BackdoorTimeout, match="node1: no answer"):
        backdoor.run("anything", deadline=time.monotonic() + 0.5)
