"""HMP client against a fake monitor; sendkey names; the PPM to PNG writer."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from driver.errors import MachineDied, ScriptCancelled
from driver.monitor import KEY_FOR_CHAR, Monitor, clean_reply, key_name, ppm_to_png

# What QEMU 7.2 really sends for `info status` on a socket monitor: the
# echo, redrawn character by character, then the output and the prompt.
RECORDED_INFO_STATUS = (
    b"i\x1b[K\x1b[Din\x1b[K\x1b[D\x1b[Dinf\x1b[K\x1b[D\x1b[D\x1b[Dinfo\x1b[K"
    b"\x1b[D\x1b[D\x1b[D\x1b[Dinfo status\x1b[K\r\nVM status: running\r\n(qemu) "
)
GREETING = b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) "


class FakeMonitor:
    """Answers each command line with `answer(command)` + echo + prompt."""

    def __init__(self, sock: socket.socket, answer: Callable[[str], bytes | None]) -> None:
        self.sock = sock
        self.answer = answer
        self.commands: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.sendall(GREETING)
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = line.decode()
                self.commands.append(command)
                output = self.answer(command)
                if output is None:
                    continue
                self.sock.sendall(command.encode() + b"\x1b[K\r\n" + output + b"(qemu) ")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    host_end, qemu_end = socket.socketpair()
    yield host_end, qemu_end
    host_end.close()
    qemu_end.close()


def test_clean_reply_of_recorded_qemu_output() -> None:
    assert clean_reply(RECORDED_INFO_STATUS) == "VM status: running\n"
    assert clean_reply(b"sendkey a\x1b[K\r\n(qemu) ") == ""


def test_greeting_and_commands(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, qemu_end = pair
    FakeMonitor(qemu_end, lambda command: b"line 1\r\nline 2\r\n")
    monitor = Monitor(host_end, "node1", is_dead=lambda: None)
    assert "QEMU 7.2.22 monitor" in monitor.wait_for_prompt(5)
    assert monitor.send("info network") == "line 1\nline 2\n"
    assert monitor.send("sendkey a") == "line 1\nline 2\n"


def test_cancelled_command_does_not_desync_the_next(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, qemu_end = pair
    release_slow = threading.Event()
    slow_answered = threading.Event()

    def answer(command: str) -> bytes | None:
        if command == "slow":
            # QEMU answers late, after the host gave up waiting; like QEMU,
            # still in order: before the reply to the next command.
            def late() -> None:
                release_slow.wait(5)
                qemu_end.sendall(b"slow\x1b[K\r\nslow output\r\n(qemu) ")
                slow_answered.set()

            threading.Thread(target=late, daemon=True).start()
            return None
        release_slow.set()
        slow_answered.wait(5)
        return f"answer to {command}\r\n".encode()

    FakeMonitor(qemu_end, answer)
    cancel = threading.Event()
    monitor = Monitor(host_end, "node1", is_dead=lambda: None, cancelled=cancel.is_set)
    monitor.wait_for_prompt(5)
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(ScriptCancelled):
        monitor.send("slow")
    cancel.clear()
    assert monitor.send("fast") == "answer to fast\n"


def test_quit_closes_the_connection(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, qemu_end = pair

    def answer(command: str) -> bytes | None:
        qemu_end.shutdown(socket.SHUT_RDWR)
        return None

    FakeMonitor(qemu_end, answer)
    monitor = Monitor(host_end, "node1", is_dead=lambda: None)
    monitor.wait_for_prompt(5)
    with pytest.raises(MachineDied, match="node1"):
        monitor.send("quit")


def test_dead_qemu_is_reported(pair: tuple[socket.socket, socket.socket]) -> None:
    host_end, _qemu_end = pair
    monitor = Monitor(host_end, "node1", is_dead=lambda: "QEMU exited with status 1")
    started = time.monotonic()
    with pytest.raises(MachineDied, match="node1: QEMU exited with status 1"):
        monitor.wait_for_prompt(60)
    assert time.monotonic() - started < 30  # not the 60 s timeout


# -- sendkey names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("a", "a"),
        ("7", "7"),
        ("A", "shift-a"),
        ("Z", "shift-z"),
        ("!", "shift-0x02"),
        ("@", "shift-0x03"),
        (")", "shift-0x0B"),
        ("-", "0x0C"),
        ("_", "shift-0x0C"),
        (":", "shift-0x27"),
        (";", "0x27"),
        ('"', "shift-0x28"),
        ("|", "shift-0x2B"),
        ("?", "shift-0x35"),
        ("/", "0x35"),
        (" ", "spc"),
        ("\n", "ret"),
        ("ctrl-alt-delete", "ctrl-alt-delete"),
        ("alt-f2", "alt-f2"),
    ],
)
def test_key_names(char: str, name: str) -> None:
    assert key_name(char) == name


def test_every_printable_ascii_character_has_a_key() -> None:
    for code in range(0x20, 0x7F):
        char = chr(code)
        assert char.isalnum() and char.islower() or char.isdigit() or char in KEY_FOR_CHAR, char


# -- PPM to PNG -------------------------------------------------------------------------


def decode_png(png: bytes) -> tuple[int, int, bytes]:
    """A minimal PNG reader for 8-bit RGB, filter 0: (width, height, pixels)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position = 8
    chunks: dict[bytes, bytes] = {}
    order: list[bytes] = []
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        payload = png[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + payload
        order.append(kind)
        position += 12 + length
    assert order[0] == b"IHDR" and order[-1] == b"IEND"
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[row * (width * 3 + 1) : (row + 1) * (width * 3 + 1)] for row in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


def test_ppm_to_png_keeps_every_pixel() -> None:
    width, height = 7, 3
    pixels = bytes((x * 37 + y * 91 + c * 13) % 256 for y in range(height) for x in range(width) for c in range(3))
    ppm = b"P6\n# written by a test\n7 3\n255\n" + pixels
    assert decode_png(ppm_to_png(ppm)) == (width, height, pixels)


def test_ppm_header_whitespace_variants() -> None:
    pixels = bytes(range(12))
    assert decode_png(ppm_to_png(b"P6 2 2 255 " + pixels)) == (2, 2, pixels)


@pytest.mark.parametrize(
    "bad",
    [b"P3\n1 1\n255\n0 0 0", b"P6\n2 2\n255\n\x00\x00", b"P6\n1 1\n65535\n\x00" * 6, b"P6\nx"],
)
def test_bad_ppm_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        ppm_to_png(bad)
