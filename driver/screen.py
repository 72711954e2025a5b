"""A node's screen: screendumps, frames, and the NixOS screenshot file rules.

QEMU writes a screendump as a binary PPM (P6).  A `Frame` is one decoded
dump with a digest of its pixels, so a viewer that polls the screen can tell
"unchanged" from "changed" without decoding or drawing anything.

Two ways to take a dump, for two callers:
- the test script's screen API goes through HMP `screendump`, as the NixOS
  driver does (it runs the machine's polling callbacks);
- a viewer (the TUI's screen pane) uses QMP `screendump`, which has its own
  connection and never waits behind a long HMP command of the script.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from driver.errors import MachineError
from driver.monitor import ppm_header, ppm_to_png


@dataclass(frozen=True)
class Frame:
    """One screendump: RGB pixels, row by row, three bytes a pixel."""

    width: int
    height: int
    pixels: bytes = field(repr=False)
    digest: str

    def png(self) -> bytes:
        header = f"P6\n{self.width} {self.height}\n255\n".encode()
        return ppm_to_png(header + self.pixels)


def frame_from_ppm(data: bytes) -> Frame:
    """Decode a screendump; ValueError if it is not a complete P6 PPM."""
    width, height, offset = ppm_header(data)
    size = width * height * 3
    pixels = data[offset : offset + size]
    if len(pixels) != size:
        raise ValueError("truncated PPM image")
    digest = hashlib.blake2b(pixels, digest_size=16).hexdigest()
    return Frame(width, height, pixels, digest)


def screenshot_path(filename: str, out_dir: Path) -> Path:
    """Where `screenshot(filename)` writes, by the NixOS rules.

    `.png` is added to a name without a dot; a name without `/` goes into
    the output directory, any other is used as it is.
    """
    if "." not in filename:
        filename += ".png"
    return Path(filename) if "/" in filename else out_dir / filename


def read_dump(path: Path, what: str) -> bytes:
    """The bytes QEMU dumped to `path`; MachineError if it wrote nothing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MachineError(f"{what}: QEMU wrote no image") from None


@contextlib.contextmanager
def dump_file(directory: Path, stem: str) -> Iterator[Path]:
    """A fresh path for one screendump in `directory`, removed afterwards.

    The name carries the process and thread, so dumps taken at the same
    time (script and viewer, several OCR passes) never share a file.
    """
    path = directory / f"{stem}-{os.getpid()}-{threading.get_ident()}.ppm"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        yield path
    finally:
        for leftover in path.parent.glob(f"{path.stem}*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


QmpExecute = Callable[[str, dict[str, object]], object]


def grab_qmp(execute: QmpExecute, directory: Path) -> Frame:
    """A frame through QMP `screendump` (for viewers; see the module doc)."""
    with dump_file(directory, "screen-view") as path:
        execute("screendump", {"filename": str(path)})
        try:
            return frame_from_ppm(read_dump(path, "screendump"))
        except ValueError as error:
            raise MachineError(f"cannot read the screendump: {error}") from None
