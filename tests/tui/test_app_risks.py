"""Risks of the app's worker seams, each with the test that showed it.

The real Session and runner behind a script without nodes: what matters
here is which thread touches what, and what reaches the screen.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from helpers import evaluate, new_session, wait_until
from driver.config import TestConfig
import vmtui.app
from vmtui.app import VmtuiApp
from widgets.debugger import ReplInput, VariablesView

SIZE = (140, 42)


class WatchedApp(VmtuiApp):
    """Records DOM queries made off the UI thread, and every notification."""

    CSS_PATH = str(Path(vmtui.app.__file__).with_name("app.tcss"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ui_thread: int | None = None
        self.off_thread_queries: list[str] = []
        self.notices: list[tuple[str, str]] = []

    def on_mount(self) -> None:
        # Textual calls every class's own on_mount (VmtuiApp's after this
        # one): calling super() here too would mount the app twice, opening
        # a second session that replaces the first.
        self.ui_thread = threading.get_ident()

    def _note_thread(self, what: object) -> None:
        if self.ui_thread is not None and threading.get_ident() != self.ui_thread:
            self.off_thread_queries.append(f"{what!r} from {threading.current_thread().name}")

    def query_one(self, *args: Any, **kwargs: Any) -> Any:
        self._note_thread(args)
        return super().query_one(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self._note_thread(args)
        return super().query(*args, **kwargs)

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:
        self.notices.append((title, message))
        super().notify(message, title=title, **kwargs)


def watched_app(tmp_path: Path, source: str) -> WatchedApp:
    script = tmp_path / "test.py"
    script.write_text(source)
    config = TestConfig(nodes=[], vlans=[], script_path=script, name="t")
    ReplInput.cursor_blink = False
    return WatchedApp(config, lambda cfg: new_session(cfg, tmp_path / "out"),
                      autostart=True, clock=None, state_dir=tmp_path / "state")


def _shown_variables(app: VmtuiApp) -> dict[str, str]:
    return dict(app.query_one(VariablesView)._values)  # noqa: SLF001 - what the pane shows


async def test_workers_never_query_the_dom(tmp_path: Path) -> None:
    app = watched_app(tmp_path, "value = 41\nvalue += 1\n")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.last_result_ok is True, "the run")
        await wait_until(pilot, lambda: _shown_variables(app).get("value") == "42", "the variables")
        await evaluate(pilot, app, "value * 2", "84")
    assert app.off_thread_queries == []


async def test_a_superseded_variables_read_never_replaces_a_newer_one(tmp_path: Path) -> None:
    app = watched_app(tmp_path, "value = 1\n")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: _shown_variables(app).get("value") == "1", "the first variables")
        session = app.session
        assert session is not None
        release = threading.Event()
        reads = 0
        real_variables = session.variables

        def variables() -> dict[str, str]:
            nonlocal reads
            reads += 1
            if reads == 1:  # the older read is slow (a busy script thread) ...
                release.wait(30)
                return {"value": "'stale'"}
            return {"value": "'newest'"} if reads == 2 else real_variables()

        session.variables = variables  # type: ignore[method-assign]
        app._refresh_variables()  # noqa: SLF001 - two reads in flight, as after two quick stops
        await wait_until(pilot, lambda: reads == 1, "the first read under way")
        app._refresh_variables()  # noqa: SLF001
        await wait_until(pilot, lambda: _shown_variables(app).get("value") == "'newest'", "the newer read")
        release.set()  # ... and answers last
        await wait_until(pilot, lambda: not any(w.name == "variables" for w in app.workers), "both reads done")
        await pilot.pause(0.2)
        assert _shown_variables(app) == {"value": "'newest'"}


async def test_a_failing_inspect_worker_is_shown(tmp_path: Path) -> None:
    app = watched_app(tmp_path, "value = 1\n")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.last_result_ok is True, "the run")
        session = app.session
        assert session is not None

        def broken() -> dict[str, str]:
            raise RuntimeError("the script thread is gone")

        session.variables = broken  # type: ignore[method-assign]
        app._refresh_variables()  # noqa: SLF001
        await wait_until(pilot, lambda: any("the script thread is gone" in m for _, m in app.notices),
                         "the failure on screen")
    assert ("variables failed", "RuntimeError: the script thread is gone") in app.notices
