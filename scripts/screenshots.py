"""Regenerate screenshots/*.svg from the real app running the todos demo on real VMs.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--size 150x44]

Four moments of one session (the VMs boot once):
  running.svg      the run in progress: both nodes booting, consoles filling
  breakpoint.svg   a rerun stopped at a breakpoint in a subtest, a REPL line run in a node
  post-mortem.svg  an edited script failing: stopped on the failing line, VMs still up
  editor.svg       the script pane as an editor: a misspelt node name marked by the
                   lint, the completion list of a node's methods
and one of the screen example (a graphical node):
  screen.svg       the node's screen pane open beside its console, after the script passed
and one of the fleet example (ten nodes):
  many-nodes.svg   the node overview beside the chosen console, after the script passed

`--only todos|screen|fleet` takes just those pictures.

The script runs from a temporary copy of todos.py, so the post-mortem can
edit it without touching the example.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402

from driver.events import EventBus  # noqa: E402
from driver.spec import load_spec  # noqa: E402
from vmtui.app import VmtuiApp  # noqa: E402
from vmtui.session import Session  # noqa: E402
from widgets.debugger import ReplInput  # noqa: E402
from widgets.run_status import RunStatus  # noqa: E402

EXAMPLE = ROOT / "vmtui" / "examples" / "todos.toml"
DEADLINE = 600.0


async def wait_until(pilot: Pilot[int], condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > give_up:
            raise SystemExit(f"screenshots: gave up waiting for {what}")
        await pilot.pause(0.05)


def line_of(script: Path, text: str) -> int:
    for number, line in enumerate(script.read_text().splitlines(), 1):
        if text in line:
            return number
    raise SystemExit(f"screenshots: {text!r} not found in {script}")


async def shoot(out: Path, size: tuple[int, int], work: Path) -> None:
    config = load_spec(EXAMPLE)
    script = work / "todos.py"
    shutil.copy(config.script_path, script)
    config = dataclasses.replace(config, script_path=script)
    sessions: list[Session] = []

    def make_session(cfg: object) -> Session:
        session = Session(config, EventBus(), out_dir=work / "out")
        sessions.append(session)
        return session

    ReplInput.cursor_blink = False
    app = VmtuiApp(config, make_session, state_dir=work / "state")
    status = lambda: app.query_one(RunStatus).state  # noqa: E731
    try:
        async with app.run_test(size=size) as pilot:
            # 1. The run in progress: both consoles have something, the script is running.
            await wait_until(
                pilot,
                lambda: status() == "running" and all(pane.view.line_count >= 2 for pane in app.panes),
                "consoles filling",
            )
            await pilot.pause(0.3)
            app.save_screenshot("running.svg", str(out))
            await wait_until(pilot, lambda: status() in ("passed", "failed"), "the first run to end")

            # 2. A rerun stopped at a breakpoint; a REPL line run in a node.
            breakpoint_line = line_of(script, 't.assertEqual([todo["id"]')
            app.script_view.cursor_line = breakpoint_line
            app.toggle_breakpoint(breakpoint_line)
            await pilot.press("r")
            await wait_until(pilot, lambda: app.script_view.paused_line == breakpoint_line, "the breakpoint")
            await pilot.press("exclamation_mark", *'server.succeed("ls -l /srv/www")', "enter")
            await wait_until(pilot, lambda: "todos.json" in _repl_text(app), "the REPL answer")
            await pilot.press("escape")
            await pilot.pause(0.3)
            app.save_screenshot("breakpoint.svg", str(out))
            app.toggle_breakpoint(breakpoint_line)
            await pilot.press("c")
            await wait_until(pilot, lambda: status() in ("passed", "failed"), "the rerun to end")

            # 3. An edit breaks the test: post-mortem on the failing line.
            source = script.read_text()
            script.write_text(source.replace('["read the list across the VLAN"])', '["boot the server and the client"])'))
            await pilot.press("r")
            await wait_until(pilot, lambda: status() == "post-mortem", "the post-mortem stop")
            await pilot.press("exclamation_mark", *"still_open", "enter")
            await wait_until(pilot, lambda: "read the list" in _repl_text(app), "the REPL answer")
            await pilot.press("escape")
            await pilot.pause(0.3)
            app.save_screenshot("post-mortem.svg", str(out))
            await pilot.press("x")
            await wait_until(pilot, lambda: not app.script_running, "the run to stop")

            # 4. The editor: a line being written, a misspelt node name marked, completion open.
            app.script_view.goto_line(line_of(script, "server.wait_for_open_port(3000)"))
            app.script_view.focus()
            await pilot.press("e")
            editor = app.script_editor
            editor.area.cursor_blink = False
            await pilot.press("end", "enter", "tab", *'sever.succeed("test -d /srv/www")')
            await wait_until(pilot, lambda: any("sever" in note.message for note in editor.notes), "the lint mark")
            await pilot.press("enter", "tab", *"server.wait_for_", "ctrl+@")
            await wait_until(pilot, lambda: editor.query_one("#completions").has_class("-open"), "the completion list")
            await pilot.pause(0.3)
            app.save_screenshot("editor.svg", str(out))
    finally:
        for session in sessions:
            session.close()


async def shoot_screen(out: Path, size: tuple[int, int], work: Path) -> None:
    from widgets.screen_view import ScreenPane

    config = load_spec(ROOT / "vmtui" / "examples" / "screen.toml")
    session = Session(config, EventBus(), out_dir=work / "screen-out")
    app = VmtuiApp(config, lambda cfg: session, autostart=True, state_dir=work / "screen-state")
    try:
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: app.query_one(RunStatus).state in ("passed", "failed"), "the screen example")
            # Colour bands under the text: at terminal size a 1280x800
            # console's glyphs are a few cells, the bands show the picture.
            machine = session.driver.machine_named("desk")
            bands = "".join(f"printf '\\033[{40 + c}m%160s\\n' '' '' '' '' '' '';" for c in range(1, 8))
            machine.succeed(f"{{ printf '\\033[0m\\n  GRAPHICAL NODES WORK\\n\\n'; {bands} printf '\\033[0m'; }} > /dev/tty1")
            app.pane_for("desk").view.focus()
            await pilot.press("g")
            await wait_until(pilot, lambda: any(p.view.frames_shown for p in app.query(ScreenPane)), "a picture")
            await pilot.pause(1.5)
            app.save_screenshot("screen.svg", str(out))
            await pilot.press("ctrl+right_square_bracket")
    finally:
        session.close()


async def shoot_fleet(out: Path, size: tuple[int, int], work: Path) -> None:
    from widgets.node_overview import NodeOverview

    config = load_spec(ROOT / "vmtui" / "examples" / "fleet.toml")
    session = Session(config, EventBus(), out_dir=work / "fleet-out")
    app = VmtuiApp(config, lambda cfg: session, autostart=True, state_dir=work / "fleet-state")
    try:
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: app.query_one(RunStatus).state in ("passed", "failed"), "the fleet example")
            overview = app.query_one(NodeOverview)
            await wait_until(pilot, lambda: "GET /index.html" in overview.render().plain, "the web servers' logs")
            names = [node.name for node in config.nodes]
            await pilot.press(str(names.index("web1") + 1))
            await pilot.pause(1.0)
            app.save_screenshot("many-nodes.svg", str(out))
    finally:
        session.close()


def _repl_text(app: VmtuiApp) -> str:
    return "\n".join(strip.text for strip in app.query_one("#repl-log").lines)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--size", default="150x44", help="columns x rows")
    parser.add_argument("--only", choices=("todos", "screen", "fleet"), action="append",
                        help="take only these pictures (repeatable)")
    args = parser.parse_args()
    wanted = set(args.only or ("todos", "screen", "fleet"))
    columns, rows = (int(part) for part in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmtui-shots-") as work:
        shots = {"todos": (shoot, ("running", "breakpoint", "post-mortem", "editor")),
                 "screen": (shoot_screen, ("screen",)), "fleet": (shoot_fleet, ("many-nodes",))}
        for key, (take, names) in shots.items():
            if key in wanted:
                asyncio.run(take(args.out, (columns, rows), Path(work)))
                for name in names:
                    print(args.out / f"{name}.svg")


if __name__ == "__main__":
    main()
