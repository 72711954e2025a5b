"""The guest's root shell on hvc0: marker wait and command framing.

The guest side is the NixOS one (`test-instrumentation.nix`): a bash reading
commands from `/dev/hvc0` in raw mode, no echo, that prints
`Spawning backdoor root shell...` when it starts.  QEMU connects that console
to a UNIX socket the driver listens on; this module speaks over that socket.

NixOS uses two round trips per command (the command with its output piped
through base64, then `echo ${PIPESTATUS[0]}`).  Here, after connecting, the host
installs one bash function, `__vmtui_run`, and every command is one line out
and one line back::

    host:  __vmtui_run <id> <timeout or ''> <shell-quoted command>\\n
    guest: VMTUI-REPLY <id> <status> [<base64 of stdout>]\\n

The command runs as NixOS runs it, `bash -c 'set -euo pipefail; <command>'`
(so `$0` is `bash`, `$-` holds `c`, and the helper's functions and variables
are out of its sight; a syntax error is a status, not a broken frame), with
stdin from /dev/null and stdout to a file on a tmpfs.  The base64 is only
produced (one `base64` process) when that file is non-empty, so
`succeed("true")` costs one fork and one exec of bash.  With a timeout it runs
as `timeout N bash -c ...`, as in NixOS, so status 124 means the guest-side
timeout fired.

Every reply carries the id of its request.  A reply with an older id belongs
to a command whose caller stopped waiting (cancelled, or `check_output=False`)
and is skipped, so the channel never desynchronises.

Every read waits in short slices and checks, each time, that QEMU is alive,
that the run was not cancelled, and the deadline.
"""

from __future__ import annotations

import base64
import re
import shlex
import socket
import time
from typing import Callable

from driver.errors import BackdoorTimeout, MachineDied, MachineError, ShellRestarted
from driver.guarded_socket import GuardedSocket

MARKER = b"Spawning backdoor root shell..."
REPLY_PREFIX = "VMTUI-REPLY"

# How long a guest may take to answer the helper installation once the
# marker arrived.  Generous: a loaded TCG guest can be very slow.
INSTALL_TIMEOUT = 120.0

_REPLY_LINE = re.compile(
    rb"^" + REPLY_PREFIX.encode() + rb" (\d+) (-?\d+) ?([A-Za-z0-9+/=]*)$"
)

