"""SteadyInput: typing repaints the input instead of relaying out the screen."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widget import Widget

from widgets.steady_input import SteadyInput


class InputApp(App[None]):
    def __init__(self, css: str = "") -> None:
        super().__init__()
        self._css = css
        self.layout_requests: list[str] = []

    def compose(self) -> ComposeResult:
        yield SteadyInput(id="typed")

    def on_mount(self) -> None:
        if self._css:
            self.stylesheet.add_source(self._css, read_from=("test", "inline"))
            self.stylesheet.update(self)


def _record_layout_requests(app: InputApp, widget: Widget, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the layouts `widget` asks Textual for (after SteadyInput's own filter)."""
    original = Widget.refresh

    def refresh(self: Widget, *regions: Any, **flags: Any) -> Widget:
        if self is widget and flags.get("layout"):
            app.layout_requests.append(type(widget).__name__)
        return original(self, *regions, **flags)

    monkeypatch.setattr(Widget, "refresh", refresh)


async def test_typing_asks_for_no_layout_and_text_still_shows_and_scrolls(monkeypatch: pytest.MonkeyPatch) -> None:
    app = InputApp()
    async with app.run_test(size=(20, 5)) as pilot:
        field = app.query_one(SteadyInput)
        field.focus()
        await pilot.pause()
        _record_layout_requests(app, field, monkeypatch)
        await pilot.press(*"hello")
        await pilot.pause()
        assert field.value == "hello"
        assert app.layout_requests == []
        assert "hello" in app.export_screenshot()  # repainted without a layout
        # A text longer than the box still scrolls to keep the cursor in view.
        await pilot.press(*"x" * 40)
        await pilot.pause()
        assert field.virtual_size.width > field.size.width
        assert field.scroll_x > 0
        assert app.layout_requests == []


async def test_auto_width_input_still_relayouts_as_it_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    app = InputApp("#typed { width: auto; }")
    async with app.run_test(size=(40, 5)) as pilot:
        field = app.query_one(SteadyInput)
        field.focus()
        await pilot.pause()
        _record_layout_requests(app, field, monkeypatch)
        await pilot.press(*"abc")
        await pilot.pause()
        assert app.layout_requests
