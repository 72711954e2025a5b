"""The screen pane's pieces without a VM: key names, half-block drawing, the feed loop."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from driver.errors import MachineError
from driver.screen import Frame, frame_from_ppm
from vmtui.screen_pane import ScreenFeed, scaled_picture
from widgets.screen_view import UPPER_HALF, fit_cells, halfblock_strips, qemu_key


@pytest.mark.parametrize(
    ("key", "character", "name"),
    [
        ("a", "a", "a"),
        ("A", "A", "A"),  # the machine adds shift, as send_key does for characters
        ("exclamation_mark", "!", "!"),
        ("space", " ", "spc"),
        ("enter", "\r", "ret"),
        ("escape", "\x1b", "esc"),
        ("backspace", "\x7f", "backspace"),
        ("tab", "\t", "tab"),
        ("ctrl+c", "\x03", "ctrl-c"),
        ("ctrl+alt+delete", None, "ctrl-alt-delete"),
        ("alt+f2", None, "alt-f2"),
        ("f1", None, "f1"),
        ("pagedown", None, "pgdn"),
        ("shift+up", None, "shift-up"),
        ("ctrl+minus", None, "ctrl-minus"),
    ],
)
def test_textual_keys_become_qemu_key_names(key: str, character: str | None, name: str) -> None:
    assert qemu_key(key, character) == name


def test_keys_qemu_has_no_name_for_are_not_sent() -> None:
    assert qemu_key("ctrl+super+x", None) is None
    assert qemu_key("unknown_key", None) is None


def test_fit_keeps_the_shape_in_half_blocks() -> None:
    # 1280x800 into 80x24 cells: 48 pixel rows available, width follows.
    assert fit_cells(1280, 800, 80, 24) == (76, 48)
    assert fit_cells(1280, 800, 200, 10) == (32, 20)
    assert fit_cells(0, 0, 80, 24) == (0, 0)


def test_half_blocks_carry_two_pixels_per_cell() -> None:
    image = Image.new("RGB", (3, 2), "black")
    image.putpixel((1, 0), (255, 0, 0))
    image.putpixel((1, 1), (0, 0, 255))
    (strip,) = halfblock_strips(image)
    assert strip.text == UPPER_HALF * 3
    segments = list(strip)
    assert len(segments) == 3  # black, red-over-blue, black
    middle = segments[1].style
    assert middle is not None and middle.color is not None and middle.bgcolor is not None
    assert middle.color.triplet.hex == "#ff0000" and middle.bgcolor.triplet.hex == "#0000ff"


def test_an_even_screen_is_one_segment_per_row() -> None:
    strips = halfblock_strips(Image.new("RGB", (80, 48), "black"))
    assert len(strips) == 24 and all(len(list(strip)) == 1 for strip in strips)


def frame(value: int) -> Frame:
    return frame_from_ppm(b"P6\n2 2\n255\n" + bytes([value]) * 12)


def test_scaled_picture_keeps_the_colours() -> None:
    picture = scaled_picture(frame(200), (1, 1))
    assert picture.size == (1, 1) and picture.getpixel((0, 0)) == (200, 200, 200)


def run_feed(feed: ScreenFeed) -> threading.Thread:
    thread = threading.Thread(target=feed.run, daemon=True)
    thread.start()
    return thread


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    give_up = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < give_up, what
        time.sleep(0.005)


def test_the_feed_delivers_only_changed_frames_and_only_while_visible() -> None:
    screens = [frame(0)] * 5 + [frame(9)] * 5
    grabbed: list[int] = []
    delivered: list[str] = []

    def grab() -> Frame:
        grabbed.append(1)
        return screens[min(len(grabbed), len(screens)) - 1]

    feed = ScreenFeed(grab, lambda f: delivered.append(f.digest), lambda _m: None, interval=0.001)
    thread = run_feed(feed)
    time.sleep(0.05)
    assert grabbed == []  # not visible yet: no dumps at all
    feed.visible.set()
    wait_for(lambda: len(grabbed) >= 12, "grabs")
    feed.visible.clear()
    time.sleep(0.02)
    count = len(grabbed)
    time.sleep(0.05)
    assert len(grabbed) <= count + 1  # hidden: the loop stops dumping
    assert delivered == [frame(0).digest, frame(9).digest]
    feed.redraw()  # a resize: the same picture again
    feed.visible.set()
    wait_for(lambda: len(delivered) == 3, "a redraw")
    feed.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_the_feed_reports_a_missing_screen_once_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Frame | MachineError] = [MachineError("desk: the machine is not running")] * 3 + [frame(1)]
    reports: list[str] = []
    delivered: list[Frame] = []

    def grab() -> Frame:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, MachineError):
            raise answer
        return answer

    monkeypatch.setattr("vmtui.screen_pane.RETRY_INTERVAL", 0.001)
    feed = ScreenFeed(grab, delivered.append, reports.append, interval=0.001)
    feed.visible.set()
    thread = run_feed(feed)
    wait_for(lambda: delivered, "a frame after the machine came up")
    feed.stop()
    thread.join(5)
    assert reports == ["desk: the machine is not running"]
