"""`vmtui replay` on a 100 MB NixOS driver log: time to the first screen, and memory.

Generates a log in the shape `nix log` prints for a 2026 driver (colours,
subtests, `must succeed` blocks with their `finished` lines, three nodes'
serial consoles interleaved, a failure at the end), then opens it in the
real `ReplayApp` (headless Textual) in a fresh process and reports:

  * time to first screen: from opening the file to the first batch of
    events drawn (target: under 2 s); the median of a few runs, next to the
    same figure for a tiny log (the app's own start on this machine),
  * time until the whole log was read and drawn,
  * peak resident memory of that process, next to the same figure for a
    tiny log (the app's own baseline): the difference is what the log costs.

Usage: .venv/bin/python benchmarks/bench_replay.py [--megabytes 100] [--runs 3] [--keep LOG]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GREEN, DIM, RED, RESET = "\x1b[1m\x1b[32m", "\x1b[2m", "\x1b[31m", "\x1b[0m"
NODES = ("server", "client", "db")
SERIAL_PER_BLOCK = 60


def generate(path: Path, megabytes: int) -> tuple[int, int]:
    """Write the log; returns (lines, blocks)."""
    rng = random.Random(12)
    target = megabytes * 1024 * 1024
    size = lines = blocks = 0
    step = 0
    with open(path, "w", encoding="utf-8") as out:
        def emit(chunk: list[str]) -> None:
            nonlocal size, lines
            text = "\n".join(chunk) + "\n"
            out.write(text)
            size += len(text)
            lines += len(chunk)

        emit(["Machine state will be reset. To keep it, pass --keep-vm-state",
              f"{GREEN}run the VM test script{RESET}"])
        subtest = 0
        while size < target:
            subtest += 1
            emit([f"{GREEN}subtest: step {subtest}{RESET}"])
            for _ in range(10):
                step += 1
                node = NODES[step % len(NODES)]
                command = f"curl -sf http://{NODES[(step + 1) % 3]}/item/{step}"
                chunk = [f"{node}: {GREEN}must succeed: {command}{RESET}"]
                for i in range(SERIAL_PER_BLOCK):
                    who = NODES[rng.randrange(3)]
                    stamp = step * 0.5 + i * 0.001
                    chunk.append(f"{DIM}{who} # [{stamp:12.6f}] app[{1000 + i}]: request {step}/{i} "
                                 f"served in {rng.randrange(1, 900)} us path=/item/{step}{RESET}")
                chunk.append(f"{node}: (finished: must succeed: {command}, in 0.{rng.randrange(10, 99)} seconds)")
                blocks += 1
                emit(chunk)
            emit([f"(finished: subtest: step {subtest}, in 5.00 seconds)"])
            blocks += 1
        emit([f"server: {GREEN}must succeed: false{RESET}",
              f'{RED}!!! {RESET}Traceback (most recent call last):',
              f'{RED}!!! {RESET}  File "<string>", line 40, in <module>',
              f'{RED}!!! {RESET}    server.succeed("false")',
              f"{RED}!!! {RESET}RequestedAssertionFailed: command `false` failed (exit code 1)",
              f"{GREEN}cleanup{RESET}", "(finished: cleanup, in 0.01 seconds)"])
    return lines, blocks


def child(log: Path, whole: bool) -> None:
    """Open the log in the app, headless; print the figures as JSON (`whole`: wait for the end)."""
    from vmtui.replay.app import make_replay_app

    spool = Path(tempfile.mkdtemp(prefix="vmtui-bench-replay-"))
    try:
        started = time.monotonic()
        app = make_replay_app(log, None, spool)

        async def drive() -> tuple[float, float]:
            async with app.run_test(size=(200, 50)) as pilot:
                while app.first_screen_at is None:
                    await asyncio.sleep(0.005)
                first = app.first_screen_at - started
                while whole and not app.replay.finished.is_set():
                    await asyncio.sleep(0.05)
                await pilot.pause()
                return first, time.monotonic() - started

        first, whole = asyncio.run(drive())
        app.replay.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"first_screen_s": first, "whole_s": whole, "peak_rss_mib": peak,
                          "events": app.replay.events_seen}))
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def measure(log: Path, *, whole: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(log)] + (["--whole"] if whole else [])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_first_screen(log: Path, runs: int) -> float:
    return statistics.median(measure(log, whole=False)["first_screen_s"] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="also save the generated log here")
    parser.add_argument("--runs", type=int, default=3, help="first-screen measurements per log (the median is shown)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.whole)
        return
    work = Path(tempfile.mkdtemp(prefix="vmtui-bench-replay-"))
    try:
        big, tiny = work / "big.log", work / "tiny.log"
        t0 = time.monotonic()
        lines, blocks = generate(big, args.megabytes)
        print(f"generated {big.stat().st_size / 1e6:.1f} MB: {lines:,} lines, {blocks:,} blocks "
              f"in {time.monotonic() - t0:.1f} s")
        generate(tiny, 0)
        if args.keep:
            shutil.copyfile(big, args.keep)
        print(f"time to first screen:         {median_first_screen(big, args.runs):.2f} s   "
              f"(median of {args.runs}; target < 2 s)")
        print(f"first screen, tiny log:       {median_first_screen(tiny, args.runs):.2f} s   (the app's own start)")
        base = measure(tiny, whole=True)
        figures = measure(big, whole=True)
        print(f"whole log read and drawn:     {figures['whole_s']:.1f} s   ({figures['events']:,} events)")
        print(f"peak memory, {args.megabytes} MB log:       {figures['peak_rss_mib']:.0f} MiB   (whole log read)")
        print(f"peak memory, tiny log:        {base['peak_rss_mib']:.0f} MiB   (the app itself)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
