"""Figures of graphical nodes: a visible screen pane's CPU cost, and OCR latency.

    .venv/bin/python benchmarks/bench_screen.py [--seconds 20] [--rounds 3]

Boots one graphical tiny guest (tests/tui/data/screen.toml) and measures:

1. OCR latency: the guest writes words to its screen at a known moment;
   the time until `wait_for_text` returns (stops at the first matching
   variant) against a wait that reads every variant before deciding, as the
   NixOS driver does; and one OCR pass of each kind on the same screen.
2. CPU of one visible screen pane: the app (headless, through Pilot) with
   the node's screen pane open, for `--seconds` each on a still screen and
   on a screen the guest redraws every 0.1 s, each against the same app and
   screen with no pane.  CPU is this process (UI, feed, scaling) and QEMU
   (the dumps), in percent of one core, from os.times and /proc/<pid>/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driver import ocr  # noqa: E402
from driver.events import EventBus  # noqa: E402
from driver.spec import load_spec  # noqa: E402
from vmtui.app import VmtuiApp  # noqa: E402
from vmtui.session import Session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests" / "tui" / "data" / "screen.toml"
SHELL_ON_TTY1 = "for p in /proc/[0-9]*; do readlink $p/fd/0 || true; done 2>/dev/null | grep -q /dev/tty1"
TICKS = os.sysconf("SC_CLK_TCK")
BIRDS = ("OSPREY", "HERON", "PLOVER", "CURLEW", "BITTERN", "MERLIN")


def qemu_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def measure(pilot, seconds: float, qemu_pid: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(% of a core in this process, % in QEMU) over `seconds` of the app running."""
    own, qemu, started = own_cpu_seconds(), qemu_cpu_seconds(qemu_pid), time.monotonic()
    while time.monotonic() - started < seconds:
        await pilot.pause(0.05)
    elapsed = time.monotonic() - started
    return (
        100 * (own_cpu_seconds() - own) / elapsed,
        100 * (qemu_cpu_seconds(qemu_pid) - qemu) / elapsed,
    )


