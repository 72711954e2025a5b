"""Rerun on save in the app: real file saves, the real watcher, runner and stepper.

These scripts touch no machine (they note what ran in a file), so they run
on a Driver without nodes; test_live_vm.py covers shells and checkpoints on
booted guests.
"""

from __future__ import annotations

from pathlib import Path

from helpers import Runs, save, script_app, wait_until
from vmtui.app import VmtuiApp
from vmtui.rerun import RerunMode
from widgets.run_status import RunStatus

SIZE = (140, 42)

PRELUDE = """\
import pathlib, time
log = pathlib.Path({log!r})
def note(word):
    with log.open("a") as f:
        f.write(word + "\\n")
"""


def notes(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def finished(app: VmtuiApp) -> bool:
    return app.query_one(RunStatus).state in ("passed", "failed", "stopped") and not app.script_running


async def run_ends(pilot, app: VmtuiApp, runs: Runs, count: int, what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until `count` runs ended and the app has drawn it."""
    await wait_until(pilot, lambda: len(runs.ended) >= count and finished(app), what)
    await pilot.pause(0.1)


def script(tmp_path: Path, body: str) -> str:
    return PRELUDE.format(log=str(tmp_path / "ran.log")) + body


async def started(pilot, app: VmtuiApp) -> Runs:  # type: ignore[no-untyped-def]
    """Wait for the session, then start the first run with the `c` key."""
    await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
    runs = Runs(app)
    await pilot.press("c")
    return runs


async def test_a_save_reruns_from_the_changed_statement(tmp_path: Path) -> None:
    source = script(tmp_path, 'note("one")\nnote("two")\nnote("three")\n')
    app = script_app(tmp_path, source)
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await started(pilot, app)
        await run_ends(pilot, app, runs, 1, "the first run")
        assert notes(log) == ["one", "two", "three"]
        save(app.config.script_path, source.replace('note("three")', 'note("THREE")'))
        await run_ends(pilot, app, runs, 2, "the rerun")
        # Only the changed statement ran again; the view shows the new text.
        assert notes(log) == ["one", "two", "three", "THREE"]
        assert runs.ended[-1].ok
        assert 'note("THREE")' in app.script_view.line_text(8)


async def test_a_syntax_error_is_shown_at_its_line_and_nothing_runs(tmp_path: Path) -> None:
    source = script(tmp_path, 'note("one")\nnote("two")\n')
    app = script_app(tmp_path, source)
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await started(pilot, app)
        await run_ends(pilot, app, runs, 1, "the first run")
        statements = list(app.session.runner.statements)
        save(app.config.script_path, source.replace('note("two")', 'note("two"'))
        banner = app.query_one("#error-banner")
        await wait_until(pilot, lambda: banner.has_class("-visible"), "the syntax error banner")
        assert banner.border_title == "syntax error"
        assert app.script_view.error_line == 7
        assert app.session.runner.statements == statements  # nothing was loaded
        assert notes(log) == ["one", "two"] and not app.script_running and len(runs.ended) == 1
        # Fixing it reruns from the fixed statement.
        save(app.config.script_path, source.replace('note("two")', 'note("2")'))
        await run_ends(pilot, app, runs, 2, "the rerun after the fix")
        assert notes(log) == ["one", "two", "2"]
        assert not banner.has_class("-visible")


async def test_a_save_cancels_the_statement_in_flight(tmp_path: Path) -> None:
    flag = tmp_path / "never"
    source = script(tmp_path, f'note("one")\nwhile not pathlib.Path({str(flag)!r}).exists():\n    time.sleep(0.05)\nnote("end")\n')
    app = script_app(tmp_path, source)
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await started(pilot, app)
        await wait_until(pilot, lambda: notes(log) == ["one"] and app.script_running, "the wait in flight")
        save(app.config.script_path, source.replace("while not", "if not").replace("    time.sleep(0.05)", '    note("skipped")'))
        await run_ends(pilot, app, runs, 2, "the cancelled run and the rerun")
        assert runs.ended[0].cancelled
        assert runs.ended[1].ok
        assert notes(log) == ["one", "skipped", "end"]


async def test_failed_mode_reruns_only_the_failed_subtest(tmp_path: Path) -> None:
    source = script(tmp_path, 'note("one")\nwith subtest("check"):\n    note("check")\n    assert False\nnote("after")\n')
    app = script_app(tmp_path, source)
    log = tmp_path / "ran.log"
    async with app.run_test(size=SIZE) as pilot:
        runs = await started(pilot, app)
        # Post-mortem pauses on the failure; end the run there.
        await wait_until(pilot, lambda: app.session.stepper.is_paused, "the post-mortem stop")
        await pilot.press("x")
        await run_ends(pilot, app, runs, 1, "the failed run")
        assert notes(log) == ["one", "check"]
        await pilot.press("m", "m")
        assert app.rerun.mode is RerunMode.FAILED
        save(app.config.script_path, source.replace("assert False", "assert True"))
        await run_ends(pilot, app, runs, 2, "the subtest rerun")
        assert notes(log) == ["one", "check", "check"]  # "after" did not run
        assert runs.ended[-1].ok
