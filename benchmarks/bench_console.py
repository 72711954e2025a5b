"""How fast one console pane absorbs a flooding guest, and what it costs in memory.

The whole UI path is measured: a producer thread publishes `ConsoleOutput`
events on an `EventBus` the way a serial reader does, the `EventBridge`
batches them, the app drains the batch on its frame timer and appends it to
a `ConsolePane` in a headless Textual app that keeps rendering.

Prints:
  * lines/s absorbed (target >= 100,000 lines/s),
  * resident memory while 1,000,000 lines stream through a pane whose
    scrollback is capped at 50,000 lines (should stay flat after the cap).

Usage: .venv/bin/python benchmarks/bench_console.py [--seconds 3] [--total 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time

from textual.app import App, ComposeResult

from driver.events import ConsoleOutput, EventBus
from vmtui.bridge import EventBridge, EventsPending
from widgets.console_pane import ConsolePane

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


class ConsoleBench(App[None]):
    """One console pane fed through the same bridge the real app uses."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge = EventBridge(self.post_message)
        self.absorbed = 0
        self._last_flush = 0.0
        self._pending = False

    def compose(self) -> ComposeResult:
        yield ConsolePane(MACHINE, clock=None)

    def on_events_pending(self, _: EventsPending) -> None:
        # The same frame-rate limit as VmtuiApp: at most one drain per 1/60 s.
        wait = self._last_flush + 1 / 60 - time.monotonic()
        if wait > 0:
            if not self._pending:
                self._pending = True
                self.set_timer(wait, self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        self._pending = False
        self._last_flush = time.monotonic()
        batch = self.bridge.drain()
        pane = self.query_one(ConsolePane)
        for lines in batch.console.values():
            pane.append_lines(lines)
            self.absorbed += len(lines)


def produce(bus: EventBus, total: int, stop: threading.Event, progress: list[int]) -> None:
    sent = 0
    while sent < total and not stop.is_set():
        bus.publish(ConsoleOutput(MACHINE, make_chunk(sent)))
        sent += CHUNK
        progress[0] = sent


async def wait_absorbed(app: ConsoleBench, count: int) -> None:
    while app.absorbed < count:
        await asyncio.sleep(0.005)


async def throughput(seconds: float) -> None:
    app = ConsoleBench()
    async with app.run_test(size=(120, 40)) as pilot:
        bus = EventBus()
        bus.subscribe(app.bridge)
        stop = threading.Event()
        progress = [0]
        producer = threading.Thread(target=produce, args=(bus, 10**12, stop, progress))
        started = time.perf_counter()
        producer.start()
        await asyncio.sleep(seconds)
        stop.set()
        producer.join()
        sent = progress[0]
        # Lines dropped by the bridge while the UI was behind count as
        # absorbed too: the pane would have dropped them anyway (bounded
        # scrollback); report them separately so nothing hides.
        await pilot.pause()
        await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        view = app.query_one(ConsolePane).view
        print(f"flood for {seconds:.1f}s: producer published {sent:,} lines")
        print(f"  pane received {app.absorbed:,} lines in {elapsed:.2f}s = {app.absorbed / elapsed:,.0f} lines/s (target >= 100,000)")
        print(f"  dropped in the bridge while the UI was busy: {sent - app.absorbed:,}")
        print(f"  pane holds {view.line_count:,} lines (cap {view.max_lines:,}), follow={view.follow}")


async def memory(total: int) -> None:
    app = ConsoleBench()
    async with app.run_test(size=(120, 40)) as pilot:
        bus = EventBus()
        bus.subscribe(app.bridge)
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
            print(f"  after {sent:>9,} lines: {rss_mib():6.1f} MiB RSS, pane holds {app.query_one(ConsolePane).view.line_count:,}")
        elapsed = time.perf_counter() - started
        print(f"  peak {peak:.1f} MiB RSS ({peak - before:+.1f} MiB over start); {sent / elapsed:,.0f} lines/s with the UI kept in step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--total", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(throughput(args.seconds))
    asyncio.run(memory(args.total))


if __name__ == "__main__":
    main()
