"""vmtui: a terminal UI and headless runner for NixOS-style VM integration tests."""

from __future__ import annotations

import os
import sys

# Textual draws at most TEXTUAL_FPS frames a second (60 unless set), so a key
# typed just after a frame waited up to 17 ms for the next one.  vmtui bounds
# its own busy sources itself (console batches at 12-30 a second, a shell's
# output at 60), so for vmtui that cap only delays keys.  Measured with
# benchmarks/bench_keys.py --editor (two consoles flooding): p99 46-63 ms at
# 60, 27-48 ms at 240, for about 10% more CPU.  Textual reads the variable
# once, when textual.constants is first imported: set it for that import only,
# so the programs vmtui starts ($EDITOR, nix) do not inherit it.  A user's own
# TEXTUAL_FPS wins.
MAX_FRAMES_PER_SECOND = 240


def _raise_textual_frame_cap() -> None:
    if "TEXTUAL_FPS" in os.environ or "textual.constants" in sys.modules:
        return
    os.environ["TEXTUAL_FPS"] = str(MAX_FRAMES_PER_SECOND)
    try:
        import textual.constants  # noqa: F401  (reads TEXTUAL_FPS now)
    finally:
        del os.environ["TEXTUAL_FPS"]


_raise_textual_frame_cap()
