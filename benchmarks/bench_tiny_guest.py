"""Figures of the built-in tiny guest: build times, image sizes, boot time to the marker.

    .venv/bin/python benchmarks/bench_tiny_guest.py [--boots N] [--cold]

Boot time is measured from starting the start script (with the NixOS
driver's arguments) to the backdoor marker on the shell socket, the moment a
driver can send its first command.  `--cold` also rebuilds the guest in a
temporary cache (packages already downloaded are reused, so this is the
unpack + assemble time, not the download).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driver import scratch  # noqa: E402
from driver.guest import build_tiny_guest, write_start_script  # noqa: E402
from driver.guest.debs import cache_dir  # noqa: E402

MARKER = b"Spawning backdoor root shell..."
DEADLINE = 300.0


def boot_to_marker(script: Path, state: Path) -> tuple[float, float]:
    """Seconds to the marker, and seconds from `poweroff` to QEMU's exit."""
    state.mkdir()
    listeners = {}
    for name in ("monitor", "shell"):
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(state / name))
        listener.listen(1)
        listener.settimeout(DEADLINE)
        listeners[name] = listener
    argv = [
        str(script),
        "-monitor", f"unix:{state}/monitor",
        "-chardev", f"socket,id=shell,path={state}/shell",
        "-device", "virtio-serial", "-device", "virtconsole,chardev=shell",
        "-serial", "null",
        "-qmp", f"unix:{state}/qmp,server=on,wait=off",
        "-nographic", "-no-reboot",
    ]
    env = dict(os.environ, TMPDIR=str(state), USE_TMPDIR="1")
    started = time.monotonic()
    qemu = subprocess.Popen(argv, cwd=state, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        shell, _ = listeners["shell"].accept()
        listeners["monitor"].accept()
        shell.settimeout(DEADLINE)
        received = b""
        while MARKER not in received:
            chunk = shell.recv(4096)
            if not chunk:
                raise RuntimeError("backdoor closed before the marker")
            received += chunk
        booted = time.monotonic() - started
        shell.sendall(b"poweroff\n")
        stopping = time.monotonic()
        qemu.wait(timeout=DEADLINE)
        return booted, time.monotonic() - stopping
    finally:
        if qemu.poll() is None:
            os.killpg(qemu.pid, signal.SIGKILL)
        qemu.wait()
        for listener in listeners.values():
            listener.close()


def timed_build(cache: Path | None) -> tuple[float, object]:
    started = time.monotonic()
    image = build_tiny_guest(cache=cache)
    return time.monotonic() - started, image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=5, help="number of boots to time (default 5)")
    parser.add_argument("--cold", action="store_true", help="also time a build into an empty cache")
    args = parser.parse_args()

    with scratch.temp_dir("vmtui-bench-") as work:
        scratch_dir = work
        if args.cold:
            cold_cache = scratch_dir / "cache"
            (cold_cache / "debs").mkdir(parents=True)
            for deb in (cache_dir() / "debs").glob("*.deb"):
                os.link(deb, cold_cache / "debs" / deb.name)
            seconds, _ = timed_build(cold_cache)
            print(f"build, empty cache (packages present): {seconds:.2f} s")
        timed_build(None)  # make sure the shared cache is warm
        seconds, image = timed_build(None)
        print(f"build, cached:                         {seconds * 1000:.1f} ms")
        print(f"kernel ({image.kernel.name}):                  {image.kernel.stat().st_size / 2**20:.1f} MiB")
        print(f"initramfs (gzip):                      {image.initrd.stat().st_size / 2**20:.2f} MiB")

        script = write_start_script(scratch_dir / "out", name="bench", node_number=1, vlans=[], hosts=[], image=image)
        boots, stops = [], []
        for index in range(args.boots):
            booted, stopped = boot_to_marker(script, scratch_dir / f"state-{index}")
            boots.append(booted)
            stops.append(stopped)
            print(f"boot {index + 1}: marker after {booted:.2f} s, poweroff took {stopped:.2f} s", flush=True)
        print(f"boot to marker: median {statistics.median(boots):.2f} s, min {min(boots):.2f} s, max {max(boots):.2f} s")
        print(f"poweroff to exit: median {statistics.median(stops):.2f} s")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores shared: figures vary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
