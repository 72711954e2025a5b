"""Where in the test script a NixOS log entry comes from.

A NixOS log names no script lines.  Given the script (`--script`), a block's
title is looked up in it: `must succeed: CMD` -> the line holding CMD,
`waiting for unit U` -> the line holding U, `subtest: NAME` -> the `subtest`
line.  Matches move forward through the script, as the run did; a title that
matches nothing ahead is looked up from the top (loops, functions).

The failing line comes from the traceback the driver printed: the last frame
of the script (`File "<string>", line N` in NixOS, the script's own path in
vmtui).
"""

from __future__ import annotations

import re

_NEEDLE_PREFIXES = (
    "must succeed: ", "must fail: ", "waiting for success: ", "waiting for failure: ",
    "subtest: ", "waiting for unit ", "checking if unit ", "waiting for file ",
    "waiting for TCP port ", "waiting for UNIX socket ", "waiting for ", "sending keys ",
    "making screenshot ",
)
_FRAME = re.compile(r'File "([^"]*)", line (\d+)')
_MIN_NEEDLE = 2


def _needle(title: str) -> str | None:
    for prefix in _NEEDLE_PREFIXES:
        if title.startswith(prefix):
            needle = title[len(prefix):].strip()
            # `checking if unit 'x' has reached state 'y'`, `waiting for unit x with user y`
            needle = re.sub(r"^'([^']*)'.*$", r"\1", needle)
            needle = needle.split(" with user ")[0]
            needle = needle.strip("'\"")
            return needle if len(needle) >= _MIN_NEEDLE else None
    return None


class ScriptMatcher:
    """Finds script lines for block titles; stateful (matches move forward)."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        self._position = 0

    def line_for(self, title: str) -> int | None:
        needle = _needle(title)
        if needle is None:
            return None
        # A long shell command may be spread over lines in the script: its first line is enough.
        first = needle.splitlines()[0][:60] if needle else needle
        for start in (self._position, 0):
            for index in range(start, len(self.lines)):
                if first in self.lines[index]:
                    self._position = index
                    return index + 1
        return None


def failing_line_of(error_lines: list[str]) -> int | None:
    """The line of the innermost script frame in a printed traceback."""
    line: int | None = None
    for text in error_lines:
        frame = _FRAME.search(text)
        if frame is None:
            continue
        # NixOS execs the script as "<string>"; vmtui names the script file.
        # Frames of the driver and of Python itself are not the script.
        filename = frame.group(1)
        if filename == "<string>" or not any(part in filename for part in _LIBRARY_PATHS):
            line = int(frame.group(2))
    return line


_LIBRARY_PATHS = ("/site-packages/", "/lib/python", "/test_driver/", "/nix/store/", "<frozen")


def script_from_traceback(error_lines: list[str], header: str) -> str | None:
    """What a traceback shows of the script, each line at its own number; None if nothing.

    Without the script, this is all a log knows of it: the failing line's
    source (NixOS prints it under the frame) lands where the mark points.
    `header` fills line 1 when the traceback does not name that line.
    """
    known: dict[int, str] = {}
    for index, text in enumerate(error_lines):
        frame = _FRAME.search(text)
        if frame is None or frame.group(1) != "<string>" and any(p in frame.group(1) for p in _LIBRARY_PATHS):
            continue
        following = error_lines[index + 1] if index + 1 < len(error_lines) else ""
        if following.startswith("    ") and not _FRAME.search(following):
            known[int(frame.group(2))] = following.strip()
    if not known:
        return None
    lines = [known.get(number, "") for number in range(1, max(known) + 1)]
    if 1 not in known:
        lines[0] = header
    return "\n".join(lines) + "\n"
