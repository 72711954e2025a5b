"""Key-press-to-screen latency of the real app while two consoles flood.

The app runs in a real pseudo-terminal (140x42), as a user would see it:
the parent process types into the REPL line one key at a time and waits
until the terminal output shows the typed text; meanwhile two producer
threads in the app flood the `client` and `server` consoles through the
same EventBus -> EventBridge path a guest's serial console takes.

Prints p50 / p99 / max latency over the keys typed (target p99 < 50 ms),
and how many console lines the app drew meanwhile.  With --editor the keys
are typed into the script editor (`e`) instead of the REPL line.  With
--fleet the app shows ten nodes (the node overview beside one console) and
all ten consoles flood.

Usage: .venv/bin/python benchmarks/bench_keys.py [--keys 300] [--rate 20000] [--editor] [--fleet]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import pexpect

SIZE = (42, 140)  # rows, columns
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def flood(app: object, machine: str, rate: int, stop: threading.Event) -> None:
    """Publish about `rate` console lines per second for `machine`."""
    from driver.events import ConsoleOutput

    bus = app.bus  # type: ignore[attr-defined]
    chunk = rate // 100
    number = 0
    next_at = time.monotonic()
    while chunk and not stop.is_set():
        lines = tuple(
            f"[{n / 1000:>12.6f}] \x1b[32m[  OK  ]\x1b[0m {machine}: flooding line {n}" for n in range(number, number + chunk)
        )
        bus.publish(ConsoleOutput(machine, lines))
        number += chunk
        next_at += 0.01
        time.sleep(max(0.0, next_at - time.monotonic()))


def child(rate: int, editor: bool, fleet: bool) -> None:
    """The app under test: the real VmtuiApp on recorded events, consoles flooding."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tui"))
    import scenes
    from driver import scratch
    from driver.events import EventBus
    from widgets.debugger import ReplInput

    state_dir = scratch.make_temp_dir("vmtui-bench-keys-")
    app = scenes.fleet_app(state_dir, time.monotonic) if fleet else scenes.scene_app(state_dir)
    machines = scenes.FLEET if fleet else ("client", "server")
    app.owns_process = True  # as under run_tui: signal handlers, GC tuning
    app.bus = EventBus()  # type: ignore[attr-defined]
    app.bus.subscribe(app.bus_bridge)  # type: ignore[attr-defined]
    stop = threading.Event()

    def on_ready() -> None:
        if fleet:
            scenes.fleet(app, scenes.FrozenClock())
        else:
            scenes.running(app)
        if editor:
            # Type on a new line at the end of the script, in the editor.
            app.script_view.goto_line(app.script_view.line_count)
            app.action_edit()
            app.script_editor.area.action_cursor_line_end()
            app.script_editor.area.insert("\n")
        else:
            app.query_one(ReplInput).focus()
        for machine in machines:
            threading.Thread(target=flood, args=(app, machine, rate, stop), daemon=True).start()

    app.call_later(on_ready)
    app.run()
    stop.set()


def parent(keys: int, rate: int, editor: bool, fleet: bool) -> None:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(SIZE[1]), LINES=str(SIZE[0]))
    env.pop("TEXTUAL", None)
    process = pexpect.spawn(
        sys.executable,
        [__file__, "--child", "--rate", str(rate), *(["--editor"] if editor else []), *(["--fleet"] if fleet else [])],
        dimensions=SIZE,
        env=env,
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
        # Bound the parent's own search cost: the app writes tens of KiB per frame.
        searchwindowsize=8192,
    )
    process.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
    try:
        process.expect_exact("client2" if fleet else "TCP port 3000")  # the recorded run is on screen
        time.sleep(2.0)  # let the flood reach its steady state
        latencies: list[float] = []
        typed = ""
        for index in range(keys):
            if len(typed) >= 24:
                # Clear the line so the typed text never scrolls in the input.
                process.send("\x15")  # ctrl+u
                process.expect(pexpect.TIMEOUT, timeout=0.2)
                typed = ""
            key = ALPHABET[index % len(ALPHABET)] if typed else "Z"
            typed += key
            tail = typed[-6:]
            # The REPL line shows `>>> `-less text; the last typed characters
            # appear together in the update that draws the key.
            pattern = re.compile(re.escape(tail))
            process.expect(pexpect.TIMEOUT, timeout=0.02)  # drop output already on its way
            started = time.perf_counter()
            process.send(key)
            process.expect(pattern, timeout=10)
            latencies.append(time.perf_counter() - started)
        if editor:
            # Escape leaves the editor; quitting then asks about the unsaved text: discard it.
            process.send("\x1b")
            process.expect(pexpect.TIMEOUT, timeout=0.5)
            process.send("q")
            process.expect(pexpect.TIMEOUT, timeout=0.5)
            process.send("d")
        else:
            process.send("\x11")  # ctrl+q quits
        process.expect(pexpect.EOF, timeout=20)
    finally:
        if process.isalive():
            process.terminate(force=True)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    load = os.getloadavg()[0]
    where = "the script editor" if editor else "the REPL line"
    consoles = "ten consoles (node overview)" if fleet else "two consoles"
    print(f"key-press-to-screen latency over {len(latencies)} keys typed into {where}, {consoles} flooding at {rate:,} lines/s each")
    print(f"  (machine load average {load:.1f} on {os.cpu_count()} CPUs: other processes inflate the tail)")
    p90 = latencies[int(len(latencies) * 0.9)] * 1000
    print(f"  p50 {p50:.1f} ms   p90 {p90:.1f} ms   p99 {p99:.1f} ms   max {latencies[-1] * 1000:.1f} ms   (target p99 < 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--rate", type=int, default=20_000, help="console lines per second per console")
    parser.add_argument("--editor", action="store_true", help="type into the script editor instead of the REPL")
    parser.add_argument("--fleet", action="store_true", help="ten nodes, all flooding (the node overview layout)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rate, args.editor, args.fleet)
    else:
        parent(args.keys, args.rate, args.editor, args.fleet)


if __name__ == "__main__":
    main()
