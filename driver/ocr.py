"""Reading text off a screenshot with Tesseract, the way the NixOS driver does.

Facts this follows (reference §2.3): Tesseract runs as
`tesseract <image> - --oem 2 --psm 11 -c debug_file=/dev/null` (legacy and
LSTM engines combined; sparse text, because a screen is not a page).  The
plain screenshot gives `get_screen_text`; `get_screen_text_variants` adds
two pre-processed images, a positive and a negated one, made by scaling the
72 dpi screenshot to 300 dpi with a Catmull-Rom filter, then contrast,
normalise, despeckle, grey, sharpen, three-level posterize, (negate,)
gamma 100 and a radius-1 blur.  NixOS does that with ImageMagick; here
Pillow does the same steps in process (`preprocess`).

One difference in the engine: Debian's English model has no data for the
legacy engine, and Tesseract refuses `--oem 2` without it; the LSTM engine
alone (`--oem 1`) is used then.

Unlike NixOS, `first_match` stops as soon as one variant's text matches:
the other Tesseract processes are killed instead of being waited for.
Tesseract runs on a pool sized like NixOS's (a quarter of the cores, at
least one; `NIX_BUILD_CORES` wins over the CPU count).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from driver.errors import Cancelled, MachineError

OCR_ENGINE_MODE = 2
# Debian's `tesseract-ocr-eng` holds only the LSTM model, which the combined
# mode refuses; then the LSTM engine alone (mode 1) is used, for good.
LSTM_ONLY_ENGINE_MODE = 1
PAGE_SEGMENTATION_MODE = 11
# A Tesseract run on a full screen takes seconds under load; this only
# guards against a hung process.
TESSERACT_TIMEOUT = 300.0
# Screenshots are taken as if at 72 dpi and read at 300 dpi, as in NixOS.
_SOURCE_DPI = 72
_TARGET_DPI = 300


# A fresh screenshot for a delayed read (see OcrPass); removed on exit.
FreshScreenshot = Callable[[], AbstractContextManager[Path]]


class OcrCancelled(Cancelled):
    """The pass was closed before this variant finished (an earlier one matched)."""


_engine_mode = OCR_ENGINE_MODE


def _legacy_engine_missing(stderr: bytes) -> bool:
    return b"(legacy) engine requested" in stderr


def tesseract_command(image: Path, engine_mode: int | None = None) -> list[str]:
    """The argv NixOS runs for one image (text on stdout)."""
    return [
        "tesseract",
        str(image),
        "-",
        "--oem",
        str(_engine_mode if engine_mode is None else engine_mode),
        "-c",
        "debug_file=/dev/null",
        "--psm",
        str(PAGE_SEGMENTATION_MODE),
    ]


def require_tesseract() -> None:
    """Raise MachineError (one line, NixOS's wording) when Tesseract is missing."""
    if shutil.which("tesseract") is None:
        raise MachineError("OCR requested but `tesseract` is not available (install tesseract-ocr)")


def worker_count() -> int:
    """Parallel Tesseract runs: a quarter of the cores, at least one (as NixOS)."""
    configured = os.environ.get("NIX_BUILD_CORES")
    try:
        cores = int(configured) if configured else (os.cpu_count() or 1)
    except ValueError:
        cores = os.cpu_count() or 1
    return max(1, cores // 4)


def preprocess(screenshot: Path, negate: bool) -> Path:
    """Write the positive or negated OCR variant next to `screenshot`; returns its path.

    The steps and their order are NixOS's ImageMagick pipeline, done with
    Pillow: Pillow's bicubic filter is the Catmull-Rom spline; ImageMagick's
    mild `-contrast` is a 1.25 contrast factor here; its `-normalize` clips 2% of the darkest and 1% of the lightest pixels;
    `-despeckle` is approximated by a 3x3 median; `-blur 1x65535` (radius 1,
    a huge sigma) is a flat 3x3 average.
    """
    suffix = "negative" if negate else "positive"
    out = screenshot.with_name(f"{screenshot.stem}.{suffix}.png")
    with Image.open(screenshot) as original:
        image = original.convert("RGB")
    scale = _TARGET_DPI / _SOURCE_DPI
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    image = ImageEnhance.Contrast(image).enhance(1.25)
    image = ImageOps.autocontrast(image, cutoff=(2, 1))
    image = image.filter(ImageFilter.MedianFilter(3))
    image = image.convert("L")
    image = image.filter(ImageFilter.UnsharpMask(radius=1, percent=150, threshold=0))
    image = _posterize(image, 3)
    if negate:
        image = ImageOps.invert(image)
    # Gamma 100 lifts every pixel that is not pure black to (almost) white.
    image = image.point(lambda value: 0 if value == 0 else round(255 * (value / 255) ** (1 / 100)))
    image = image.filter(ImageFilter.BoxBlur(1))
    image.save(out)
    return out


def _posterize(image: Image.Image, levels: int) -> Image.Image:
    """ImageMagick's `-posterize N`: N evenly spaced levels, nearest wins."""
    step = 255 / (levels - 1)
    return image.point(lambda value: round(round(value / step) * step))


class _LegacyEngineMissing(Exception):
    """The language data has no model for the legacy engine."""


class _Processes:
    """The Tesseract processes of one pass, so closing the pass can kill them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.closed = False
        self.closed_event = threading.Event()

    def tesseract(self, image: Path) -> str:
        global _engine_mode
        try:
            return self.run(tesseract_command(image))
        except _LegacyEngineMissing:
            _engine_mode = LSTM_ONLY_ENGINE_MODE
            return self.run(tesseract_command(image, LSTM_ONLY_ENGINE_MODE))

    def run(self, argv: list[str]) -> str:
        with self._lock:
            if self.closed:
                raise OcrCancelled
            try:
                process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            except OSError as error:
                raise MachineError(f"OCR failed: cannot run tesseract: {error.strerror}") from None
            self._running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=TESSERACT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise MachineError(f"OCR failed: tesseract gave no answer in {TESSERACT_TIMEOUT:.0f} seconds") from None
        finally:
            with self._lock:
                self._running.discard(process)
        if self.closed:
            raise OcrCancelled
        if process.returncode != 0 and _legacy_engine_missing(stderr):
            raise _LegacyEngineMissing
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip().splitlines()
            reason = f": {detail[-1]}" if detail else ""
            raise MachineError(f"OCR failed with exit code {process.returncode}{reason}")
        return stdout.decode("utf-8", errors="replace")

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.closed_event.set()
            running = tuple(self._running)
        for process in running:
            try:
                process.kill()
            except ProcessLookupError:
                pass


@dataclass(frozen=True)
class OcrResult:
    """One variant's text; `fresh_image` holds the bytes of a delayed, fresh
    screenshot it was read from (None: the pass's own screenshot)."""

    text: str
    fresh_image: bytes | None = None


class OcrPass:
    """OCR of one screenshot: its variants' texts in the order they finish.

    With `fresh` and `retry_delays` (as the newest NixOS driver does), the
    pass also reads the plain text of a new screenshot after each delay, each
    in a worker of its own, so text that appears while the slow processed
    variants of the old screenshot are still being read is seen early.

    Use as a context manager; leaving it kills what still runs and waits for
    the worker threads, so no Tesseract outlives the pass.
    """

    def __init__(
        self,
        screenshot: Path,
        variants: bool = True,
        *,
        fresh: FreshScreenshot | None = None,
        retry_delays: Sequence[float] = (),
    ) -> None:
        require_tesseract()
        self._screenshot = screenshot
        self._variants = variants
        self._fresh = fresh
        self._retry_delays = tuple(retry_delays) if fresh is not None else ()
        self._fresh_lock = threading.Lock()
        self._processes = _Processes()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: set[concurrent.futures.Future[OcrResult]] = set()

    def __enter__(self) -> OcrPass:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=worker_count() + len(self._retry_delays), thread_name_prefix="ocr"
        )
        # The plain screenshot first: it is the cheapest and usually enough.
        self._futures.add(self._executor.submit(self._read, self._screenshot))
        # Delayed reads before the variants, so none queues behind them.
        for delay in self._retry_delays:
            self._futures.add(self._executor.submit(self._read_fresh, delay))
        if self._variants:
            for negate in (False, True):
                self._futures.add(self._executor.submit(self._read_processed, negate))
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read(self, image: Path) -> OcrResult:
        return OcrResult(self._processes.tesseract(image))

    def _read_processed(self, negate: bool) -> OcrResult:
        if self._processes.closed:
            raise OcrCancelled
        try:
            processed = preprocess(self._screenshot, negate)
        except (OSError, ValueError) as error:
            raise MachineError(f"Image processing failed: {error}") from None
        return self._read(processed)

    def _read_fresh(self, delay: float) -> OcrResult:
        assert self._fresh is not None
        if self._processes.closed_event.wait(delay):
            raise OcrCancelled
        # One fresh screenshot at a time: the machine's channels are shared.
        with self._fresh_lock:
            if self._processes.closed:
                raise OcrCancelled
            with self._fresh() as path:
                image = path.read_bytes()
                return OcrResult(self._processes.tesseract(path), image)

    def results(self) -> Iterator[OcrResult]:
        """Every read as it finishes (a pass that was closed yields no more)."""
        while self._futures:
            done, self._futures = concurrent.futures.wait(
                self._futures, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                yield future.result()

    def __iter__(self) -> Iterator[str]:
        return (result.text for result in self.results())

    def close(self) -> None:
        self._processes.close()
        for future in self._futures:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._futures.clear()


def screen_text(screenshot: Path) -> str:
    """The text Tesseract reads on the plain screenshot (`get_screen_text`)."""
    with OcrPass(screenshot, variants=False) as ocr:
        return next(iter(ocr))


def screen_text_variants(screenshot: Path) -> list[str]:
    """Every variant's text: plain, positive, negated, in finishing order."""
    with OcrPass(screenshot, variants=True) as ocr:
        return list(ocr)


@dataclass(frozen=True)
class MatchOutcome:
    """What `first_match` found: whether a text matched, the texts read, and
    the fresh screenshot (PPM bytes) that matched, if it was not the given one."""

    matched: bool
    texts: list[str]
    fresh_image: bytes | None = None


def first_match(
    screenshot: Path,
    pattern: re.Pattern[str],
    on_text: Callable[[str], None] | None = None,
    *,
    fresh: FreshScreenshot | None = None,
    retry_delays: Sequence[float] = (),
) -> MatchOutcome:
    """Read variants until one matches `pattern`; the rest are cancelled.

    `on_text` sees each text as it arrives; `fresh` and `retry_delays` add
    delayed reads of new screenshots (see OcrPass).
    """
    texts: list[str] = []
    with OcrPass(screenshot, variants=True, fresh=fresh, retry_delays=retry_delays) as ocr:
        for result in ocr.results():
            texts.append(result.text)
            if on_text is not None:
                on_text(result.text)
            if pattern.search(result.text) is not None:
                return MatchOutcome(True, texts, result.fresh_image)
    return MatchOutcome(False, texts)
