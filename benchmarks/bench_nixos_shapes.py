"""Boot to connected, per start-script shape of a built-in guest.

    .venv/bin/python benchmarks/bench_nixos_shapes.py [--boots N] [--guest tiny|systemd]
                                                      [--shapes fast,nixos-virtiofs]

Each boot is what the driver does for a node: `Machine.start()` (a fresh
state dir, so the NixOS shapes create their qcow2 root disk, as on a
test's first start) then `connect()`, up to the backdoor's marker.  The
shapes take turns within each round, so a change in the machine's load
hits all of them alike.  Besides wall time it prints the CPU time the
node's processes (QEMU, and virtiofsd for that shape) had used when the
node connected: under TCG a boot is CPU-bound, so that figure moves much
less with the load of a shared machine than the wall time does.

- fast: qboot, no disk, 9p shares (`-nodefaults`);
- nixos: NixOS's `run-<name>-vm` layout, SeaBIOS, a qcow2 root disk made
  on first start, store/xchg/shared over 9p;
- nixos-virtiofs: the same with one virtiofsd per shared directory and
  shared memfd memory.

With `--guest systemd` the node is the systemd guest (its base image, 1024
MiB): its NixOS shapes make the disk as an overlay of the cached image, and
"connected" is systemd having started the backdoor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driver import processes  # noqa: E402
from driver.events import EventBus  # noqa: E402
from driver.guest.nixos_shape import SHAPES  # noqa: E402
from driver.guest.startscript import write_start_script  # noqa: E402
from driver.guest.systemd import build_image, write_systemd_start_script  # noqa: E402
from driver.guest.tiny import build_tiny_guest  # noqa: E402
from driver.logger import Logger  # noqa: E402
from driver.machine import Machine  # noqa: E402


TICKS = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(sid: int) -> float:
    """User + system CPU time of every live process of session `sid`."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def boot_to_connected(script: Path, state_root: Path) -> tuple[float, float]:
    """Wall seconds to connected, and the CPU seconds the node had used by then."""
    bus = EventBus()
    machine = Machine("bench", str(script), bus=bus, logger=Logger(bus), tmp_dir=state_root,
                      out_dir=state_root / "out", shared_dir=state_root / "shared", connect_timeout=600)
    try:
        started = time.monotonic()
        machine.start()
        machine.connect()
        wall = time.monotonic() - started
        assert machine.process is not None
        return wall, session_cpu_seconds(os.getsid(machine.process.pid))
    finally:
        machine.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=5, help="boots per shape (default 5)")
    parser.add_argument("--guest", choices=("tiny", "systemd"), default="tiny", help="the guest flavour")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes (default: all)")
    args = parser.parse_args()
    shapes = [shape for shape in args.shapes.split(",") if shape]
    unknown = [shape for shape in shapes if shape not in SHAPES]
    if unknown or not shapes:
        parser.error(f"--shapes: one or more of {', '.join(SHAPES)}")
    processes.install_exit_handlers()
    times: dict[str, list[float]] = {shape: [] for shape in shapes}
    cpu: dict[str, list[float]] = {shape: [] for shape in shapes}
    with tempfile.TemporaryDirectory(prefix="vmtui-bench-") as scratch:
        root = Path(scratch)
        if args.guest == "systemd":
            systemd_image = build_image((), progress=print)
            scripts = {
                shape: write_systemd_start_script(root / "scripts" / shape, name="bench", node_number=1, vlans=[],
                                                  hosts=[], image=systemd_image, shape=shape)
                for shape in shapes
            }
        else:
            image = build_tiny_guest()
            scripts = {
                shape: write_start_script(root / "scripts" / shape, name="bench", node_number=1, vlans=[],
                                          hosts=[], image=image, shape=shape)
                for shape in shapes
            }
        for index in range(args.boots):
            for shape in shapes:
                seconds, used = boot_to_connected(scripts[shape], root / f"{shape}-{index}")
                times[shape].append(seconds)
                cpu[shape].append(used)
                print(f"round {index + 1} {shape:15} connected after {seconds:.2f} s ({used:.2f} s CPU)", flush=True)
    print()
    base = shapes[0]
    base_wall = statistics.median(times[base])
    base_cpu = statistics.median(cpu[base])
    print(f"guest: {args.guest}")
    for shape in shapes:
        median = statistics.median(times[shape])
        print(f"{shape:15} boot to connected: median {median:.2f} s, min {min(times[shape]):.2f} s, "
              f"max {max(times[shape]):.2f} s ({median - base_wall:+.2f} s against {base})")
    for shape in shapes:
        median = statistics.median(cpu[shape])
        print(f"{shape:15} CPU used by then:  median {median:.2f} s ({median - base_cpu:+.2f} s against {base})")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores shared: figures vary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
