"""The backdoor framing against a real bash on the other end of a socketpair.

The guest side of the protocol is bash, so the helper function is tested
against a real (host) bash started the way a guest starts its backdoor:
print the marker, then read commands from the channel.  No QEMU involved.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from driver.backdoor import _HELPER, Backdoor, command_line, format_timeout

GUEST_SHELL = "echo 'some boot noise'; echo 'Spawning backdoor root shell...'; exec bash --norc"


@pytest.fixture(scope="module")
def shell() -> Iterator[Backdoor]:
    host_end, guest_end = socket.socketpair()
    bash = subprocess.Popen(
        ["bash", "--norc", "-c", GUEST_SHELL],
        stdin=guest_end,
        stdout=guest_end,
        stderr=subprocess.DEVNULL,
        cwd="/",
    )
    guest_end.close()
    said: list[str] = []

    def is_dead() -> str | None:
        status = bash.poll()
        return None if status is None else f"bash exited with status {status}"

    backdoor = Backdoor(host_end, "fake", is_dead=is_dead, log=said.append)
    try:
        backdoor.wait_for_marker(time.monotonic() + 30)
        assert any("some boot noise" in line for line in said)
        yield backdoor
    finally:
        bash.kill()
        bash.wait()
        backdoor.close()


def test_success_and_stdout(shell: Backdoor) -> None:
    assert shell.run("true") == (0, "")
    assert shell.run("echo hello") == (0, "hello\n")


def test_stdout_bytes_are_exact(shell: Backdoor) -> None:
    assert shell.run("printf 'a\\n\\nb'") == (0, "a\n\nb")
    assert shell.run("printf '\\r\\n x \\t'") == (0, "\r\n x \t")
    # Undecodable bytes are replaced, as in NixOS.
    assert shell.run("printf 'caf\\xc3\\xa9 \\xff'") == (0, "café \ufffd")


def test_large_output(shell: Backdoor) -> None:
    status, output = shell.run("head -c 3000000 /dev/zero | tr '\\0' x")
    assert status == 0
    assert output == "x" * 3_000_000


def test_exit_status(shell: Backdoor) -> None:
    assert shell.run("exit 3") == (3, "")
    assert shell.run("echo before; exit 7")[0] == 7


def test_strict_mode(shell: Backdoor) -> None:
    # set -e: the first failure ends the command.
    assert shell.run("false; echo not reached") == (1, "")
    # pipefail
    assert shell.run("false | true")[0] == 1
    # nounset
    assert shell.run("echo $undefined_variable_xyz")[0] != 0


def test_syntax_error_is_a_status_not_a_broken_channel(shell: Backdoor) -> None:
    assert shell.run("echo 'unterminated")[0] == 2
    assert shell.run("if then fi")[0] == 2
    assert shell.run("echo still fine") == (0, "still fine\n")


def test_commands_do_not_leak_into_the_shell(shell: Backdoor) -> None:
    assert shell.run("cd /tmp; pwd") == (0, "/tmp\n")
    assert shell.run("pwd") == (0, "/\n")
    assert shell.run("export LEAK=1; LEAK2=2")[0] == 0
    assert shell.run("echo ${LEAK:-unset} ${LEAK2:-unset}") == (0, "unset unset\n")


def test_stdin_is_dev_null(shell: Backdoor) -> None:
    # A command reading stdin must not eat the framing.
    assert shell.run("cat; echo done") == (0, "done\n")


def test_quotes_and_newlines_in_commands(shell: Backdoor) -> None:
    command = "echo \"it's\" '$HOME' `echo x`\necho second line"
    assert shell.run(command) == (0, "it's $HOME x\nsecond line\n")


def test_guest_side_timeout_gives_124(shell: Backdoor) -> None:
    assert shell.run("sleep 5", timeout=1) == (124, "")
    assert shell.run("echo quick", timeout=10) == (0, "quick\n")


def test_check_output_false_does_not_desync(shell: Backdoor) -> None:
    assert shell.run("echo ignored", check_output=False) == (-2, "")
    # The skipped reply arrives first and must not be taken for this one.
    assert shell.run("echo mine") == (0, "mine\n")


def test_check_return_false(shell: Backdoor) -> None:
    assert shell.run("echo out; exit 5", check_return=False) == (-1, "out\n")


def test_background_writer_does_not_corrupt_later_replies(shell: Backdoor) -> None:
    # The background job keeps the command's stdout open and writes later.
    status, output = shell.run("(sleep 0.3; echo late) & echo now")
    assert (status, output) == (0, "now\n")
    time.sleep(0.5)
    assert shell.run("echo clean") == (0, "clean\n")


def test_many_commands_cross_the_cleanup_batch(shell: Backdoor) -> None:
    # Output files are removed every 64 commands; replies stay right.
    for index in range(140):
        assert shell.run(f"echo {index}") == (0, f"{index}\n")


def test_commands_run_as_bash_c_like_nixos(shell: Backdoor) -> None:
    # NixOS runs `bash -c 'set -euo pipefail; <command>'`: $0 is bash, $- has
    # c (and e, u from the strict mode), and there are no positional parameters.
    status, out = shell.run('echo "$0"; echo "$-"; echo "$#"')
    name, flags, count = out.splitlines()
    assert status == 0 and name == "bash" and count == "0"
    assert "c" in flags and "e" in flags and "u" in flags
    assert shell.run('[[ -o pipefail ]] && echo on') == (0, "on\n")


def test_commands_do_not_see_the_helper(shell: Backdoor) -> None:
    status, out = shell.run("compgen -A function | grep -c __vmtui || true; compgen -v | grep -c __vmtui || true")
    assert (status, out) == (0, "0\n0\n")
    assert shell.run("__vmtui_run 1 '' true")[0] == 127


def _helper_dir_of_parent() -> str:
    # The command's parent is the backdoor shell; the helper's directory is
    # named after that shell's pid, on the first writable of these.
    return 'for d in /dev/shm /run /tmp; do [ -d "$d/.vmtui-backdoor-$PPID" ] && { echo "$d/.vmtui-backdoor-$PPID"; break; }; done'


def test_the_running_command_is_recorded_for_the_control_loop(shell: Backdoor) -> None:
    # While a command runs, `running` names its request id and the pid at
    # the root of its process tree (the `bash -c` the subshell became: `$$`).
    status, out = shell.run(f'echo "$$"; cat "$({_helper_dir_of_parent()})/running"')
    pid, recorded = out.splitlines()
    assert status == 0 and recorded == f"{shell._next_id - 1} {pid}"


def _kill_tree_function() -> str:
    """The helper's `__vmtui_kill_tree`, for running it inside a test command."""
    start = _HELPER.index("__vmtui_kill_tree() {")
    end = _HELPER.index("\n}\n", start) + 3
    return _HELPER[start:end]


