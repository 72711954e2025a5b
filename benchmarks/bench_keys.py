"""Key-press-to-screen latency of the real app while two consoles flood.

The app runs in a real pseudo-terminal (140x42), as a user would see it:
the parent process types into the REPL line one key at a time and waits
until the terminal output shows the typed text; meanwhile two producer
threads in the app flood the `client` and `server` consoles through the
same EventBus -> EventBridge path a guest's serial console takes.

Prints p50 / p95 / p99 / max latency over the keys typed (target p99 <
50 ms), the machine's load average before and after, and what the app drew
meanwhile (console lines taken in, frames written).  With --editor the keys
are typed into the script editor (`e`) instead of the REPL line.  With
--fleet the app shows ten nodes (the node overview beside one console) and
all ten consoles flood.  --gap sets the pause between a key drawn and the
next one typed (default 20 ms: typing as fast as the screen follows; 0.12
is a brisk typist's pace).  With --trace the child records its busy spans (benchmarks/key_trace.py) and the
report adds where the keys slower than 50 ms spent their wait.

Usage: .venv/bin/python benchmarks/bench_keys.py [--keys 300] [--rate 20000] [--gap 0.02] [--editor] [--fleet] [--trace]
       [--gc-young N]
"""

from __future__ import annotations

import argparse
import os
import re
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pexpect

SIZE = (42, 140)  # rows, columns
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
KEY_TIMEOUT = 10.0  # seconds: a key not drawn by then counts as not drawn


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


