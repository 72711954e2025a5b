"""Screendump frames and the NixOS screenshot file rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from driver.screen import frame_from_ppm, screenshot_path


def ppm(width: int, height: int, pixels: bytes, comment: bytes = b"") -> bytes:
    return b"P6\n" + comment + f"{width} {height}\n255\n".encode() + pixels


def test_a_frame_decodes_and_hashes_its_pixels() -> None:
    black = frame_from_ppm(ppm(2, 1, b"\x00" * 6))
    assert (black.width, black.height) == (2, 1)
    assert frame_from_ppm(ppm(2, 1, b"\x00" * 6, b"# QEMU\n")).digest == black.digest
    white_dot = frame_from_ppm(ppm(2, 1, b"\x00\x00\x00\xff\xff\xff"))
    assert white_dot.digest != black.digest


def test_a_frame_becomes_a_png_of_the_same_pixels() -> None:
    pixels = bytes(range(12))
    frame = frame_from_ppm(ppm(2, 2, pixels))
    image = Image.open(io.BytesIO(frame.png()))
    assert image.size == (2, 2) and image.convert("RGB").tobytes() == pixels


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"P3\n1 1\n255\n000", "not a binary PPM"),
        (ppm(2, 2, b"\x00" * 5), "truncated"),
        (b"P6\n1 1\n65535\n" + b"\x00" * 6, "unsupported PPM depth"),
        (b"P6\nx 1\n255\n", "malformed"),
    ],
)
def test_bad_dumps_are_value_errors(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        frame_from_ppm(data)


def test_screenshot_names_follow_nixos(tmp_path: Path) -> None:
    assert screenshot_path("login", tmp_path) == tmp_path / "login.png"
    assert screenshot_path("login.jpg", tmp_path) == tmp_path / "login.jpg"
    assert screenshot_path("/elsewhere/shot", tmp_path) == Path("/elsewhere/shot.png")
    assert screenshot_path("sub/shot.png", tmp_path) == Path("sub/shot.png")
