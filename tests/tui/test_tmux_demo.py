"""`vmtui demo` in a real terminal (tmux): it starts, the consoles fill, quitting ends every VM.

vmtui runs with a TMPDIR of its own, which must be empty again once it has
exited, however it exited (quit, SIGTERM, Ctrl-C).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

ROOT = Path(__file__).resolve().parents[2]
VMTUI = Path(sys.executable).parent / "vmtui"
DEADLINE = 300.0  # bounds a hang on a loaded machine; not a speed assertion


class Terminal:
    """One tmux server of our own (its own socket), one window running a command."""

    def __init__(self, command: str, tmp_path: Path) -> None:
        self.socket = f"vmtui-test-{uuid.uuid4().hex[:8]}"
        # tmux keeps its sockets in $TMUX_TMPDIR/tmux-<uid>, /tmp by default.
        self.env = {**os.environ, "TMUX_TMPDIR": str(tmp_path)}
        self.status_file = tmp_path / "exit-status"
        # The test process may carry COLUMNS/LINES (80x24) from pytest's own
        # terminal handling; the app must see the real window size instead.
        shell = f"unset COLUMNS LINES; {command}; echo $? > {self.status_file}; sleep 600"
        self.tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "46", "-c", str(tmp_path), shell)
        # Pin the size: with no client attached tmux may fall back to 80x24.
        self.tmux("set-option", "-t", "t", "window-size", "manual")
        self.tmux("resize-window", "-t", "t", "-x", "160", "-y", "46")
        self.shell_pid = int(self.tmux("display", "-p", "-t", "t", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True, env=self.env
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        give_up = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > give_up:
                size = self.tmux("display", "-p", "-t", "t", "#{window_width}x#{window_height}").strip()
                raise AssertionError(f"gave up waiting for {what}; screen ({size}):\n{self.screen()}")
            time.sleep(0.2)

    def exit_status(self) -> int | None:
        text = self.status_file.read_text().strip() if self.status_file.exists() else ""
        return int(text) if text else None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)

    def close_leaving_no_vm(self) -> None:
        """Close, and kill any QEMU or switch vmtui left: only if the test already failed, never leak a VM."""
        vms = {pid for pid, name in descendants(self.shell_pid).items() if name.startswith(("qemu", "vde_switch"))}
        self.close()
        for pid in vms:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> dict[int, str]:
    """pid -> command name of every process below `pid`."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
        names[int(entry.name)] = name
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = names[child]
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z)" not in Path(f"/proc/{pid}/stat").read_text()


@pytest.fixture
def run_tmp() -> Iterator[Path]:
    """vmtui's TMPDIR (short: VM sockets live in it)."""
    path = Path(tempfile.mkdtemp(prefix="vt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def demo(tmp_path: Path, run_tmp: Path) -> Iterator[Terminal]:
    env = f"XDG_STATE_HOME={tmp_path / 'state'} XDG_CONFIG_HOME={tmp_path / 'config'} TMPDIR={run_tmp}"
    # `env -u`: the app must size itself from the tmux window, whatever
    # COLUMNS/LINES the test process (and so the tmux server) carries.
    terminal = Terminal(f"env -u COLUMNS -u LINES -u XDG_RUNTIME_DIR {env} {VMTUI} demo", tmp_path)
    try:
        yield terminal
    finally:
        terminal.close_leaving_no_vm()


def vm_processes(terminal: Terminal) -> dict[int, str]:
    return {pid: name for pid, name in descendants(terminal.shell_pid).items() if name.startswith(("qemu", "vde_switch"))}


def files_left(run_tmp: Path) -> list[str]:
    return sorted(str(p.relative_to(run_tmp)) for p in run_tmp.rglob("*"))


def booted(terminal: Terminal) -> bool:
    screen = terminal.screen()
    return "client  ● connected" in screen and "server  ● connected" in screen and "vmtui-init" in screen


def test_demo_runs_in_a_real_terminal_and_quitting_ends_every_vm(demo: Terminal, run_tmp: Path) -> None:
    demo.wait_for(lambda: booted(demo), "both nodes connected, consoles filling")
    assert files_left(run_tmp) != []  # the VM state directory, while the VMs run
    demo.wait_for(lambda: "✓ passed" in demo.screen(), "the demo test to pass")
    screen = demo.screen()
    assert "todos.py" in screen and "Timeline" in screen and "REPL" in screen
    vms = vm_processes(demo)
    assert sum(name.startswith("qemu") for name in vms.values()) == 2

    demo.keys("q")
    demo.wait_for(lambda: demo.exit_status() is not None, "vmtui to exit")
    assert demo.exit_status() == 0
    assert not [pid for pid in vms if alive(pid)], "QEMU or vde_switch left running after quitting"
    assert files_left(run_tmp) == []


def test_sigterm_ends_every_vm(demo: Terminal, run_tmp: Path) -> None:
    demo.wait_for(lambda: booted(demo), "both nodes connected")
    vms = vm_processes(demo)
    vmtui = next(pid for pid, name in descendants(demo.shell_pid).items() if name == "vmtui")
    os.kill(vmtui, signal.SIGTERM)
    demo.wait_for(lambda: demo.exit_status() is not None, "vmtui to exit on SIGTERM")
    assert not [pid for pid in vms if alive(pid)], "QEMU or vde_switch left running after SIGTERM"
    assert files_left(run_tmp) == []


def test_ctrl_c_quits_and_ends_every_vm(demo: Terminal, run_tmp: Path) -> None:
    demo.wait_for(lambda: booted(demo), "both nodes connected")
    vms = vm_processes(demo)
    demo.keys("C-c")
    demo.wait_for(lambda: demo.exit_status() is not None, "vmtui to exit on Ctrl-C")
    assert not [pid for pid in vms if alive(pid)], "QEMU or vde_switch left running after Ctrl-C"
    assert files_left(run_tmp) == []


VIRTIOFS_SPEC = """\
name = "virtiofs"
script = "test.py"

[nodes.machine]
shape = "nixos-virtiofs"
"""


def test_quitting_ends_the_virtiofsd_processes_of_nixos_shaped_nodes(tmp_path: Path) -> None:
    """Every child of a start script (virtiofsd here), not just QEMU, ends when the TUI quits."""
    marker = tmp_path / "script-done"
    (tmp_path / "test.py").write_text(f'machine.succeed("true")\nopen({str(marker)!r}, "w").close()\n')
    (tmp_path / "virtiofs.toml").write_text(VIRTIOFS_SPEC)
    env = f"XDG_STATE_HOME={tmp_path / 'state'} XDG_CONFIG_HOME={tmp_path / 'config'}"
    terminal = Terminal(f"env -u COLUMNS -u LINES {env} {VMTUI} {tmp_path / 'virtiofs.toml'}", tmp_path)
    children: dict[int, str] = {}
    try:
        terminal.wait_for(marker.exists, "the script to pass on the virtiofs node")
        children = {pid: name for pid, name in descendants(terminal.shell_pid).items()
                    if name.startswith(("qemu", "virtiofsd", "vde_switch"))}
        assert sorted(set(children.values())) == ["qemu-system-x86", "vde_switch", "virtiofsd"], children
        terminal.keys("q")
        terminal.wait_for(lambda: terminal.exit_status() is not None, "vmtui to exit")
        assert not [pid for pid in children if alive(pid)], "a start script's child was left running"
    finally:
        terminal.close()
        for pid in children:  # only if the test already failed: never leak a process
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
