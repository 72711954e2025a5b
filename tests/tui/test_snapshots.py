"""SVG snapshots of the app in fixed states (recorded events, no clock, no blinking cursor).

Regenerate after an intended change of the look:
    .venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from textual.pilot import Pilot

import scenes
from vmtui.app import VmtuiApp

SIZE = (140, 42)


def _scene(feed: Callable[[VmtuiApp], None]) -> Callable[[Pilot[int]], object]:
    async def run_before(pilot: Pilot[int]) -> None:
        await pilot.pause()
        assert isinstance(pilot.app, VmtuiApp)
        feed(pilot.app)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("scene", ["running", "paused", "failed"])
def test_scene(scene: str, snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    app = scenes.scene_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=_scene(getattr(scenes, scene)))


def test_console_maximised(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[int]) -> None:
        await _scene(scenes.running)(pilot)
        await pilot.press("2", "z")

    assert snap_compare(scenes.scene_app(tmp_path), terminal_size=(100, 24), run_before=run_before)


def test_help_screen(snap_compare: Callable[..., bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The help names the keymap file: make it the same on every machine.
    monkeypatch.setenv("VMTUI_KEYMAP", "~/.config/vmtui/keymap.toml")
    assert snap_compare(scenes.scene_app(tmp_path), terminal_size=(110, 40), press=["f1"])


def test_editing_the_script(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    """The script pane as an editor: the gutter keeps the marks, a lint error is marked and listed."""

    async def run_before(pilot: Pilot[int]) -> None:
        await _scene(scenes.paused)(pilot)
        app = pilot.app
        assert isinstance(app, VmtuiApp)
        app.script_view.goto_line(4)
        await pilot.press("e", "end", "enter", *'sever.succeed("true")')
        app._lint_editor()
        app.script_editor.area.cursor_blink = False
        await pilot.pause()

    assert snap_compare(scenes.scene_app(tmp_path), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (140, 42), (200, 60)], ids=["80x24", "140x42", "200x60"])
def test_ten_nodes(size: tuple[int, int], snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    """Ten nodes: the overview beside one focused console (two at 200x60), node 7 chosen."""
    clock = scenes.FrozenClock()

    async def run_before(pilot: Pilot[int]) -> None:
        await pilot.pause()
        assert isinstance(pilot.app, VmtuiApp)
        scenes.fleet(pilot.app, clock)
        await pilot.press("7")
        await pilot.pause(0.3)

    assert snap_compare(scenes.fleet_app(tmp_path, clock), terminal_size=size, run_before=run_before)
