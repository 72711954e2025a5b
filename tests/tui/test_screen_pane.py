"""The screen pane against a real graphical guest: it opens, follows the
screen, and typed keys reach the guest; the timeline keeps the screen
`wait_for_text` matched on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest
from textual.widgets.tree import TreeNode

from driver import processes
from driver.events import EventBus
from driver.spec import load_spec
from helpers import script_app, wait_until
from vmtui.app import VmtuiApp
from vmtui.session import Session
from widgets.run_status import RunStatus
from widgets.screen_view import ScreenPane, ScreenPictureScreen, ScreenView
from widgets.timeline import Timeline

pytestmark = pytest.mark.vm

SIZE = (160, 48)
SPEC = Path(__file__).resolve().parent / "data" / "screen.toml"
SHELL_ON_TTY1 = "for p in /proc/[0-9]*; do readlink $p/fd/0 || true; done 2>/dev/null | grep -q /dev/tty1"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    session = Session(load_spec(SPEC), EventBus(), out_dir=tmp_path_factory.mktemp("out"))
    try:
        yield session
    finally:
        session.close()
        leftovers = [p.pid for p in processes.registry.live() if p.poll() is None]
        assert not leftovers, f"processes left running: {leftovers}"


def finished(app: VmtuiApp) -> bool:
    return app.query_one(RunStatus).state in ("passed", "failed", "stopped") and not app.script_running


def all_nodes(node: TreeNode) -> Iterator[TreeNode]:  # type: ignore[type-arg]
    for child in node.children:
        yield child
        yield from all_nodes(child)


def screen_text(view: ScreenView) -> str:
    return "".join(strip.text for strip in view._strips)


async def test_screen_pane_follows_the_screen_and_types_into_the_guest(tmp_path: Path, session: Session) -> None:
    config = session.config
    app = script_app(tmp_path, SPEC.with_name("screen_script.py").read_text(), nodes=config.nodes, autostart=True, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: finished(app), "the script ran")
        assert app.query_one(RunStatus).state == "passed"
        machine = session.driver.machine_named("desk")
        await asyncio.to_thread(machine.wait_until_succeeds, SHELL_ON_TTY1, 120)

        # The timeline holds the screen wait_for_text matched on; it opens.
        timeline = app.query_one(Timeline)
        screens = [node for node in all_nodes(timeline.root) if node.data is not None and node.data.kind == "screen"]
        assert screens, "no screen entry in the timeline"
        entry = screens[0]
        entry.parent.expand()
        await pilot.pause()
        assert entry.data.screen.title == "matched GIRAFFE"
        timeline.focus()
        timeline.select_node(entry)
        await pilot.pause()
        await wait_until(pilot, lambda: isinstance(app.screen, ScreenPictureScreen), "the matched screen opened")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ScreenPictureScreen), "the picture closed")

        # `g` on the node's console opens its screen pane, which gets a picture.
        app.pane_for("desk").view.focus()
        await pilot.press("g")
        await wait_until(pilot, lambda: len(app.query(ScreenPane)) == 1, "a screen pane")
        pane = app.query_one(ScreenPane)
        view = pane.view
        await wait_until(pilot, lambda: view.frames_shown > 0, "a first picture")
        assert "×" in str(pane.border_subtitle)
        assert app.focused is view

        # The guest writes to its screen: the pane shows a new picture.
        shown = view.frames_shown
        before = screen_text(view), [strip._segments for strip in view._strips]
        await asyncio.to_thread(machine.succeed, "printf '\\033c\\n\\n\\n   ZEBRA ZEBRA ZEBRA ZEBRA\\n' > /dev/tty1")
        await wait_until(pilot, lambda: view.frames_shown > shown, "a new picture after the guest wrote")
        assert [strip._segments for strip in view._strips] != before[1]

        # Keys typed into the focused pane reach the guest's shell on tty1.
        await asyncio.to_thread(machine.succeed, "rm -f /tmp/from-pane")
        await pilot.press(*"echo Pane-Typed > /tmp/from-pane", "enter")

        def arrived() -> bool:
            status, out = machine.execute("cat /tmp/from-pane")
            return status == 0 and out == "Pane-Typed\n"

        async def poll_arrived() -> None:
            for _ in range(240):
                if await asyncio.to_thread(arrived):
                    return
                await pilot.pause(0.25)
            raise AssertionError("the typed line never reached the guest")

        await poll_arrived()

        # Ctrl+] leaves the pane; `g` on the console closes it and ends its feed.
        await pilot.press("ctrl+right_square_bracket")
        assert app.focused is not view
        feed = app.screens.feeds["desk"]
        app.pane_for("desk").view.focus()
        await pilot.press("g")
        await wait_until(pilot, lambda: len(app.query(ScreenPane)) == 0, "the pane closed")
        assert feed.stopped and "desk" not in app.screens.feeds
