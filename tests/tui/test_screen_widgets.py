"""The screen pane's widgets on their own: drawing, real-pixel mode, keys."""

from __future__ import annotations

from PIL import Image
from textual.app import App, ComposeResult
from textual.widgets import Input

from widgets.screen_view import ScreenPane, ScreenView


class Recorder:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def press_key(self, key: str) -> None:
        self.keys.append(key)


class PaneApp(App[None]):
    def __init__(self, pixel_class: type | None = None) -> None:
        super().__init__()
        self.pixel_class = pixel_class

    def compose(self) -> ComposeResult:
        yield ScreenPane("desk", pixel_class=self.pixel_class)
        yield Input(id="after")


def picture() -> Image.Image:
    image = Image.new("RGB", (40, 20), "black")
    image.paste((200, 200, 200), (5, 4, 30, 8))
    return image


async def test_a_picture_is_drawn_in_half_blocks() -> None:
    app = PaneApp()
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(ScreenPane)
        size = pane.view.cell_pixels(1280, 800)
        assert size[0] <= pane.view.size.width and size[1] <= 2 * pane.view.size.height
        pane.show_frame((1280, 800), picture())
        await pilot.pause()
        assert pane.view.frames_shown == 1
        assert "1280×800" in str(pane.border_subtitle)
        row = pane.view.render_line(3)
        assert "▀" in row.text


async def test_keys_go_to_the_target_and_ctrl_bracket_leaves() -> None:
    app = PaneApp()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(ScreenView)
        target = Recorder()
        view.target = target
        view.focus()
        await pilot.press("l", "s", "enter", "ctrl+c", "f2", "A")
        assert target.keys == ["l", "s", "ret", "ctrl-c", "f2", "A"]
        await pilot.press("ctrl+right_square_bracket")
        assert app.focused is app.query_one("#after")
        assert target.keys[-1] == "A"


async def test_real_pixel_mode_hands_the_picture_to_textual_image() -> None:
    from textual_image.widget import HalfcellImage

    app = PaneApp(pixel_class=HalfcellImage)
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(ScreenPane)
        assert pane.uses_pixels
        shown = picture()
        pane.show_frame((1280, 800), shown)
        await pilot.pause()
        pixels = pane.query_one(HalfcellImage)
        assert pixels.display and pixels.image is shown
        assert pane.view.frames_shown == 1


async def test_pictures_offered_from_a_thread_draw_the_newest() -> None:
    import threading

    app = PaneApp()
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(ScreenPane)
        older, newer = picture(), Image.new("RGB", (40, 20), (0, 0, 255))

        def offer_both() -> None:
            pane.offer((40, 20), older)
            pane.offer((40, 20), newer)
            pane.offer_message("still here")

        thread = threading.Thread(target=offer_both)
        thread.start()
        thread.join()
        await pilot.pause()
        await pilot.pause()
        assert pane.view.frames_shown == 1  # the older one was replaced before it was drawn
        row = list(pane.view.render_line(1))
        assert any(seg.style is not None and seg.style.bgcolor is not None
                   and seg.style.bgcolor.triplet.hex == "#0000ff" for seg in row)
        assert pane.border_subtitle == "still here"


async def test_the_view_says_when_it_leaves_and_returns_to_the_screen() -> None:
    app = PaneApp()
    async with app.run_test(size=(60, 20)) as pilot:
        seen: list[bool] = []
        view = app.query_one(ScreenView)
        view.visibility_changed = seen.append
        other = app.query_one("#after")
        app.screen.maximize(other)  # another pane fills the screen: the picture is hidden
        await pilot.pause()
        await pilot.pause()
        assert seen and seen[-1] is False
        app.screen.minimize()
        await pilot.pause()
        await pilot.pause()
        assert seen[-1] is True