# The helper installed into the guest's backdoor shell.  Notes on the bash:
# - `( ... ); __s=$?` and not `( ... ) || __s=$?`: bash ignores `set -e` in
#   the whole subshell when it runs as the left side of `||`.
# - The command's subshell `exec`s a fresh `bash -c`, as NixOS does: the
#   command sees no positional parameters, `$0` is `bash`, and none of the
#   helper's (unexported) functions and variables exist for it.
# - The output goes to a fresh file per command, in a private directory on a
#   tmpfs when one is writable (/dev/shm on most systems, /run on NixOS and
#   systemd guests), /tmp otherwise.  A fresh file because a background
#   process started by a command may keep writing to its stdout: reusing one
#   file would mix its writes into later replies.  Old files are removed in
#   batches (one `rm` per 64 commands) to keep the common path fork-free.
# - `printf` is a builtin; only `base64` forks, and only for non-empty output.
# - Each command's subshell writes "<id> <pid>" to `running` (a builtin
#   write, no fork), then `exec`s `bash` (or `timeout`), so the pid is still
#   the root of the command's process tree.  A cancelled command is
#   ended through the control console, never through hvc0, which stays busy
#   until the command ends.
# - The control loop runs in the background on /dev/hvc4 (the virtconsole
#   `Machine` adds after the shell consoles) and reads one request per line:
#   `kill <id>` stops and then kills the process tree of that command if it
#   still runs (found through the parent pids in /proc: no pkill or ps
#   needed, so it works on any guest); `winsize <n> <rows> <cols>` resizes
#   the shell console /dev/hvc<n> while the backdoor is busy.
_HELPER = r"""__vmtui_dir=
for __d in /dev/shm /run /tmp; do
  if [ -d "$__d" ] && [ -w "$__d" ]; then __vmtui_dir="$__d/.vmtui-backdoor-$$"; break; fi
done
mkdir -p "$__vmtui_dir"
: >"$__vmtui_dir/running"
__vmtui_run() {
  local __s=0 __f="$__vmtui_dir/out.$1" __c="$3"
  if [ -n "$2" ]; then
    ( echo "$1 $BASHPID" >"$__vmtui_dir/running"; exec timeout "$2" bash -c "set -euo pipefail; $__c" ) </dev/null >"$__f"; __s=$?
  else
    ( echo "$1 $BASHPID" >"$__vmtui_dir/running"; exec bash -c "set -euo pipefail; $__c" ) </dev/null >"$__f"; __s=$?
  fi
  : >"$__vmtui_dir/running"
  if [ -s "$__f" ]; then
    printf 'VMTUI-REPLY %s %s ' "$1" "$__s"; base64 -w0 <"$__f"; printf '\n'
  else
    printf 'VMTUI-REPLY %s %s\n' "$1" "$__s"
  fi
  if [ $(( $1 % 64 )) -eq 0 ]; then rm -f "$__vmtui_dir"/out.*; fi
}
__vmtui_kill_tree() {
  local __tree=" $1 " __more=1 __p __stat __rest __ppid
  kill -STOP "$1" 2>/dev/null || return 0
  while [ "$__more" = 1 ]; do
    __more=0
    for __p in /proc/[0-9]*; do
      __p=${__p#/proc/}
      case "$__tree" in *" $__p "*) continue ;; esac
      read -r __stat <"/proc/$__p/stat" || continue
      __rest=${__stat##*) }; __rest=${__rest#* }; __ppid=${__rest%% *}
      case "$__tree" in
        *" $__ppid "*) kill -STOP "$__p" 2>/dev/null; __tree="$__tree$__p "; __more=1 ;;
      esac
    done
  done
  for __p in $__tree; do kill -KILL "$__p" 2>/dev/null; done
}
__vmtui_control() {
  local __op __a __b __c __rid __pid
  stty -echo 2>/dev/null
  while read -r __op __a __b __c; do
    case "$__op" in
      kill)
        if read -r __rid __pid <"$__vmtui_dir/running" && [ "$__rid" = "$__a" ]; then
          __vmtui_kill_tree "$__pid"
        fi ;;
      winsize)
        case "$__a.$__b.$__c" in
          *[!0-9.]*|.*|*..*|*.) ;;
          *) stty -F "/dev/hvc$__a" rows "$__b" cols "$__c" 2>/dev/null ;;
        esac ;;
    esac
  done
}
if [ -z "${__vmtui_control_pid:-}" ] && [ -c /dev/hvc4 ]; then
  ( __vmtui_control ) </dev/hvc4 >/dev/null 2>&1 &
  __vmtui_control_pid=$!
fi
"""


def format_timeout(timeout: float | None) -> str:
    """The guest `timeout` argument: '' for none, integers without '.0'."""
    if timeout is None:
        return "''"
    if float(timeout).is_integer():
        return str(int(timeout))
    return repr(float(timeout))


def command_line(request_id: int, command: str, timeout: float | None) -> bytes:
    """The one line sent for a command."""
    return (
        f"__vmtui_run {request_id} {format_timeout(timeout)} {shlex.quote(command)}\n"
    ).encode()