def test_kill_tree_ends_a_command_and_everything_it_started(shell: Backdoor) -> None:
    script = _kill_tree_function() + """
    (sleep 300 & sleep 300; true) & root=$!
    for _ in $(seq 50); do [ -n "$(cat /proc/*/stat 2>/dev/null | awk -v p=$root '$4 == p' )" ] && break; sleep 0.1; done
    # Through cat: a process may end between the glob and its read, and
    # Debian's awk (mawk) stops at the first file it cannot open.
    kids=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v p=$root '$4 == p { print $1 }' || true)
    [ -n "$kids" ]
    __vmtui_kill_tree "$root"
    wait "$root" || true
    sleep 0.2
    for kid in $kids; do  # gone, or a zombie (reaped by init in a guest; not by every host's)
      if read -r st <"/proc/$kid/stat" 2>/dev/null; then st=${st##*) }; [ "${st%% *}" = Z ] || echo "alive $kid"; fi
    done
    echo done
    """
    # No guest timeout (`timeout` would run a bash without the helper); a
    # host deadline instead, since a tree left stopped would hang `wait`.
    status, out = shell.run(script, deadline=time.monotonic() + 30)
    assert (status, out) == (0, "done\n")


def test_command_line_format() -> None:
    assert command_line(7, "echo 'x'", None) == b"__vmtui_run 7 '' 'echo '\"'\"'x'\"'\"''\n"
    assert command_line(8, "true", 900) == b"__vmtui_run 8 900 true\n"
    assert format_timeout(1.5) == "1.5"
    assert format_timeout(60.0) == "60"
