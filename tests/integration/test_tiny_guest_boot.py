"""Boot the built-in tiny guest for real, the way the NixOS driver starts a node.

The start script is run by hand with the driver's extra arguments (monitor,
backdoor chardev on a virtconsole, serial on stdio, QMP, -nographic,
-no-reboot); the test listens on the sockets itself.  Two nodes share VLAN 1
through a real vde_switch.  Every QEMU and switch started here is killed in
teardown, whatever happens.
"""

from __future__ import annotations

import base64
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.guest import HostEntry, TinyGuestImage, build_tiny_guest, write_start_script

pytestmark = pytest.mark.vm

MARKER = b"Spawning backdoor root shell...\n"
# Hang guards, not speed requirements: a loaded machine may be slow.
BOOT_DEADLINE = 300.0
COMMAND_DEADLINE = 120.0
INDEX_HTML = b"<h1>served by the tiny guest</h1>\n"


class HandStartedGuest:
    """One QEMU started from a run-<name>-vm script, with the driver's arguments."""

    def __init__(self, script: Path, state: Path, env: dict[str, str]) -> None:
        state.mkdir(parents=True)
        self.state = state
        self.shared = state.parent / "shared-xchg"
        self.shared.mkdir(exist_ok=True)
        self._listeners = {}
        for name in ("monitor", "shell"):
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(state / name))
            listener.listen(1)
            listener.settimeout(BOOT_DEADLINE)
            self._listeners[name] = listener
        argv = [
            str(script),
            "-monitor", f"unix:{state}/monitor",
            "-chardev", f"socket,id=shell,path={state}/shell",
            "-device", "virtio-serial",
            "-device", "virtconsole,chardev=shell",
            # A spare console, as vmtui adds for its shell panes (/dev/hvc1).
            "-chardev", f"socket,id=tty1,path={state}/tty1,server=on,wait=off",
            "-device", "virtconsole,chardev=tty1",
            "-serial", "stdio",
            "-qmp", f"unix:{state}/qmp,server=on,wait=off",
            "-nographic",
            "-no-reboot",
        ]
        full_env = dict(os.environ, TMPDIR=str(state), USE_TMPDIR="1", SHARED_DIR=str(self.shared))
        full_env.update(env)
        self.serial = bytearray()
        self.proc = subprocess.Popen(
            argv,
            cwd=state,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so teardown can kill QEMU's whole group
        )
        self._reader = threading.Thread(target=self._read_serial, daemon=True)
        self._reader.start()
        self.shell: socket.socket | None = None

    def _read_serial(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):
            self.serial += chunk

    def serial_text(self) -> str:
        return bytes(self.serial).decode(errors="replace")

    def accept_sockets(self) -> None:
        self.shell, _ = self._listeners["shell"].accept()
        self.monitor, _ = self._listeners["monitor"].accept()
        self.shell.settimeout(0.5)

    def wait_for_marker(self) -> None:
        self.accept_sockets()
        received = b""
        deadline = time.monotonic() + BOOT_DEADLINE
        while MARKER not in received:
            assert self.proc.poll() is None, f"QEMU exited before the marker:\n{self.serial_text()}"
            assert time.monotonic() < deadline, f"no marker; shell said {received!r}\n{self.serial_text()}"
            received += self.recv_some()
        assert received.endswith(MARKER), f"output after the marker: {received!r}"

    def recv_some(self) -> bytes:
        assert self.shell is not None
        try:
            chunk = self.shell.recv(4096)
        except socket.timeout:
            return b""
        assert chunk, "backdoor socket closed"
        return chunk

    def run(self, command: str) -> tuple[int, str]:
        """NixOS framing: base64 of stdout on one line, then the status line."""
        assert self.shell is not None
        line = f"bash -c {shlex.quote(command)} | (base64 -w 0; echo); echo ${{PIPESTATUS[0]}}\n"
        self.shell.sendall(line.encode())
        reply = b""
        deadline = time.monotonic() + COMMAND_DEADLINE
        while reply.count(b"\n") < 2:
            assert self.proc.poll() is None, f"QEMU exited:\n{self.serial_text()}"
            assert time.monotonic() < deadline, f"no reply to {command!r}: {reply!r}"
            reply += self.recv_some()
        encoded, status = reply.decode().splitlines()[:2]
        return int(status), base64.b64decode(encoded).decode(errors="replace")

    def succeed(self, command: str) -> str:
        status, out = self.run(command)
        assert status == 0, f"{command!r} exited {status}: {out}"
        return out

    def wait_for_exit(self) -> int:
        return self.proc.wait(timeout=BOOT_DEADLINE)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for listener in self._listeners.values():
            listener.close()
        if self.shell is not None:
            self.shell.close()


