"""Figures of the systemd guest: build time, image size, boot, command latency.

    .venv/bin/python benchmarks/bench_systemd_guest.py [--packages postgresql] [--boots N]
                                                       [--commands N] [--cold]

- build: the cached image's lookup time, and the build time recorded when it
  was built; `--cold` builds it again in a temporary cache (a full
  mmdebstrap run: download, install, pack), then deletes that copy.
- size: the qcow2 root disk as stored (what the cache holds), the file
  system inside it, kernel and initrd.
- boot: from `Machine.start()` to a connected backdoor (marker seen, helper
  installed): the moment a test script's first command can run.  Then, if
  PostgreSQL is in the image, until `postgresql@15-main.service` is active.
- latency: `succeed("true")` round trips on the booted guest.

Under TCG on a shared host every figure depends on the load: the load
average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driver import processes, scratch  # noqa: E402
from driver.events import EventBus  # noqa: E402
from driver.guest.systemd import build_image, write_systemd_start_script  # noqa: E402
from driver.guest.systemd_image import SystemdImage  # noqa: E402
from driver.logger import Logger  # noqa: E402
from driver.machine import Machine  # noqa: E402

POSTGRES_UNIT = "postgresql@15-main.service"


def mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def report_build(packages: list[str], cold: bool) -> SystemdImage:
    started = time.monotonic()
    image = build_image(packages, progress=lambda line: None)
    lookup = time.monotonic() - started
    manifest = (image.directory / "manifest.json").read_text()
    recorded = next((line for line in manifest.splitlines() if '"build_seconds"' in line), "")
    print(f"image            {image.directory.name}  extra packages: {', '.join(image.packages) or 'none'}")
    print(f"build (cached)   {lookup:.2f} s lookup; recorded build: {recorded.split(':')[-1].strip(' ,') or '?'} s")
    if cold:
        with scratch.temp_dir("vmtui-bench-") as work:
            print(f"build (cold)     building in {work} ... ({load()})", flush=True)
            started = time.monotonic()
            build_image(packages, cache_root=work, progress=lambda line: None)
            print(f"build (cold)     {time.monotonic() - started:.1f} s")
    disk_blocks = image.disk.stat().st_blocks * 512
    print(
        f"size             root.qcow2 {mib(image.disk.stat().st_size)} "
        f"({mib(disk_blocks)} on disk), kernel {mib(image.kernel.stat().st_size)}, "
        f"initrd {mib(image.initrd.stat().st_size)}"
    )
    return image


def boot_once(image: SystemdImage, work: Path, commands: int, index: int) -> dict[str, float]:
    bus = EventBus()
    logger = Logger(bus)
    script = write_systemd_start_script(
        work / "nodes", name="bench", node_number=1, vlans=[], hosts=[], image=image, memory_mb=1024
    )
    machine = Machine(
        "bench",
        str(script),
        bus=bus,
        logger=logger,
        tmp_dir=work / f"run{index}",
        out_dir=work / "out",
        shared_dir=work / "shared",
        connect_timeout=900,
    )
    figures: dict[str, float] = {}
    try:
        started = time.monotonic()
        machine.start()
        machine.connect()
        figures["connected"] = time.monotonic() - started
        if "postgresql" in image.packages:
            machine.wait_for_unit(POSTGRES_UNIT, timeout=900)
            figures["postgres"] = time.monotonic() - started
        latencies = []
        for _ in range(commands):
            begun = time.perf_counter()
            machine.succeed("true")
            latencies.append(time.perf_counter() - begun)
        figures["true_median"] = statistics.median(latencies)
        figures["true_p90"] = sorted(latencies)[int(len(latencies) * 0.9) - 1]
    finally:
        machine.release()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", nargs="*", default=["postgresql"], help="extra packages of the image")
    parser.add_argument("--boots", type=int, default=1, help="boots to measure")
    parser.add_argument("--commands", type=int, default=50, help='succeed("true") calls per boot')
    parser.add_argument("--cold", action="store_true", help="also build the image from scratch")
    args = parser.parse_args()
    if args.boots < 1 or args.commands < 2:
        print("--boots must be >= 1 and --commands >= 2", file=sys.stderr)
        return 2
    processes.install_exit_handlers()

    image = report_build(args.packages, args.cold)
    with scratch.temp_dir("vmtui-bench-") as work:
        for index in range(args.boots):
            before = load()
            figures = boot_once(image, work, args.commands, index)
            line = f"boot {index + 1}           connected after {figures['connected']:.1f} s"
            if "postgres" in figures:
                line += f", {POSTGRES_UNIT} active after {figures['postgres']:.1f} s"
            print(f"{line}  ({before})")
            print(
                f'latency          succeed("true"): median {figures["true_median"] * 1000:.1f} ms, '
                f'p90 {figures["true_p90"] * 1000:.1f} ms over {args.commands} calls'
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
