"""The Machine API on two booted tiny guests (shared by the whole module).

The module runs once per start-script shape: the fast one, and NixOS's of
2026 (SeaBIOS, a qcow2 root disk, shares through virtiofsd); NixOS's 9p
shape boots in tests/tui/test_app_vm.py and the checkpoint tests.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driver.errors import MachineError, RequestedAssertionFailed, ScriptCancelled
from driver.events import MachineState, WaitProgress

if TYPE_CHECKING:
    from conftest import VMNetwork

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module", params=["fast", "nixos-virtiofs"])
def guest_shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_boot_states(two_nodes: VMNetwork) -> None:
    for name in ("client", "server"):
        machine = two_nodes[name]
        assert machine.is_up()
        states = [event.state for event in two_nodes.states(name)]
        assert states[0] == MachineState.CREATED
        assert MachineState.BOOTING in states
        assert states[-1] == MachineState.CONNECTED
        # The pid is QEMU's own.
        assert machine.pid is not None
        assert Path(f"/proc/{machine.pid}/exe").resolve().name.startswith("qemu-system")
        assert two_nodes.states(name)[-1].pid == machine.pid


def test_execute_semantics(two_nodes: VMNetwork) -> None:
    client = two_nodes["client"]
    assert client.execute("true") == (0, "")
    assert client.execute("echo hi; exit 3") == (3, "hi\n")
    assert client.execute("false; echo unreached") == (1, "")
    assert client.execute("printf 'x\\ny'") == (0, "x\ny")
    assert client.execute("echo 'syntax") [0] == 2
    # Guest-side timeout.
    assert client.execute("sleep 10", timeout=1) == (124, "")
    # check_output=False returns at once and does not desync what follows.
    assert client.execute("echo skipped", check_output=False) == (-2, "")
    assert client.execute("echo next") == (0, "next\n")
    assert client.execute("echo out; exit 4", check_return=False) == (-1, "out\n")
    # Only stdout is captured; stderr goes to the serial console.
    assert client.execute("echo to-stderr-xyz >&2; echo to-stdout") == (0, "to-stdout\n")


def test_succeed_and_fail(two_nodes: VMNetwork) -> None:
    client = two_nodes["client"]
    assert client.succeed("echo a", "echo b") == "a\nb\n"
    assert client.succeed("hostname") == "client\n"
    with pytest.raises(RequestedAssertionFailed, match=r"command `exit 7` failed \(exit code 7\)"):
        client.succeed("exit 7")
    assert client.fail("echo nope; false") == "nope\n"
    with pytest.raises(RequestedAssertionFailed, match="command `true` unexpectedly succeeded"):
        client.fail("true")


def test_log_blocks_are_nixos_style(two_nodes: VMNetwork) -> None:
    from driver.events import BlockOpened

    client = two_nodes["client"]
    client.succeed("echo logged")
    titles = [e.title for e in two_nodes.events if isinstance(e, BlockOpened) and e.machine == "client"]
    assert "must succeed: echo logged" in titles
    assert "waiting for the VM to finish booting" in titles


def test_waits(two_nodes: VMNetwork) -> None:
    client = two_nodes["client"]
    client.succeed("rm -f /tmp/later; (sleep 2; touch /tmp/later) >/dev/null 2>&1 &")
    client.wait_for_file("/tmp/later", timeout=120)
    progress = [e for e in two_nodes.events if isinstance(e, WaitProgress) and e.what == "waiting for file '/tmp/later'"]
    assert progress and progress[-1].attempts >= 2
    assert client.wait_until_succeeds("test -e /tmp/later && echo there", timeout=60) == "there\n"
    client.succeed("(sleep 1; rm /tmp/later) >/dev/null 2>&1 &")
    client.wait_until_fails("test -e /tmp/later", timeout=60)
    with pytest.raises(RequestedAssertionFailed, match="client: waiting for file '/nonexistent': action timed out"):
        client.wait_for_file("/nonexistent", timeout=1)


def test_ports_and_unix_sockets(two_nodes: VMNetwork) -> None:
    server = two_nodes["server"]
    server.succeed("nc -l -k 4321 >/dev/null 2>&1 </dev/null & echo $! > /tmp/nc.pid")
    server.wait_for_open_port(4321, timeout=60)
    two_nodes["client"].wait_for_open_port(4321, addr="server", timeout=60)
    server.succeed("kill $(cat /tmp/nc.pid)")
    server.wait_for_closed_port(4321, timeout=60)
    server.succeed("nc -lkU /tmp/test.sock >/dev/null 2>&1 </dev/null &")
    server.wait_for_open_unix_socket("/tmp/test.sock", timeout=60)


def test_vlan_traffic_between_nodes(two_nodes: VMNetwork) -> None:
    client, server = two_nodes["client"], two_nodes["server"]
    assert "192.168.1.2" in server.succeed("ip -4 addr show dev eth1")
    client.succeed("ping -c 1 -W 10 server")
    # -k: the port probe of wait_for_open_port is a connection too.
    server.succeed("rm -f /tmp/received; nc -lk 5555 > /tmp/received 2>/dev/null </dev/null &")
    server.wait_for_open_port(5555, timeout=60)
    client.succeed("echo over-the-vlan | nc -N server 5555")
    server.wait_until_succeeds("grep -q over-the-vlan /tmp/received", timeout=60)


def test_block_and_unblock(two_nodes: VMNetwork) -> None:
    client, server = two_nodes["client"], two_nodes["server"]
    client.succeed("ping -c 1 -W 10 server")
    server.block()
    try:
        client.fail("ping -c 1 -W 2 server")
    finally:
        server.unblock()
    client.wait_until_succeeds("ping -c 1 -W 2 server", timeout=60)


def test_console(two_nodes: VMNetwork) -> None:
    client = two_nodes["client"]
    client.succeed("echo console-marker-123 > /dev/ttyS0")
    client.wait_for_console_text(r"console-marker-\d+", timeout=60)
    assert "console-marker-123" in client.get_console_log()
    with pytest.raises(RequestedAssertionFailed):
        client.wait_for_console_text("never-printed-text", timeout=0.5)
    # Typed into the serial port, read by the guest.
    client.succeed("rm -f /tmp/typed; (head -n 1 /dev/ttyS0 > /tmp/typed) >/dev/null 2>&1 &")
    client.sleep(0.5)
    client.send_console("typed-on-serial\n")
    client.wait_until_succeeds("grep -q typed-on-serial /tmp/typed", timeout=60)


def test_monitor_and_qmp(two_nodes: VMNetwork, guest_shape: str) -> None:
    client = two_nodes["client"]
    assert client.send_monitor_command("info status").strip() == "VM status: running"
    assert client.qmp_client is not None
    assert client.qmp_client.execute("query-status") == {"status": "running", "singlestep": False, "running": True}
    client.send_monitor_command("stop")
    event = client.wait_for_qmp_event(lambda e: e["event"] == "STOP", timeout=60)
    assert event["event"] == "STOP"
    client.send_monitor_command("cont")
    client.wait_for_qmp_event(lambda e: e["event"] == "RESUME", timeout=60)
    assert client.succeed("echo alive") == "alive\n"
    client.send_chars("ab!\n")  # keys reach the (absent) keyboard without error
    if guest_shape == "fast":
        with pytest.raises(MachineError, match="client: screendump failed: .*no console"):
            client.screenshot("nothing")
    else:
        # A NixOS VM keeps QEMU's default VGA display (no -nodefaults).
        client.screenshot("nixos-vga")
        assert (client.out_dir / "nixos-vga.png").read_bytes().startswith(b"\x89PNG")


def test_forward_port(two_nodes: VMNetwork) -> None:
    import socket

    server = two_nodes["server"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    server.forward_port(host_port, 7777)
    # A loop: the probe of wait_for_open_port takes one connection.
    server.succeed("(while :; do echo from-guest | nc -l 7777; done) >/dev/null 2>&1 </dev/null &")
    server.wait_for_open_port(7777, timeout=60)
    # The guest's nc restarts after every connection (the probe's too):
    # a connection that lands in that gap is closed at once; try again.
    for _attempt in range(100):
        with socket.create_connection(("127.0.0.1", host_port), timeout=60) as connection:
            line = connection.makefile().readline()
        if line:
            break
        time.sleep(0.1)
    assert line == "from-guest\n"


def test_copy_files(two_nodes: VMNetwork, tmp_path: Path) -> None:
    client = two_nodes["client"]
    source = tmp_path / "hello.txt"
    source.write_bytes(b"hello\x00binary\n")
    client.copy_from_host(str(source), "/root/deep/dir/hello.txt")
    assert client.succeed("od -c /root/deep/dir/hello.txt | head -1").split()[1:4] == ["h", "e", "l"]
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_text("in a tree")
    client.copy_from_host(str(tree), "/root/tree")
    assert client.succeed("cat /root/tree/sub/file") == "in a tree"

    client.copy_from_host_via_shell(str(source), "/root/via-shell/hello.txt")
    assert client.succeed("cmp /root/via-shell/hello.txt /root/deep/dir/hello.txt; echo same") == "same\n"

    client.succeed("mkdir -p /root/result && echo produced > /root/result/out.txt")
    client.copy_from_machine("/root/result", "from-vm")
    assert (client.out_dir / "from-vm" / "result" / "out.txt").read_text() == "produced\n"
    client.copy_from_vm("/root/deep/dir/hello.txt")
    assert (client.out_dir / "hello.txt").read_bytes() == b"hello\x00binary\n"


def test_cancel_leaves_a_usable_channel(two_nodes: VMNetwork) -> None:
    server = two_nodes["server"]
    cancel = two_nodes.cancel_event
    assert cancel is not None
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        with pytest.raises(ScriptCancelled):
            server.succeed("sleep 3")
    finally:
        timer.join()
        cancel.clear()
    # The stale reply of the cancelled command is skipped.
    assert server.succeed("echo recovered") == "recovered\n"
    with pytest.raises(ScriptCancelled):
        cancel.set()
        try:
            server.wait_for_file("/never", timeout=600)
        finally:
            cancel.clear()


@pytest.mark.parametrize("guest_timeout", [None, 300])
def test_a_cancelled_command_is_killed_in_the_guest(two_nodes: VMNetwork, guest_timeout: int | None) -> None:
    server = two_nodes["server"]
    cancel = two_nodes.cancel_event
    assert cancel is not None
    # A tree of processes (a subshell and its sleep) that would run 100 s
    # and then leave a file behind.
    command = "(sleep 100; touch /root/should-not-exist) & sleep 100; touch /root/should-not-exist"
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        with pytest.raises(ScriptCancelled):
            server.succeed(command, timeout=guest_timeout)
    finally:
        timer.join()
        cancel.clear()
    started = time.monotonic()
    # Without the kill this would wait behind the 100 s command.
    assert server.succeed("echo free") == "free\n"
    assert time.monotonic() - started < 20
    server.succeed("! pgrep -x sleep")  # the whole tree is gone
    time.sleep(0.5)
    server.fail("test -e /root/should-not-exist")


def test_parallel_callers_do_not_interleave(two_nodes: VMNetwork) -> None:
    client = two_nodes["client"]
    results: dict[int, str] = {}

    def worker(n: int) -> None:
        results[n] = client.succeed(f"echo worker-{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: f"worker-{n}\n" for n in range(8)}


def test_spare_shell_channels_exist(two_nodes: VMNetwork) -> None:
    client = two_nodes["client"]
    for n in (1, 2, 3):
        assert os.path.exists(client.shell_socket_path(n))
    assert client.succeed("ls /dev/hvc1 /dev/hvc2 /dev/hvc3") == "/dev/hvc1\n/dev/hvc2\n/dev/hvc3\n"