@pytest.fixture(scope="session")
def tiny_image() -> TinyGuestImage:
    return build_tiny_guest()


@pytest.fixture(scope="module")
def network(tiny_image: TinyGuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, HandStartedGuest]]:
    """client (node 1) and server (node 2) on VLAN 1, both booted to the marker."""
    root = tmp_path_factory.mktemp("net")
    switch = subprocess.Popen(
        ["vde_switch", "--sock", str(root / "vde1.ctl"), "--dirmode", "0700", "--hub"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    guests: dict[str, HandStartedGuest] = {}
    try:
        _wait_for_switch(switch)
        hosts = [HostEntry("client", 1, 1), HostEntry("server", 2, 1)]
        extras = {
            "client": {},
            "server": {
                "files": {"/srv/www/index.html": INDEX_HTML},
                "boot_script": "httpd -p 80 -h /srv/www\necho boot hook done\n",
            },
        }
        for name, number in (("client", 1), ("server", 2)):
            script = write_start_script(
                root / "out", name=name, node_number=number, vlans=[1], hosts=hosts, image=tiny_image, **extras[name]
            )
            guests[name] = HandStartedGuest(
                script, root / f"vm-state-{name}", {"QEMU_VDE_SOCKET_1": str(root / "vde1.ctl")}
            )
        for guest in guests.values():
            guest.wait_for_marker()
        yield guests
    finally:
        for guest in guests.values():
            guest.kill()
        os.killpg(switch.pid, signal.SIGKILL)
        switch.wait()


def _wait_for_switch(switch: subprocess.Popen) -> None:
    """vde_switch answers `showinfo` with '1000 Success' once it serves its socket."""
    assert switch.stdin is not None and switch.stdout is not None
    switch.stdin.write(b"showinfo\n")
    switch.stdin.flush()
    for line in iter(switch.stdout.readline, b""):
        if b"1000 Success" in line:
            return
    raise AssertionError("vde_switch did not start")


def test_backdoor_returns_output_and_status(network: dict[str, HandStartedGuest]) -> None:
    server = network["server"]
    assert server.run("echo hi") == (0, "hi\n")
    assert server.run("echo -n partial; exit 3") == (3, "partial")
    assert server.succeed("echo hi | base64 -w 0") == "aGkK"
    assert server.succeed("pwd; echo $HOME $USER") == "/tmp\n/root root\n"


def test_guest_has_the_tools_tests_use(network: dict[str, HandStartedGuest]) -> None:
    server = network["server"]
    server.succeed("for tool in bash nc timeout base64 setsid stty httpd poweroff ip; do command -v $tool; done")
    assert server.run("nc -h 2>&1 | grep -q Zero-I/O")[0] == 0, "nc must support -z"
    assert server.run("timeout 1 sleep 30")[0] == 124, "timeout must exit 124 as in NixOS"
    assert server.succeed("id -un; stat -c %a /root") == "root\n700\n"


def test_hostname_addresses_and_hosts_file(network: dict[str, HandStartedGuest]) -> None:
    client = network["client"]
    assert client.succeed("hostname") == "client\n"
    hosts = client.succeed("cat /etc/hosts")
    assert "192.168.1.1 client" in hosts and "192.168.1.2 server" in hosts
    addresses = client.succeed("ip -o addr show")
    assert "inet 192.168.1.1/24" in addresses
    assert "inet6 2001:db8:1::1/64" in addresses
    assert "eth0    inet 10.0.2.15/24" in addresses


def test_nodes_reach_each_other_on_the_vlan(network: dict[str, HandStartedGuest]) -> None:
    client = network["client"]
    # The server's boot hook starts httpd in the background: wait for it (bounded).
    client.succeed("for i in $(seq 300); do nc -z -w 2 server 80 && exit 0; sleep 0.2; done; exit 1")
    assert client.succeed("wget -q -O - http://server/index.html").encode() == INDEX_HTML
    client.succeed("ping -c 1 -W 10 192.168.1.2")
    client.succeed("ping6 -c 1 -W 10 2001:db8:1::2")
    assert client.run("nc -z -w 2 server 81")[0] != 0
    assert "boot hook done" in network["server"].serial_text()


def test_shared_directories_are_mounted(network: dict[str, HandStartedGuest]) -> None:
    server = network["server"]
    mounts = server.succeed("mount")
    assert "shared on /tmp/shared type 9p" in mounts
    assert "xchg on /tmp/xchg type 9p" in mounts
    (server.shared / "from-host.txt").write_text("hello guest\n")
    assert server.succeed("cat /tmp/shared/from-host.txt") == "hello guest\n"
    server.succeed("echo hello host > /tmp/xchg/from-guest.txt")
    assert (server.state / "xchg" / "from-guest.txt").read_text() == "hello host\n"


def test_orphans_are_reaped(network: dict[str, HandStartedGuest]) -> None:
    server = network["server"]
    # The orphan's parent exits at once, so PID 1 inherits it; it must be
    # reaped (its /proc entry vanishes) rather than linger as a zombie.
    pid = server.succeed("sh -c 'sleep 0.5 >/dev/null 2>&1 & echo $!'").strip()
    server.succeed(f"for i in $(seq 600); do [ -e /proc/{pid} ] || exit 0; sleep 0.1; done; exit 1")


def test_shell_on_a_spare_console(network: dict[str, HandStartedGuest]) -> None:
    server = network["server"]
    pane = socket.socket(socket.AF_UNIX)
    pane.connect(str(server.state / "tty1"))
    try:
        server.succeed("setsid -c bash -il </dev/hvc1 >/dev/hvc1 2>&1 &")
        pane.sendall(b"echo $((6 * 7))-$(tty)\n")
        seen = b""
        pane.settimeout(0.5)
        deadline = time.monotonic() + COMMAND_DEADLINE
        while b"42-/dev/hvc1" not in seen:
            assert time.monotonic() < deadline, f"no answer from the shell pane: {seen!r}"
            try:
                seen += pane.recv(4096)
            except socket.timeout:
                pass
        assert b"\x1b[" in seen, "the interactive prompt should be coloured"
        # The backdoor is untouched by the pane.
        assert server.succeed("echo still fine") == "still fine\n"
    finally:
        pane.close()


def hmp(guest: HandStartedGuest, command: str) -> str:
    """One HMP command on the monitor socket; returns what QEMU printed."""
    guest.monitor.settimeout(COMMAND_DEADLINE)
    if not getattr(guest, "monitor_greeted", False):
        _read_until_prompt(guest.monitor)
        guest.monitor_greeted = True
    guest.monitor.sendall(command.encode() + b"\n")
    return _read_until_prompt(guest.monitor)


def _read_until_prompt(monitor: socket.socket) -> str:
    received = b""
    while not received.endswith(b"(qemu) "):
        chunk = monitor.recv(4096)
        assert chunk, "monitor closed"
        received += chunk
    return received.decode(errors="replace")


def test_snapshots_work_once_the_shares_are_unmounted(network: dict[str, HandStartedGuest]) -> None:
    server = network["server"]
    assert "Migration is disabled" in hmp(server, "savevm blocked")
    server.succeed("vmtui-shares unmount")
    try:
        assert "Error" not in hmp(server, "savevm checkpoint")
        assert "checkpoint" in hmp(server, "info snapshots")
    finally:
        server.succeed("vmtui-shares mount")
    assert server.succeed("grep -c ' 9p ' /proc/mounts") == "2\n"


def test_poweroff_and_reboot_end_qemu(network: dict[str, HandStartedGuest]) -> None:
    server, client = network["server"], network["client"]
    assert server.shell is not None and client.shell is not None
    server.shell.sendall(b"poweroff\n")
    assert server.wait_for_exit() == 0
    client.shell.sendall(b"reboot\n")  # -no-reboot turns the reset into an exit
    assert client.wait_for_exit() == 0
    assert "reboot: Power down" in server.serial_text()


def test_nobackdoor_guest_never_prints_the_marker(tiny_image: TinyGuestImage, tmp_path: Path) -> None:
    script = write_start_script(tmp_path / "out", name="mute", node_number=1, vlans=[], hosts=[], image=tiny_image)
    guest = HandStartedGuest(script, tmp_path / "vm-state-mute", {"QEMU_KERNEL_PARAMS": "vmtui.nobackdoor"})
    try:
        guest.accept_sockets()
        deadline = time.monotonic() + BOOT_DEADLINE
        while "not starting the backdoor" not in guest.serial_text():
            assert guest.proc.poll() is None, guest.serial_text()
            assert time.monotonic() < deadline, guest.serial_text()
            time.sleep(0.1)
        assert guest.recv_some() == b""
    finally:
        guest.kill()
