"""HMP, QEMU's human monitor, over the `monitor` UNIX socket, and its formats.

The driver listens on `<state>/monitor` and QEMU connects to it
(`-monitor unix:<path>`).  HMP is line based: send `<command>\\n`, read until
the `(qemu) ` prompt.  QEMU echoes every typed character with cursor
movement escapes; `send` drops that echo line and returns the command's
output alone, with `\\n` line ends.

Also here, because they are the formats of two HMP commands: the key names
`sendkey` takes for characters (US layout, as the NixOS driver maps them), and
the conversion of a `screendump` PPM into a PNG in pure Python (no netpbm).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from typing import Callable

from driver.errors import MachineError
from driver.guarded_socket import GuardedSocket

PROMPT = b"(qemu) "
DEFAULT_TIMEOUT = 300.0


def clean_reply(raw: bytes) -> str:
    """The output of one HMP command: without the echo line, `\\n` line ends."""
    text = raw.decode(errors="replace")
    if text.endswith(PROMPT.decode()):
        text = text[: -len(PROMPT)]
    _echo, newline, rest = text.partition("\r\n")
    if not newline:
        # No line break at all: the echo alone, no output.
        return ""
    return rest.replace("\r\n", "\n")


class Monitor(GuardedSocket):
    """One HMP connection.  Thread safe: a lock serialises commands."""

    channel = "monitor"

    def __init__(
        self,
        sock: socket.socket,
        machine: str,
        *,
        is_dead: Callable[[], str | None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(sock, machine, is_dead=is_dead, cancelled=cancelled)
        self._lock = threading.Lock()
        # Prompts still owed by QEMU for commands whose caller stopped
        # waiting: skipped before the next command's reply is read.
        self._owed_prompts = 0

    def _read_prompt(self, deadline: float | None, what: str, cancellable: bool) -> bytes:
        """Read up to and including the next prompt; return what came before."""
        while True:
            index = self._buffer.find(PROMPT)
            if index >= 0:
                reply = bytes(self._buffer[: index + len(PROMPT)])
                del self._buffer[: index + len(PROMPT)]
                return reply
            self._fill(deadline, what, cancellable)

    def _no_answer(self, what: str) -> str:
        return f"{self.machine}: the QEMU monitor did not answer while {what}"

    def wait_for_prompt(self, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        """Wait for the greeting's prompt after QEMU connected; returns the greeting."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            raw = self._read_prompt(deadline, "waiting for the QEMU monitor", cancellable=True)
        return raw[: -len(PROMPT)].decode(errors="replace").replace("\r\n", "\n")

    def send(self, command: str, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        """Run one HMP command and return its output."""
        if "\n" in command:
            raise MachineError(f"{self.machine}: a monitor command must be one line: {command!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        what = f"running monitor command `{command}`"
        with self._lock:
            while self._owed_prompts:
                self._read_prompt(deadline, what, cancellable=True)
                self._owed_prompts -= 1
            # Not cancellable: half a command line would prefix the next one.
            self._send_all(f"{command}\n".encode(), deadline, what, cancellable=False)
            self._owed_prompts += 1
            raw = self._read_prompt(deadline, what, cancellable=True)
            self._owed_prompts -= 1
        return clean_reply(raw)


# -- sendkey: characters to QEMU key names ----------------------------------------

# Keys of a US layout that need a name of their own (or shift): QEMU's
# `sendkey` knows letters and digits by name and other keys by scancode.
_SHIFTED_DIGITS = "!@#$%^&*()"
_PUNCTUATION = {
    # character: (scancode, shifted)
    "-": (0x0C, False), "_": (0x0C, True),
    "=": (0x0D, False), "+": (0x0D, True),
    "[": (0x1A, False), "{": (0x1A, True),
    "]": (0x1B, False), "}": (0x1B, True),
    ";": (0x27, False), ":": (0x27, True),
    "'": (0x28, False), '"': (0x28, True),
    "`": (0x29, False), "~": (0x29, True),
    "\\": (0x2B, False), "|": (0x2B, True),
    ",": (0x33, False), "<": (0x33, True),
    ".": (0x34, False), ">": (0x34, True),
    "/": (0x35, False), "?": (0x35, True),
}


def _build_key_table() -> dict[str, str]:
    table = {" ": "spc", "\n": "ret", "\t": "tab"}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        table[letter.upper()] = f"shift-{letter}"
    # `!` is shift-1, whose scancode is 0x02, and so on up to `)` (0x0B).
    for offset, char in enumerate(_SHIFTED_DIGITS):
        table[char] = f"shift-0x{offset + 2:02X}"
    for char, (code, shifted) in _PUNCTUATION.items():
        table[char] = f"{'shift-' if shifted else ''}0x{code:02X}"
    return table


KEY_FOR_CHAR: dict[str, str] = _build_key_table()


def key_name(key: str) -> str:
    """The `sendkey` name for a character; other strings (`ctrl-alt-delete`) pass through."""
    return KEY_FOR_CHAR.get(key, key)


# -- screendump: PPM to PNG, without external tools ---------------------------------


def ppm_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, offset of the pixels) of a binary PPM (P6) with maxval 255.

    ValueError for anything else: QEMU's screendump writes only this kind.
    """
    if not data.startswith(b"P6"):
        raise ValueError("not a binary PPM (P6) image")
    values: list[int] = []
    position = 2  # after the magic
    while len(values) < 3:
        while position < len(data) and data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":
            while position < len(data) and data[position] not in b"\r\n":
                position += 1
            continue
        start = position
        while position < len(data) and data[position : position + 1].isdigit():
            position += 1
        if start == position:
            raise ValueError("malformed PPM header")
        values.append(int(data[start:position]))
    width, height, maxval = values
    if maxval != 255:
        raise ValueError(f"unsupported PPM depth (maxval {maxval})")
    # Exactly one whitespace byte separates the header from the pixels.
    return width, height, position + 1


def ppm_to_png(ppm: bytes) -> bytes:
    """Convert a binary PPM (P6, as QEMU's screendump writes) to a PNG."""
    width, height, offset = ppm_header(ppm)
    row_size = width * 3
    pixels = ppm[offset : offset + row_size * height]
    if len(pixels) != row_size * height:
        raise ValueError("truncated PPM image")
    # Filter type 0 (none) in front of every row.
    raw = b"".join(
        b"\x00" + pixels[row * row_size : (row + 1) * row_size] for row in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
