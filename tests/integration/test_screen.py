"""The screen API on a graphical tiny guest, with real OCR (Tesseract).

One node with `graphics` on: a VGA framebuffer console with a root shell on
tty1.  Text written to /dev/tty1 shows on the screen; keys typed with
`send_chars` reach that shell.  The node is shared by the module's tests.
"""

from __future__ import annotations

import struct
import threading

import pytest

from driver.errors import RequestedAssertionFailed
from driver.events import BlockOpened, ScreenCaptured
from driver.screen import frame_from_ppm

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def screen_node(vm_network):  # type: ignore[no-untyped-def]
    net = vm_network({"desk": {"vlans": [1], "graphics": True}}, cancel_event=threading.Event())
    net.start_all()
    machine = net["desk"]
    # The shell on tty1 starts once the framebuffer driver is loaded.
    machine.wait_until_succeeds(
        "test -e /dev/fb0 && for p in /proc/[0-9]*; do readlink $p/fd/0 || true; done 2>/dev/null | grep -q /dev/tty1",
        timeout=300,
    )
    return net


def _clear_and_write(machine, text: str) -> None:  # type: ignore[no-untyped-def]
    # Clear the console (ESC c) so earlier text cannot match, then write.
    machine.succeed(f"printf '\\033c\\n\\n   {text}\\n' > /dev/tty1")


def test_wait_for_text_finds_text_written_to_the_screen(screen_node) -> None:  # type: ignore[no-untyped-def]
    machine = screen_node["desk"]
    _clear_and_write(machine, "PELICAN ORBIT 4711")
    before = len(screen_node.events)
    machine.wait_for_text(r"PELICAN ORBIT", timeout=300)
    captured = [e for e in screen_node.events[before:] if isinstance(e, ScreenCaptured)]
    assert len(captured) == 1
    # The matched screen is published inside the wait's block, as a PNG.
    opened = {e.block_id: e for e in screen_node.events[before:] if isinstance(e, BlockOpened)}
    assert captured[0].block_id in opened
    assert opened[captured[0].block_id].title == "waiting for PELICAN ORBIT to appear on screen"
    assert captured[0].png.startswith(b"\x89PNG")


def test_get_screen_text_returns_the_text(screen_node) -> None:  # type: ignore[no-untyped-def]
    machine = screen_node["desk"]
    _clear_and_write(machine, "MARMALADE HARBOUR")
    # The framebuffer console reaches the screen a moment after the write.
    machine.wait_for_text("MARMALADE", timeout=300)
    text = machine.get_screen_text()
    assert "MARMALADE HARBOUR" in text
    variants = machine.get_screen_text_variants()
    assert len(variants) == 3
    assert any("MARMALADE" in variant for variant in variants)


def test_wait_for_text_times_out_naming_the_text_it_read(screen_node) -> None:  # type: ignore[no-untyped-def]
    machine = screen_node["desk"]
    _clear_and_write(machine, "QUIET MEADOW")
    with pytest.raises(RequestedAssertionFailed, match="waiting for NEVER SHOWN to appear on screen: action timed out"):
        machine.wait_for_text("NEVER SHOWN", timeout=1)


def test_screenshot_writes_a_png_of_the_screen_size(screen_node) -> None:  # type: ignore[no-untyped-def]
    machine = screen_node["desk"]
    machine.screenshot("desk-screen")
    png = (machine.out_dir / "desk-screen.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    frame = machine.screen_frame()
    assert (width, height) == (frame.width, frame.height)
    # The guest's framebuffer console says how big it made the screen.
    virtual_size = machine.succeed("cat /sys/class/graphics/fb0/virtual_size").strip()
    fb_width, fb_height = (int(n) for n in virtual_size.split(","))
    assert (width, height) == (fb_width, fb_height)


def test_send_chars_types_into_the_shell_on_the_screen(screen_node) -> None:  # type: ignore[no-untyped-def]
    machine = screen_node["desk"]
    machine.succeed("rm -f /tmp/typed")
    machine.send_chars("echo Typed-At_The:Keyboard! > /tmp/typed\n")
    machine.wait_until_succeeds("test -s /tmp/typed", timeout=60)
    assert machine.succeed("cat /tmp/typed") == "Typed-At_The:Keyboard!\n", machine.get_screen_text()


def test_the_viewer_frame_changes_only_when_the_screen_does(screen_node) -> None:  # type: ignore[no-untyped-def]
    machine = screen_node["desk"]
    _clear_and_write(machine, "STILL")
    machine.succeed("sleep 1")  # the cursor blinks: let it settle into a dump pair
    first = machine.screen_frame()
    _clear_and_write(machine, "MOVED ON")
    changed = machine.screen_frame()
    assert changed.digest != first.digest
    assert frame_from_ppm(b"P6\n1 1\n255\n\x00\x00\x00").digest != changed.digest
