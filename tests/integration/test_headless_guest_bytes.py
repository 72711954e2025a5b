"""Headless runs of a node that boots through SeaBIOS: the serial log carries text and colours, never escapes.

SeaBIOS (QEMU's default firmware, which NixOS VMs boot through) writes `ESC c`,
`ESC [?7l` and `ESC [2J` before the kernel's first line.  `QEMU_OPTS` puts
`-bios bios-256k.bin` after the tiny guest's `-bios qboot.rom` (the last one
wins).  The guest then prints a title, a clipboard write and a redrawn
progress line.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from test_headless import RUN_LIMIT, assert_nothing_left, write_test

pytestmark = pytest.mark.vm

SCRIPT = r"""start_all()
machine.wait_for_console_text("SeaBIOS")
machine.succeed("printf '\\033]0;guest-title\\007\\033]52;c;Z3Vlc3Q=\\007\\033[31mguest-red\\033[0m\\n50%%\\r100%%\\n' > /dev/ttyS0")
machine.wait_for_console_text("100%")
"""

# A line for a terminal: text, and SGR sequences vmtui wrote itself.
TERMINAL_SAFE = re.compile(r"(?:[^\x00-\x1f\x7f-\x9f]|\x1b\[[0-9;]*m)*")


def run_env(run_tmp: Path) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(run_tmp), "QEMU_OPTS": "-bios bios-256k.bin"}
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def test_serial_lines_in_a_file_are_plain_text(tmp_path: Path) -> None:
    spec = write_test(tmp_path, SCRIPT)
    run_tmp = Path(tempfile.mkdtemp(prefix="vh-", dir="/tmp"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "vmtui", "run", "--headless", str(spec)],
            cwd=tmp_path, env=run_env(run_tmp), capture_output=True, text=True, timeout=RUN_LIMIT,
        )
    finally:
        assert_nothing_left(run_tmp)
        shutil.rmtree(run_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr.splitlines()
    assert any(line.startswith("machine # SeaBIOS (version") for line in log), result.stderr[:2000]
    assert "machine # guest-red" in log and "machine # 100%" in log
    # Not a terminal: the NixOS log format, without a single control character.
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", result.stderr)


def test_serial_lines_on_a_terminal_keep_colours_only(tmp_path: Path) -> None:
    spec = write_test(tmp_path, SCRIPT)
    run_tmp = Path(tempfile.mkdtemp(prefix="vh-", dir="/tmp"))
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "vmtui", "run", "--headless", str(spec)],
            cwd=tmp_path, env=run_env(run_tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
            timeout=RUN_LIMIT,
        )
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
        assert_nothing_left(run_tmp)
        shutil.rmtree(run_tmp, ignore_errors=True)
    output = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    assert process.returncode == 0, output[-3000:]
    lines = output.rstrip("\n").split("\n")
    assert "\x1b[2mmachine # SeaBIOS (version" in output  # dimmed, so the terminal path was taken
    assert "\x1b[2mmachine # \x1b[0;2;31mguest-red\x1b[0;2m\x1b[0m" in lines  # the guest's colour, inside the dim
    assert "\x1b[2mmachine # 100%\x1b[0m" in lines
    bad = [line for line in lines if not TERMINAL_SAFE.fullmatch(line)]
    assert not bad, bad[:5]
