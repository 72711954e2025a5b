"""OVMF boots in parallel, many times: does one ever stop short of the shell?

    .venv/bin/python benchmarks/bench_uefi_stress.py [--workers N] [--boots N] [--limit S] [--carry-store]

Each worker is a process with a driver and one UEFI tiny node (the node of
tests/test_efi_boot.py); it boots the node `--boots` times, start to root
shell, then powers it off.  By default each boot starts from a variable store
vmtui writes (`create_efi_vars` + `write_efi_vars`, as the test does);
`--carry-store` keeps the store the firmware filled on the previous boot
instead.  A boot that has no shell after `--limit` seconds is reported with
its console tail and where its CPU is (three `info registers` RIPs: the
firmware runs below 4 GiB, Linux at the top), then killed.

Prints one line per boot (wall seconds, QEMU CPU seconds) and a summary.
Run it while other work loads the machine to see boots under load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from driver.config import NodeConfig, TestConfig  # noqa: E402
from driver.driver import Driver  # noqa: E402
from driver.efi_vars import EfiVariable  # noqa: E402
from driver.events import EventBus  # noqa: E402
from driver.guest.tiny import build_tiny_guest  # noqa: E402
from driver.machine import Machine  # noqa: E402
from uefi_node import write_uefi_node  # noqa: E402

VENDOR = uuid.UUID("3b1f6c2e-52a4-4d7e-9a0b-6f8d2c1e4a55")


def qemu_cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime and stime: fields 14 and 15 of stat, 12 and 13 after the command.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def where(machine: Machine) -> str:
    rips = []
    for _ in range(3):
        registers = machine.send_monitor_command("info registers")
        rips.append(next((w for w in registers.split() if w.startswith(("RIP=", "EIP="))), "?"))
        time.sleep(1)
    tail = " / ".join(repr(line[:80]) for line in machine.full_console_log[-3:])
    return f"{' '.join(rips)}; console {len(machine.full_console_log)} lines, last: {tail}"


def worker(tag: str, boots: int, limit: float, carry: bool, out: multiprocessing.Queue) -> None:
    image = build_tiny_guest()
    with tempfile.TemporaryDirectory(prefix="vs-", dir="/tmp") as temp:
        base = Path(temp)
        script = write_uefi_node(base / "node", name="firm", node_number=1, image=image)
        (base / "t.py").write_text("")
        config = TestConfig(nodes=[NodeConfig("firm", str(script))], vlans=[], script_path=base / "t.py")
        with Driver(config, bus=EventBus(), out_dir=base / "out", tmp_dir=base / "s") as driver:
            machine = driver.machines[0]
            for boot in range(boots):
                if not carry or boot == 0:
                    machine.efi_vars_path.unlink(missing_ok=True)
                    machine.create_efi_vars()
                    machine.write_efi_vars([EfiVariable(VENDOR, "VmtuiSeed", b"from the host", flags=7)])
                started = time.monotonic()
                machine.start()
                connected = threading.Event()
                threading.Thread(target=lambda: (machine.connect(), connected.set()), daemon=True).start()
                if not connected.wait(limit):
                    out.put((tag, boot, None, qemu_cpu_seconds(machine.pid), where(machine)))
                    machine.crash()
                    continue
                out.put((tag, boot, time.monotonic() - started, qemu_cpu_seconds(machine.pid), ""))
                machine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--limit", type=float, default=300.0)
    parser.add_argument("--carry-store", action="store_true")
    args = parser.parse_args()
    build_tiny_guest()  # once, before the workers race for the cache
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=worker, args=(chr(ord("a") + n), args.boots, args.limit, args.carry_store, queue))
        for n in range(args.workers)
    ]
    for process in workers:
        process.start()
    walls: list[float] = []
    cpus: list[float] = []
    stuck = 0
    for _ in range(args.workers * args.boots):
        tag, boot, wall, cpu, diagnosis = queue.get()
        load = os.getloadavg()[0]
        if wall is None:
            stuck += 1
            print(f"[{tag}] boot {boot}: NO SHELL after {args.limit:.0f} s, QEMU cpu {cpu:.1f} s, load {load:.1f}: {diagnosis}")
        else:
            walls.append(wall)
            cpus.append(cpu)
            print(f"[{tag}] boot {boot}: shell after {wall:.1f} s, QEMU cpu {cpu:.1f} s, load {load:.1f}", flush=True)
    for process in workers:
        process.join()
    if walls:
        print(
            f"{len(walls)} boots reached the shell: wall median {statistics.median(walls):.1f} s "
            f"(min {min(walls):.1f}, max {max(walls):.1f}); QEMU cpu median {statistics.median(cpus):.1f} s "
            f"(max {max(cpus):.1f}); {stuck} did not"
        )


if __name__ == "__main__":
    main()