def child(rate: int, editor: bool, fleet: bool, report: Path, trace: bool, gc_young: int | None) -> None:
    """The app under test: the real VmtuiApp on recorded events, consoles flooding."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tui"))
    from vmtui.frame_cap import raise_textual_frame_cap

    raise_textual_frame_cap()  # as the CLI does before it opens the TUI
    import scenes
    import vmtui.app
    from textual.app import App
    from driver import scratch
    from driver.events import EventBus
    from widgets.debugger import ReplInput

    recorder = None
    if trace:
        import key_trace

        recorder = key_trace.install()
    frames = 0
    display = App._display

    def counted_display(self: App, screen: object, renderable: object) -> None:
        nonlocal frames
        frames += renderable is not None
        display(self, screen, renderable)  # type: ignore[arg-type]

    App._display = counted_display  # type: ignore[method-assign]

    state_dir = scratch.make_temp_dir("vmtui-bench-keys-")
    app = scenes.fleet_app(state_dir, time.monotonic) if fleet else scenes.scene_app(state_dir)
    machines = scenes.FLEET if fleet else ("client", "server")
    if gc_young is not None:
        vmtui.app.GC_YOUNG_THRESHOLD = gc_young  # read when the app mounts
    app.owns_process = True  # as under run_tui: signal handlers, GC tuning
    app.bus = EventBus()  # type: ignore[attr-defined]
    app.bus.subscribe(app.bus_bridge)  # type: ignore[attr-defined]
    stop = threading.Event()
    views = []

    def on_ready() -> None:
        if fleet:
            scenes.fleet(app, scenes.FrozenClock())
        else:
            scenes.running(app)
        views.extend(pane.view for pane in app.panes)
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

    started = time.perf_counter()
    app.call_later(on_ready)

    app.run()
    stop.set()
    report.write_text(json.dumps({
        "seconds": time.perf_counter() - started,
        "lines": sum(view.total_lines for view in views),
        "dropped": app.bus_bridge.dropped_lines,
        "frames": frames,
        "cpu": time.process_time(),
        "spans": recorder.spans if recorder else None,
    }), encoding="utf-8")


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def parent(keys: int, rate: int, gap: float, editor: bool, fleet: bool, trace: bool, gc_young: int | None) -> None:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(SIZE[1]), LINES=str(SIZE[0]))
    env.pop("TEXTUAL", None)
    with tempfile.TemporaryDirectory(prefix="vmtui-bench-keys-") as workdir:
        measure(Path(workdir) / "child.json", keys, rate, gap, editor, fleet, trace, gc_young, env)


def measure(report: Path, keys: int, rate: int, gap: float, editor: bool, fleet: bool, trace: bool,
            gc_young: int | None, env: dict[str, str]) -> None:
    load_before = os.getloadavg()[0]
    process = pexpect.spawn(
        sys.executable,
        [__file__, "--child", "--rate", str(rate), "--report", str(report),
         *(["--editor"] if editor else []), *(["--fleet"] if fleet else []), *(["--trace"] if trace else []),
         *(["--gc-young", str(gc_young)] if gc_young is not None else [])],
        dimensions=SIZE,
        env=env,
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
        # Bound the parent's own search cost: the app writes tens of KiB per frame.
        searchwindowsize=8192,
    )
    process.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
    waits: list[tuple[float, float]] = []
    undrawn = 0
    try:
        process.expect_exact("client2" if fleet else "TCP port 3000")  # the recorded run is on screen
        time.sleep(2.0)  # let the flood reach its steady state
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
            process.expect(pexpect.TIMEOUT, timeout=gap)  # the pause; drops output already on its way
            started = time.perf_counter()
            process.send(key)
            try:
                process.expect(pattern, timeout=KEY_TIMEOUT)
            except pexpect.TIMEOUT:
                # Counted, not fatal: on a machine loaded far beyond its CPUs a frame can stall that long.
                undrawn += 1
            waits.append((started, time.perf_counter()))
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
    load_after = os.getloadavg()[0]
    child_report = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    print_report(waits, rate, gap, editor, fleet, (load_before, load_after), child_report, undrawn)


def print_report(waits: list[tuple[float, float]], rate: int, gap: float, editor: bool, fleet: bool, load: tuple[float, float],
                 child_report: dict | None, undrawn: int) -> None:
    latencies = sorted(end - start for start, end in waits)
    ms = [value * 1000 for value in latencies]
    where = "the script editor" if editor else "the REPL line"
    consoles = "ten consoles (node overview)" if fleet else "two consoles"
    print(f"key-press-to-screen latency over {len(ms)} keys typed into {where}, {consoles} flooding at {rate:,} lines/s each,"
          f" {gap * 1000:.0f} ms between a key drawn and the next")
    print(f"  machine load average {load[0]:.1f} before, {load[1]:.1f} after, on {os.cpu_count()} CPUs"
          " (other processes inflate the tail)")
    print(f"  p50 {statistics.median(ms):.1f} ms   p95 {percentile(ms, 0.95):.1f} ms   p99 {percentile(ms, 0.99):.1f} ms"
          f"   max {ms[-1]:.1f} ms   (target p99 < 50 ms; {sum(m > 50 for m in ms)} keys over 50 ms)")
    if undrawn:
        print(f"  {undrawn} keys were not seen drawn within {KEY_TIMEOUT:.0f} s (counted at that wait)")
    if child_report is None:
        print("  (the app wrote no report: it did not exit normally)")
        return
    seconds = child_report["seconds"]
    print(f"  the app took in {child_report['lines']:,} console lines in {seconds:.1f} s"
          f" ({child_report['lines'] / seconds:,.0f}/s; {child_report['dropped']:,} dropped while it was busy)"
          f" and wrote {child_report['frames']:,} frames ({child_report['frames'] / seconds:.1f}/s)")
    if "cpu" in child_report:
        print(f"  the app's process (flood threads included) used {child_report['cpu']:.1f} s of CPU"
              f" ({child_report['cpu'] / seconds:.0%} of one core)")
    if child_report["spans"] is not None:
        import key_trace

        spans = [tuple(span) for span in child_report["spans"]]
        print(f"  the app's spans of {key_trace.MIN_SPAN * 1000:.0f} ms or more over the whole run:")
        for what, durations in sorted(key_trace.by_kind(spans).items(), key=lambda item: -sum(item[1]))[:10]:
            durations.sort()
            print(f"    {len(durations):6} x {what}: median {statistics.median(durations) * 1000:.1f} ms,"
                  f" p95 {percentile(durations, 0.95) * 1000:.1f} ms, max {durations[-1] * 1000:.1f} ms")
        slow = [(start, end) for start, end in waits if end - start > 0.05]
        if not slow:
            return
        totals = key_trace.explain(spans, slow)
        print(f"  where the {len(slow)} keys over 50 ms waited (ms summed over them; innermost span counted):")
        for what, seconds in sorted(totals.items(), key=lambda item: -item[1])[:12]:
            print(f"    {seconds * 1000:8.1f}  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--rate", type=int, default=20_000, help="console lines per second per console")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between a key drawn and the next typed")
    parser.add_argument("--editor", action="store_true", help="type into the script editor instead of the REPL")
    parser.add_argument("--fleet", action="store_true", help="ten nodes, all flooding (the node overview layout)")
    parser.add_argument("--trace", action="store_true", help="record the app's busy spans; explain the slow keys")
    parser.add_argument("--gc-young", type=int, help="the app's young-generation GC threshold (default: the app's own)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rate, args.editor, args.fleet, args.report, args.trace, args.gc_young)
    else:
        parent(args.keys, args.rate, args.gap, args.editor, args.fleet, args.trace, args.gc_young)


if __name__ == "__main__":
    main()