class Backdoor(GuardedSocket):
    """The host end of one machine's hvc0 shell connection.

    `is_dead` returns None while QEMU runs and a short reason ("QEMU exited
    with status 1") once it has exited.  `cancelled` tells whether the run
    was cancelled (asked on every read slice).
    `log` receives diagnostics (unexpected guest output, slow boots).

    Not thread safe by itself: the machine holds a lock around each call.
    """

    channel = "backdoor"

    def __init__(
        self,
        sock: socket.socket,
        machine: str,
        *,
        is_dead: Callable[[], str | None],
        cancelled: Callable[[], bool] = lambda: False,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        super().__init__(sock, machine, is_dead=is_dead, cancelled=cancelled)
        self._log = log
        self._next_id = 1
        # True once the helper is installed in the current guest shell.
        self.ready = False
        # The marker was already consumed while a command waited for its
        # reply (the guest rebooted): the next connect must not wait for it.
        self._marker_pending = False
        # The id of the command whose reply is awaited.  Left set when the
        # caller stops waiting (cancel, deadline): the command still runs in
        # the guest, and this is the id to ask the control console to kill.
        self.awaited_request: int | None = None

    # -- low level ---------------------------------------------------------------

    def _no_answer(self, what: str) -> str:
        return f"{self.machine}: no answer from the guest while {what}"

    def _closed_reason(self) -> str:
        """Why the socket closed: QEMU's exit, once it has been reaped."""
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            reason = self._is_dead()
            if reason is not None:
                return reason
            time.sleep(0.02)
        return "the backdoor connection was closed by QEMU"

    def _send(self, data: bytes, deadline: float | None, what: str) -> None:
        if self._broken:
            raise MachineError(
                f"{self.machine}: the backdoor shell is unusable: an earlier command "
                "was interrupted while it was being sent; reboot the machine"
            )
        self._send_all(data, deadline, what)

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line.replace(b"\r", b"")

    # -- connecting --------------------------------------------------------------

    def wait_for_marker(
        self,
        deadline: float | None,
        on_silence: Callable[[float], None] = lambda waited: None,
        silence_interval: float = 30.0,
    ) -> None:
        """Wait until the guest prints the marker; then install the helper.

        `on_silence(seconds)` is called every `silence_interval` seconds in
        which the guest said nothing, like NixOS's "did not produce any data
        yet" message.  At `deadline`, raise `BackdoorTimeout`.
        """
        self.ready = False
        if not self._marker_pending:
            started = time.monotonic()
            last_data = started
            while True:
                index = self._buffer.find(MARKER)
                if index >= 0:
                    said = bytes(self._buffer[:index]).strip()
                    if said:
                        self._log(f"Guest shell says: {said!r}")
                    del self._buffer[: index + len(MARKER)]
                    break
                # Keep the tail that may hold the start of a split marker.
                if len(self._buffer) > len(MARKER):
                    said = bytes(self._buffer[: -len(MARKER)])
                    del self._buffer[: -len(MARKER)]
                    self._log(f"Guest shell says: {said!r}")
                now = time.monotonic()
                if now - last_data >= silence_interval:
                    on_silence(now - started)
                    last_data = now
                slice_deadline = min(now + silence_interval, deadline) if deadline else now + silence_interval
                before = len(self._buffer)
                try:
                    self._fill(slice_deadline, "waiting for the guest's root shell")
                except BackdoorTimeout:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise BackdoorTimeout(
                            f"{self.machine}: the guest's root shell did not start within "
                            f"{deadline - started:.0f} seconds (no '{MARKER.decode()}' on hvc0)"
                        ) from None
                    continue
                if len(self._buffer) > before:
                    last_data = time.monotonic()
        self._marker_pending = False
        self._install(time.monotonic() + INSTALL_TIMEOUT)

    def _install(self, deadline: float) -> None:
        token = f"VMTUI-READY-{time.monotonic_ns()}"
        # `stty` is a no-op on guests that already set raw/-echo (NixOS does);
        # it protects against a guest that did not.
        payload = (
            b"stty raw -echo 2>/dev/null; "
            + _HELPER.encode()
            + f"echo {token}\n".encode()
        )
        self._send(payload, deadline, "installing the backdoor helper")
        while True:
            line = self._take_line()
            if line is None:
                self._fill(deadline, "installing the backdoor helper")
                continue
            if line == token.encode():
                break
            if line.strip():
                self._log(f"Guest shell says: {line!r}")
        self.ready = True
        # Request ids keep counting across reboots of the guest: a kill
        # request sent for a command of the old boot (and delivered to the
        # new control loop) can never match a command of the new one.

    # -- commands ----------------------------------------------------------------

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        check_return: bool = True,
        check_output: bool = True,
        deadline: float | None = None,
    ) -> tuple[int, str]:
        """Run one command; returns (status, stdout) like NixOS `execute`.

        `check_output=False`: send and return (-2, "") at once; the reply is
        skipped later.  `check_return=False`: the output is returned with
        status -1, and a shell that dies or restarts before replying (the
        command rebooted the guest, say) is not an error.
        """
        if not self.ready:
            raise MachineError(f"{self.machine}: the backdoor shell is not connected")
        request_id = self._next_id
        self._next_id += 1
        self.awaited_request = None
        what = f"running `{command}`"
        self._send(command_line(request_id, command, timeout), deadline, what)
        if not check_output:
            return -2, ""
        self.awaited_request = request_id
        try:
            status, output = self._read_reply(request_id, deadline, what)
        except (MachineDied, ShellRestarted):
            self.awaited_request = None
            if not check_return:
                return -1, ""
            raise
        self.awaited_request = None
        if not check_return:
            return -1, output
        return status, output

    def _read_reply(self, request_id: int, deadline: float | None, what: str) -> tuple[int, str]:
        while True:
            line = self._take_line()
            if line is None:
                self._fill(deadline, what)
                continue
            match = _REPLY_LINE.match(line)
            if match is None:
                if MARKER in line:
                    self.ready = False
                    self._marker_pending = True
                    raise ShellRestarted(f"{self.machine}: the guest's root shell restarted while {what}")
                if line.strip():
                    self._log(f"Guest shell says: {line!r}")
                continue
            reply_id = int(match.group(1))
            if reply_id != request_id:
                # The late answer of a command nobody waits for any more.
                continue
            status = int(match.group(2))
            encoded = match.group(3)
            output = base64.b64decode(encoded).decode(errors="replace") if encoded else ""
            return status, output

    def resync(self, deadline: float, prelude: str = "") -> str:
        """Realign the host side with a guest shell restored from a snapshot.

        After a `snapshot-load` the guest's bash is back where it was at save
        time (idle, waiting for a command: checkpoints are only taken with the
        channel held), but the host may still hold bytes the guest sent after
        the save.  Drop them, then wait for a fresh token: everything before
        it is stale.  Request ids keep counting, so a late reply replayed from
        before the restore can never be mistaken for a new one.

        `prelude`, shell commands run in the same round trip (a restored
        guest is slow to run anything at first, so round trips count); what
        it prints is returned.
        """
        self._buffer.clear()
        self._broken = False
        nonce = time.monotonic_ns()
        start, token = f"VMTUI-SYNC-START-{nonce}", f"VMTUI-SYNC-{nonce}"
        # The leading newline ends any partial line the guest might hold.
        payload = f"\necho {start}\n"
        if prelude:
            # Through eval: a syntax error in it is a status, not a stuck parser.
            payload += f"eval {shlex.quote(prelude)} </dev/null 2>/dev/null\n"
        payload += f"echo {token}\n"
        self._send(payload.encode(), deadline, "resynchronising the backdoor")
        said: list[bytes] | None = None
        while True:
            line = self._take_line()
            if line is None:
                self._fill(deadline, "resynchronising the backdoor")
                continue
            if line == token.encode():
                break
            if line == start.encode():
                said = []
            elif said is not None:
                said.append(line)
        self.ready = True
        return b"\n".join(said or []).decode(errors="replace")

    def send_raw(self, text: str, deadline: float | None = None) -> None:
        """Write raw text to the shell, bypassing the framing (`poweroff`)."""
        self._send(text.encode(), deadline, f"sending {text.strip()!r}")

    def forget_connection(self) -> None:
        """Forget the guest shell (a reboot is coming); keep the socket."""
        self.ready = False
        self._marker_pending = False
