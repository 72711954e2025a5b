"""How fast one console pane absorbs a flooding guest, and what it costs in memory.

The whole UI path is measured: a producer thread publishes `ConsoleOutput`
events on an `EventBus` the way a serial reader does, the app's
`EventBridge` batches them, and the real `VmtuiApp` (headless, one node, no
machines behind it) drains them on its frame timer into the node's pane
and keeps rendering.

Prints:
  * lines/s absorbed (target >= 100,000 lines/s),
  * resident memory while 1,000,000 lines stream through a pane whose
    scrollback is capped at 50,000 lines (should stay flat after the cap),
  * the cost of making guest text safe: the serial reader splitting raw
    bytes into lines, and decoding lines (plain, coloured, redrawn with
    `\r`, hostile escapes) into pane segments and into headless output.

Usage: .venv/bin/python benchmarks/bench_console.py [--seconds 3] [--total 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from typing import Callable

from pathlib import Path

from rich.style import Style

from driver import scratch
from driver.config import NodeConfig, TestConfig
from driver.console import ConsoleReader
from driver.events import ConsoleOutput, EventBus
from driver.terminal_text import plain_line, terminal_line
from vmtui.app import VmtuiApp
from widgets.ansi import AnsiLineDecoder

SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "tui" / "data" / "todos_script.py"

MACHINE = "server"
CHUNK = 256  # lines per ConsoleOutput, about what one 16 KiB serial read yields
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def make_chunk(start: int) -> tuple[str, ...]:
    # Kernel/systemd-like lines with colour codes, unique per line (no sharing).
    return tuple(
        f"[{n / 1000:>12.6f}] \x1b[32m[  OK  ]\x1b[0m Started unit-{n}.service - flooding test line {n}"
        for n in range(start, start + CHUNK)
    )


def bench_app() -> VmtuiApp:
    """The real app with one node and no machines behind it: events only."""
    config = TestConfig(nodes=[NodeConfig(MACHINE, "true")], vlans=[], script_path=SCRIPT, name="bench")
    app = VmtuiApp(config, None, clock=None, state_dir=scratch.make_temp_dir("vmtui-bench-"))
    app.bus = EventBus()  # type: ignore[attr-defined]
    app.bus.subscribe(app.bus_bridge)  # type: ignore[attr-defined]
    return app


def absorbed(app: VmtuiApp) -> int:
    return app.pane_for(MACHINE).view.total_lines


def produce(bus: EventBus, total: int, stop: threading.Event, progress: list[int]) -> None:
    sent = 0
    while sent < total and not stop.is_set():
        bus.publish(ConsoleOutput(MACHINE, make_chunk(sent)))
        sent += CHUNK
        progress[0] = sent


async def wait_absorbed(app: VmtuiApp, count: int) -> None:
    while absorbed(app) < count:
        await asyncio.sleep(0.005)


async def throughput(seconds: float) -> None:
    app = bench_app()
    async with app.run_test(size=(140, 42)):
        bus = app.bus  # type: ignore[attr-defined]
        stop = threading.Event()
        progress = [0]
        producer = threading.Thread(target=produce, args=(bus, 10**12, stop, progress))
        started = time.perf_counter()
        producer.start()
        await asyncio.sleep(seconds)
        stop.set()
        producer.join()
        sent = progress[0]
        elapsed = time.perf_counter() - started
        # What is still in the bridge arrives with the next frame.
        while absorbed(app) + app.bus_bridge.dropped_lines < sent:
            await asyncio.sleep(0.005)
        view = app.pane_for(MACHINE).view
        received = absorbed(app)
        print(f"flood for {seconds:.1f}s: producer published {sent:,} lines")
        print(f"  pane received {received:,} lines = {received / elapsed:,.0f} lines/s (target >= 100,000)")
        # The bridge drops the oldest lines only when the UI falls a whole
        # scrollback behind; the pane would have dropped them anyway.
        print(f"  dropped in the bridge while the UI was busy: {app.bus_bridge.dropped_lines:,}")
        print(f"  pane holds {view.line_count:,} lines (cap {view.max_lines:,}), follow={view.follow}")


async def memory(total: int) -> None:
    app = bench_app()
    async with app.run_test(size=(140, 42)) as pilot:
        bus = app.bus  # type: ignore[attr-defined]
        before = rss_mib()
        print(f"memory while {total:,} lines stream through one pane (cap 50,000 lines):")
        print(f"  start: {before:.1f} MiB RSS")
        step = total // 8
        sent = 0
        peak = before
        started = time.perf_counter()
        while sent < total:
            # Publish in steps and let the UI keep up, so nothing is dropped
            # in the bridge and every line really passes through the pane.
            target = min(total, sent + step)
            while sent < target:
                bus.publish(ConsoleOutput(MACHINE, make_chunk(sent)))
                sent += CHUNK
                if sent % (CHUNK * 64) == 0:
                    await wait_absorbed(app, sent)
            await wait_absorbed(app, sent)
            await pilot.pause()
            peak = max(peak, rss_mib())
            print(f"  after {sent:>9,} lines: {rss_mib():6.1f} MiB RSS, pane holds {app.pane_for(MACHINE).view.line_count:,}")
        elapsed = time.perf_counter() - started
        print(f"  peak {peak:.1f} MiB RSS ({peak - before:+.1f} MiB over start); {sent / elapsed:,.0f} lines/s with the UI kept in step")


def rate(work: Callable[[], int], seconds: float = 1.0) -> float:
    """Items per second over repeated calls of `work` (which returns its item count)."""
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        done += work()
    return done / elapsed


def decoding() -> None:
    count = 10_000
    kinds = {
        "plain": [f"[{n / 1000:>12.6f}] kernel: plain line number {n} with nothing to decode" for n in range(count)],
        "coloured": list(make_chunk(0) * (count // CHUNK)),
        "redrawn with \\r": [f"progress {n % 100:>3}%\rprogress 100% line {n}" for n in range(count)],
        "hostile": [f"\x1bc\x1b[?7l\x1b[2J\x1b]0;title {n}\x07\x1b]8;;http://x/\x1b\\link\x1b]8;;\x1b\\ {n}" for n in range(count)],
    }
    decoder = AnsiLineDecoder(Style(color="white", bgcolor="black"))
    print("making guest text safe (lines/s, one core):")
    print(f"  {'line kind':<16} {'pane segments':>14} {'headless tty':>14} {'headless plain':>15}")
    for kind, lines in kinds.items():
        pane = rate(lambda: len([decoder.decode(line) for line in lines]))
        tty = rate(lambda: len([terminal_line(line, "2") for line in lines]))
        plain = rate(lambda: len([plain_line(line) for line in lines]))
        print(f"  {kind:<16} {pane:>14,.0f} {tty:>14,.0f} {plain:>15,.0f}")
    for kind in ("coloured", "redrawn with \\r"):
        data = ("\r\n".join(kinds[kind]) + "\r\n").encode()
        reader = ConsoleReader(MACHINE, -1, bus=EventBus(), max_lines=50_000)
        fed = rate(lambda: reader.feed(data) or len(kinds[kind]))
        print(f"  serial reader, {kind} CRLF lines: {fed:,.0f} lines/s ({fed * len(data) / len(kinds[kind]) / 2**20:,.0f} MiB/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--total", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(memory(args.total))  # first, so earlier work does not hide growth
    asyncio.run(throughput(args.seconds))
    decoding()


if __name__ == "__main__":
    main()
