"""Helpers for Pilot tests of the whole app with the real driver core."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Callable

from textual.pilot import Pilot

from driver.config import NodeConfig, TestConfig
from driver.events import Event, EventBus, ScriptFinished
from vmtui.app import VmtuiApp
from vmtui.session import Session
from widgets.debugger import ReplInput

# Generous: the machine is shared and guests run under TCG.  This bounds a
# hang; it is never an assertion about speed.
DEADLINE = 300.0


async def wait_until(pilot: Pilot[int], condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Let the app run until `condition()` holds (fails the test after `deadline`)."""
    give_up = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up waiting for: {what}")
        await pilot.pause(0.02)
        await asyncio.sleep(0)


# Sessions `script_app` made: the app leaves its session open when it ends
# (run_tui closes it, and a test may share one), so the TUI tests' conftest
# closes these after each test, ending their machines and temp dirs.
_made_sessions: list[Session] = []


def close_made_sessions() -> None:
    while _made_sessions:
        _made_sessions.pop().close()


def new_session(config: TestConfig, out_dir: Path) -> Session:
    """A real Session that ends with the test (every app factory in the TUI tests uses this)."""
    made = Session(config, EventBus(), out_dir=out_dir)
    _made_sessions.append(made)
    return made


def script_app(
    tmp_path: Path,
    source: str,
    *,
    nodes: list[NodeConfig] | None = None,
    autostart: bool = False,
    session: Session | None = None,
) -> VmtuiApp:
    """The app on a script written to `tmp_path/test.py`, with a real Session."""
    script = tmp_path / "test.py"
    script.write_text(source)
    config = TestConfig(nodes=nodes or [], vlans=sorted({1} if nodes else set()), script_path=script, name="t")
    ReplInput.cursor_blink = False

    def make_session(cfg: TestConfig) -> Session:
        if session is not None:
            session.config = cfg
            return session
        return new_session(cfg, tmp_path / "out")

    return VmtuiApp(config, make_session, autostart=autostart, clock=None, state_dir=tmp_path / "state")


def repl_output(app: VmtuiApp) -> str:
    log = app.query_one("#repl-log")
    return "\n".join(strip.text for strip in log.lines)  # type: ignore[attr-defined]


async def evaluate(pilot: Pilot[int], app: VmtuiApp, source: str, expect: str) -> None:
    """Type a REPL line and wait until its output shows `expect`."""
    before = repl_output(app)
    if not isinstance(app.focused, ReplInput):
        await pilot.press("exclamation_mark")
    await pilot.press(*source, "enter")
    await wait_until(pilot, lambda: expect in repl_output(app)[len(before) :], f"REPL output {expect!r} for {source!r}")


class Runs:
    """The runs that ended, from the session's bus (the status line may lag a frame)."""

    def __init__(self, app: VmtuiApp) -> None:
        self.ended: list[ScriptFinished] = []
        app.session.bus.subscribe(self._event)

    def _event(self, event: Event) -> None:
        if isinstance(event, ScriptFinished):
            self.ended.append(event)


def save(path: Path, text: str) -> None:
    """Save the way editors do: a temporary file renamed over the script."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