def redraw_screen(machine, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    machine.execute("(while :; do date +%T.%N > /dev/tty1; sleep 0.1; done) >/dev/null 2>&1 &")
    stop.wait()
    machine.execute("kill %1 2>/dev/null; pkill -f 'date +%T' 2>/dev/null; true")


async def pane_cost(session: Session, seconds: float, out: Path) -> None:
    script = out / "idle.py"
    script.write_text("start_all()\n")
    config = dataclasses.replace(session.config, script_path=script, source_path=None)
    app = VmtuiApp(config, lambda cfg: session, autostart=True, clock=None, state_dir=out / "state")
    machine = session.driver.machine_named("desk")
    async with app.run_test(size=(160, 48)) as pilot:
        while not (machine.is_up() and not app.script_running):
            await pilot.pause(0.1)
        await asyncio.to_thread(machine.wait_until_succeeds, SHELL_ON_TTY1, 300)
        assert machine.pid is not None
        machine.succeed("printf '\\033c' > /dev/tty1")
        await pilot.pause(3.0)  # let the app settle after its start
        still_base = await measure(pilot, seconds, machine.pid)
        app.pane_for("desk").view.focus()
        await pilot.press("g")
        await pilot.pause(1.0)
        feed = app.screens.feeds["desk"]
        grabbed_before = feed.frames_grabbed
        still = await measure(pilot, seconds, machine.pid)
        dumps = feed.frames_grabbed - grabbed_before
        stop = threading.Event()
        drawer = threading.Thread(target=redraw_screen, args=(machine, stop))
        drawer.start()
        await pilot.pause(1.0)
        delivered_before = feed.frames_delivered
        moving = await measure(pilot, seconds, machine.pid)
        delivered = feed.frames_delivered - delivered_before
        app.action_toggle_screen("desk")  # close the pane; the guest keeps redrawing
        await pilot.pause(1.0)
        moving_base = await measure(pilot, seconds, machine.pid)
        stop.set()
        drawer.join()
        print("2. CPU of one visible screen pane (1280x800 screen, 160x48 terminal), % of one core")
        print(f"   still screen,  no pane:   vmtui {still_base[0]:5.1f}   QEMU {still_base[1]:5.1f}")
        print(f"   still screen,  pane:      vmtui {still[0]:5.1f}   QEMU {still[1]:5.1f}"
              f"   ({dumps / seconds:.1f} dumps/s)")
        print(f"   redrawn/0.1 s, no pane:   vmtui {moving_base[0]:5.1f}   QEMU {moving_base[1]:5.1f}")
        print(f"   redrawn/0.1 s, pane:      vmtui {moving[0]:5.1f}   QEMU {moving[1]:5.1f}"
              f"   ({delivered / seconds:.1f} new pictures/s drawn)")
        print(f"   the pane costs: still vmtui {still[0] - still_base[0]:+.1f}, QEMU {still[1] - still_base[1]:+.1f};"
              f" redrawn vmtui {moving[0] - moving_base[0]:+.1f}, QEMU {moving[1] - moving_base[1]:+.1f}")
        await pilot.press("q")


def wait_all_variants(machine, regex: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """The NixOS way: read every variant of a screenshot, then decide."""
    pattern = re.compile(regex)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if any(pattern.search(text) for text in machine.get_screen_text_variants()):
            return
        time.sleep(0.05)
    raise TimeoutError(regex)


def ocr_latency(session: Session, rounds: int) -> None:
    machine = session.driver.machine_named("desk")
    results: dict[str, list[float]] = {"wait_for_text (first match)": [], "all variants, then decide": []}
    words = iter(f"{bird} {colour}" for colour in ("RED", "GREEN", "BLUE", "WHITE", "BLACK") for bird in BIRDS)
    for _round in range(rounds):
        for label, wait in (
            ("wait_for_text (first match)", lambda word: machine.wait_for_text(word, timeout=300)),
            ("all variants, then decide", lambda word: wait_all_variants(machine, word, 300)),
        ):
            # Letters only: OCR confuses 0 and O, 1 and l.
            word = next(words)
            machine.succeed("printf '\\033c' > /dev/tty1")
            shown_at: list[float] = []

            def show(word: str = word) -> None:
                time.sleep(2.0)  # the wait is already polling the empty screen
                machine.succeed(f"printf '\\n\\n   {word}\\n' > /dev/tty1")
                shown_at.append(time.monotonic())

            writer = threading.Thread(target=show)
            writer.start()
            wait(word)
            returned = time.monotonic()
            writer.join()
            results[label].append(returned - shown_at[0])
    print("1. Text appears on the screen -> the wait returns (seconds; median, min, max)")
    for label, values in results.items():
        print(f"   {label:28} {statistics.median(values):5.2f} {min(values):5.2f} {max(values):5.2f}")

    machine.succeed("printf '\\033c\\n\\n   KESTREL\\n' > /dev/tty1")
    with machine._screendump() as dump:
        passes: dict[str, list[float]] = {"first match": [], "all three variants": []}
        for _ in range(rounds):
            started = time.monotonic()
            outcome = ocr.first_match(dump, re.compile("KESTREL"))
            passes["first match"].append(time.monotonic() - started)
            assert outcome.matched
            started = time.monotonic()
            ocr.screen_text_variants(dump)
            passes["all three variants"].append(time.monotonic() - started)
    print(f"   one OCR pass on a matching screen (workers: {ocr.worker_count()}):")
    for label, values in passes.items():
        print(f"   {label:28} {statistics.median(values):5.2f} {min(values):5.2f} {max(values):5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-screen-") as tmp:
        out = Path(tmp)
        session = Session(load_spec(SPEC), EventBus(), out_dir=out)
        try:
            machine = session.driver.machine_named("desk")
            machine.start()
            machine.wait_until_succeeds(SHELL_ON_TTY1, 300)
            ocr_latency(session, args.rounds)
            asyncio.run(pane_cost(session, args.seconds, out))
        finally:
            session.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
