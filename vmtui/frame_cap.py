"""How often Textual may draw: up to 240 frames a second in vmtui's TUIs.

Textual draws at most TEXTUAL_FPS frames a second (60 unless set), so a key
typed just after a frame waited up to 17 ms for the next one.  vmtui bounds
its own busy sources itself (console batches at 12-30 a second, a shell's
output at 60 drains a second), so for vmtui that cap only delays keys.
Measured with benchmarks/bench_keys.py --editor (two consoles flooding):
p99 46-63 ms at 60, 27-48 ms at 240, for about 10% more CPU.

Textual reads the variable once, when `textual.constants` is first imported:
it is set for that import only, so the programs vmtui starts ($EDITOR, nix,
start scripts) do not inherit it.  A user's own TEXTUAL_FPS wins.  The
headless runner never calls this (it loads no UI module at all).
"""

from __future__ import annotations

import importlib
import os
import sys

MAX_FRAMES_PER_SECOND = 240


def raise_textual_frame_cap() -> bool:
    """Let Textual draw up to MAX_FRAMES_PER_SECOND; False when too late (Textual loaded) or the user chose."""
    if "TEXTUAL_FPS" in os.environ or "textual.constants" in sys.modules:
        return False
    os.environ["TEXTUAL_FPS"] = str(MAX_FRAMES_PER_SECOND)
    try:
        importlib.import_module("textual.constants")  # reads TEXTUAL_FPS now
    finally:
        del os.environ["TEXTUAL_FPS"]
    return True
