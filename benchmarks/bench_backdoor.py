"""Backdoor latency on two booted tiny guests under TCG.

Prints:
- time from starting both nodes (in parallel, like start_all) to both connected;
- median and p95 latency of `succeed("true")` (target: median <= 16 ms);
- how long `wait_for_file` takes to return for a file a guest job creates
  2 s after the call (target: <= 2.2 s).

Usage: .venv/bin/python benchmarks/bench_backdoor.py [--commands N] [--rounds N]
No assertions: figures only (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from driver import processes, scratch
from driver.events import EventBus
from driver.guest.startscript import HostEntry, write_start_script
from driver.guest.tiny import build_tiny_guest
from driver.logger import Logger
from driver.machine import Machine
from driver.parallel import run_each_or_raise
from driver.vlan import VLan


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def boot(machines: list[Machine]) -> float:

    def start(machine: Machine) -> None:
        machine.start()
        machine.connect()

    started = time.perf_counter()
    run_each_or_raise(machines, start)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300, help="succeed('true') calls per node")
    parser.add_argument("--rounds", type=int, default=3, help="wait_for_file rounds")
    args = parser.parse_args()

    processes.install_exit_handlers()
    image = build_tiny_guest()
    tmp = scratch.make_temp_dir("bench-bd-")
    bus = EventBus()
    logger = Logger(bus)
    vlan = VLan(1, tmp)
    names = ["alpha", "beta"]
    hosts = [HostEntry(name, number, 1) for number, name in enumerate(names, start=1)]
    machines = []
    try:
        for number, name in enumerate(names, start=1):
            script = write_start_script(
                tmp / "nodes" / name, name=name, node_number=number, vlans=[1], hosts=hosts, image=image
            )
            machines.append(
                Machine(name, str(script), bus=bus, logger=logger, tmp_dir=tmp,
                        out_dir=tmp / "out", shared_dir=tmp / "shared")
            )
        boot_time = boot(machines)
        print(f"start of both nodes to both connected: {boot_time:.2f} s")

        for machine in machines:
            for _ in range(10):  # warm up caches and the page cache of bash
                machine.succeed("true")
            latencies = []
            for _ in range(args.commands):
                started = time.perf_counter()
                machine.succeed("true")
                latencies.append(time.perf_counter() - started)
            print(
                f"{machine.name}: succeed('true') x{args.commands}: "
                f"median {statistics.median(latencies) * 1000:.1f} ms, "
                f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, "
                f"min {min(latencies) * 1000:.1f} ms"
            )

        alpha = machines[0]
        for round_ in range(1, args.rounds + 1):
            path = f"/tmp/bench-file-{round_}"
            alpha.succeed(f"rm -f {path}; (sleep 2; touch {path}) >/dev/null 2>&1 &")
            started = time.perf_counter()
            alpha.wait_for_file(path, timeout=120)
            print(f"wait_for_file, file created 2 s after the call: returned after {time.perf_counter() - started:.2f} s")
    finally:
        for machine in machines:
            machine.release()
        vlan.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
