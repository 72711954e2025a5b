"""Keys first: a console batch waits for a key on its way to the screen, boundedly.

The app is fed recorded driver events (no VMs) through its real EventBridge;
the windows are widened so that what the test checks does not depend on how
fast a loaded machine runs the app.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import scenes
import vmtui.app
from driver.events import ConsoleOutput
from vmtui.app import VmtuiApp, console_hold
from widgets.debugger import ReplInput

POLL_LIMIT = 30.0  # seconds: generous, the machine may be loaded


def console_lines(app: VmtuiApp) -> int:
    return app.pane_for("client").view.total_lines


async def wait_for_lines(app: VmtuiApp, count: int) -> None:
    deadline = time.monotonic() + POLL_LIMIT
    while console_lines(app) < count:
        assert time.monotonic() < deadline, f"the console never showed {count} lines"
        await asyncio.sleep(0.02)


def test_the_hold_waits_for_a_recent_key_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmtui.app, "KEY_FIRST_WINDOW", 0.03)
    monkeypatch.setattr(vmtui.app, "KEY_FIRST_MAX_WAIT", 0.15)
    assert console_hold(now=10.0, last_key_at=0.0, due_since=10.0) == 0.0  # nobody typing
    assert console_hold(now=10.0, last_key_at=9.9, due_since=10.0) == 0.0  # the key is drawn by now
    assert console_hold(now=10.0, last_key_at=9.99, due_since=10.0) == pytest.approx(0.02)
    # Typing without pause: the consoles' turn comes by the bound.
    assert console_hold(now=10.0, last_key_at=10.0, due_since=9.86) == pytest.approx(0.01)
    assert console_hold(now=10.0, last_key_at=10.0, due_since=9.8) == 0.0


async def test_a_console_batch_waits_for_the_key_typed_just_before(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmtui.app, "KEY_FIRST_WINDOW", 3.0)
    monkeypatch.setattr(vmtui.app, "KEY_FIRST_MAX_WAIT", 60.0)
    app = scenes.scene_app(tmp_path)
    async with app.run_test(size=(140, 42)) as pilot:
        await pilot.pause()
        scenes.running(app)
        await pilot.pause()
        app.query_one(ReplInput).focus()
        before = console_lines(app)
        await pilot.press("x")
        # Longer than a frame: without keys first the batch would be drawn at once.
        await asyncio.sleep(0.2)
        app.bus_bridge(ConsoleOutput("client", ("after the key",)))
        await pilot.pause()
        assert app.query_one(ReplInput).value == "x"
        assert console_lines(app) == before
        await wait_for_lines(app, before + 1)


async def test_consoles_are_drawn_while_someone_types_without_pause(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmtui.app, "KEY_FIRST_WINDOW", 60.0)  # every key holds the consoles...
    monkeypatch.setattr(vmtui.app, "KEY_FIRST_MAX_WAIT", 0.2)  # ...up to the bound
    app = scenes.scene_app(tmp_path)
    async with app.run_test(size=(140, 42)) as pilot:
        await pilot.pause()
        scenes.running(app)
        await pilot.pause()
        app.query_one(ReplInput).focus()
        before = console_lines(app)
        app.bus_bridge(ConsoleOutput("client", ("while typing",)))
        deadline = time.monotonic() + POLL_LIMIT
        while console_lines(app) == before:
            assert time.monotonic() < deadline, "typing held the consoles back for good"
            await pilot.press("y")
        assert console_lines(app) == before + 1
