"""Virtual LANs: one `vde_switch` hub per VLAN number, as the NixOS driver does.

A node on VLAN N gets a NIC plugged into `$QEMU_VDE_SOCKET_<N>` by its start
script; the switch runs in hub mode so 802.1Q-tagged frames pass too.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from driver import processes
from driver.errors import MachineError
from driver.fdwait import wait_readable

STARTUP_TIMEOUT = 5.0


class VLan:
    """A running `vde_switch --hub` for VLAN `nr`, its socket under `tmp_dir`."""

    def __init__(self, nr: int, tmp_dir: Path | str) -> None:
        self.nr = nr
        self.socket_dir = Path(tmp_dir) / f"vde{nr}.ctl"
        self.env_name = f"QEMU_VDE_SOCKET_{nr}"
        self.process: subprocess.Popen[bytes] | None = None
        self._start()

    # NixOS names, for scripts that look at `vlan1.socket_dir` and friends.
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def env(self) -> dict[str, str]:
        """The environment a start script needs to plug into this VLAN."""
        return {self.env_name: str(self.socket_dir)}

    def _start(self) -> None:
        try:
            self.process = processes.spawn(
                [
                    "vde_switch",
                    "--sock", str(self.socket_dir),
                    "--dirmode", "0700",
                    "--hub",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError as error:
            raise MachineError(f"cannot start vde_switch for vlan {self.nr}: {error}") from error
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        # The NixOS driver exports the socket path for the start scripts;
        # machines also take it from here.
        os.environ[self.env_name] = str(self.socket_dir)

    def _wait_ready(self) -> None:
        """Ask the switch for `showinfo` and wait for its `1000 Success`."""
        assert self.process is not None and self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(b"showinfo\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it exited already; its output below says why
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        said = b""
        while b"1000 Success" not in said:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MachineError(
                    f"vde_switch for vlan {self.nr} did not answer within {STARTUP_TIMEOUT:.0f} seconds"
                )
            if not wait_readable([fd], min(remaining, 0.1)):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                status = self.process.wait()
                raise MachineError(
                    f"vde_switch for vlan {self.nr} exited with status {status}: "
                    f"{said.decode(errors='replace').strip()}"
                )
            said += chunk
        if not (self.socket_dir / "ctl").exists():
            raise MachineError(f"vde_switch for vlan {self.nr} did not create {self.socket_dir}/ctl")

    def stop(self) -> None:
        """End the switch.  Idempotent."""
        process = self.process
        if process is None:
            return
        self.process = None
        if os.environ.get(self.env_name) == str(self.socket_dir):
            del os.environ[self.env_name]
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        processes.registry.terminate(process, grace=2.0)

    def __repr__(self) -> str:
        return f"<VLan {self.nr} at {self.socket_dir}>"
