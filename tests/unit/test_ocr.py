"""OCR with the real Tesseract on pictures drawn here (no VM needed)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from driver import ocr
from driver.errors import MachineError


def console_picture(path: Path, text: str) -> Path:
    """White text on black, as a text console shows it."""
    image = Image.new("RGB", (640, 160), "black")
    draw = ImageDraw.Draw(image)
    draw.text((20, 50), text, fill=(170, 170, 170), font=ImageFont.load_default(size=36))
    image.save(path)
    return path


def tesseract_children() -> list[int]:
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "tesseract":
                    found.append(int(pid))
            except OSError:
                pass
    return found


@pytest.fixture(autouse=True)
def one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # One Tesseract at a time, as on a 2-core machine: the order is known.
    monkeypatch.setenv("NIX_BUILD_CORES", "1")


def test_the_command_is_the_nixos_one() -> None:
    argv = ocr.tesseract_command(Path("/x.ppm"), engine_mode=2)
    assert argv == ["tesseract", "/x.ppm", "-", "--oem", "2", "-c", "debug_file=/dev/null", "--psm", "11"]


def test_worker_count_follows_nixos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIX_BUILD_CORES", "16")
    assert ocr.worker_count() == 4
    monkeypatch.setenv("NIX_BUILD_CORES", "2")
    assert ocr.worker_count() == 1


def test_screen_text_reads_the_plain_picture(tmp_path: Path) -> None:
    picture = console_picture(tmp_path / "screen.png", "LANTERN 42")
    assert "LANTERN 42" in ocr.screen_text(picture)


def test_variants_are_plain_positive_and_negative(tmp_path: Path) -> None:
    picture = console_picture(tmp_path / "screen.png", "LANTERN 42")
    texts = ocr.screen_text_variants(picture)
    assert len(texts) == 3
    assert any("LANTERN" in text for text in texts)
    assert (tmp_path / "screen.positive.png").exists() and (tmp_path / "screen.negative.png").exists()


def test_preprocessing_scales_to_300_dpi_in_grey(tmp_path: Path) -> None:
    picture = console_picture(tmp_path / "screen.png", "LANTERN")
    positive = Image.open(ocr.preprocess(picture, negate=False))
    negative = Image.open(ocr.preprocess(picture, negate=True))
    assert positive.mode == "L" and positive.size == (round(640 * 300 / 72), round(160 * 300 / 72))
    # Black background: dark in the positive, light in the negated variant.
    assert positive.getpixel((5, 5)) < 64 and negative.getpixel((5, 5)) > 192


def test_first_match_stops_at_the_first_matching_variant(tmp_path: Path) -> None:
    picture = console_picture(tmp_path / "screen.png", "LANTERN 42")
    seen: list[str] = []
    outcome = ocr.first_match(picture, re.compile("LANTERN"), on_text=seen.append)
    assert outcome.matched and outcome.fresh_image is None
    # The plain picture matched: the processed variants never ran to the end.
    assert len(outcome.texts) == 1 and seen == outcome.texts
    assert tesseract_children() == []


def test_first_match_reads_every_variant_when_nothing_matches(tmp_path: Path) -> None:
    picture = console_picture(tmp_path / "screen.png", "LANTERN 42")
    outcome = ocr.first_match(picture, re.compile("NOT THERE"))
    assert not outcome.matched and len(outcome.texts) == 3


def test_a_fresh_screenshot_catches_text_that_appeared_during_the_pass(tmp_path: Path) -> None:
    old = console_picture(tmp_path / "old.png", "NOTHING YET")
    new = console_picture(tmp_path / "new.png", "HARBOUR LIGHTS")
    taken: list[float] = []

    @contextlib.contextmanager
    def fresh() -> Iterator[Path]:
        taken.append(time.monotonic())
        yield new

    started = time.monotonic()
    outcome = ocr.first_match(old, re.compile("HARBOUR"), fresh=fresh, retry_delays=(0.2, 30.0))
    assert outcome.matched and outcome.fresh_image == new.read_bytes()
    assert len(taken) == 1 and taken[0] - started >= 0.2
    # The second delayed read was cancelled: no 30 s wait, nothing left running.
    assert time.monotonic() - started < 25 and tesseract_children() == []


def test_a_missing_tesseract_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MachineError, match="`tesseract` is not available"):
        ocr.screen_text(tmp_path / "screen.png")


def test_an_unreadable_picture_is_an_ocr_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(MachineError, match="OCR failed"):
        ocr.screen_text(broken)
