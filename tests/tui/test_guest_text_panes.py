"""Guest text in every pane of the app reaches the terminal as text and colours only (no VM needed).

The script logs, keeps and raises a string full of the escapes guests print;
the timeline, error banner, status line, variables and REPL all show it.  The
check is on what Textual would write to the terminal for the whole screen.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import evaluate, repl_output, script_app, wait_until
from widgets.run_status import RunStatus

SIZE = (140, 42)

SCRIPT = r'''
HOSTILE = (
    "\x1bc\x1b[?1049l\x1b[2J\x1b]0;guest-title\x07\x1b]52;c;Z3Vlc3Q=\x07"
    "\x1b]8;;http://guest.invalid/\x1b\\guest-link\x1b]8;;\x1b\\ \x1b[31mguest-red\x1b[0m\n"
    "50%\r100%\n\x9b2J\x9d0;eight-bit\x9c\x1bP+q544e\x1b\\\x07guest-end"
)
log.info(HOSTILE)
value = HOSTILE
raise RuntimeError(HOSTILE)
'''

# What Textual itself writes (cursor moves, SGR, modes) is fine; none of
# the guest's resets, strings (titles, clipboard, links) or 8-bit controls
# may get through.  (The script view shows the script's source, where the
# escapes are spelt out as text.)
FORBIDDEN = re.compile(r"\x1bc|\x1b\]|\x1bP|\x1b\[\?1049l|\x1b\[2J|[\x07\x80-\x9f]")


def screen_bytes(app) -> str:  # type: ignore[no-untyped-def]
    """Everything Textual would write to draw the whole screen now (pinned Textual: private compositor)."""
    return app.screen._compositor.render_full_update().render_segments(app.console)


async def test_hostile_text_in_every_pane_stays_text(tmp_path: Path) -> None:
    app = script_app(tmp_path, SCRIPT, autostart=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one(RunStatus).state == "post-mortem", "the script to stop on the error")
        await evaluate(pilot, app, "value", "guest-end")
        await pilot.pause()
        drawn = screen_bytes(app)
        assert "guest-link" in drawn and "100%" in drawn and "guest-end" in drawn
        assert not FORBIDDEN.search(drawn), FORBIDDEN.search(drawn)
        shown = repl_output(app)
        assert "guest-red" in shown and "50%" not in shown  # the REPL shows the redrawn line as a terminal would
