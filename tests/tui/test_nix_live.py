"""Saving the `.nix` source in the app: rebuild, swap the script, name the nodes to restart.

A fake `nix-build` (tests/nixfixtures.py) "builds" driver outputs in the real
wrapper layout.  The nodes' start scripts here are stubs that are never
booted (the scripts do not start them), so no VM runs: booting, restarting
and the QEMU pids are covered in test_nix_live_vm.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nixfixtures as nf  # noqa: E402

from driver.events import Event, ScriptFinished  # noqa: E402
from helpers import wait_until  # noqa: E402
from textual.pilot import Pilot  # noqa: E402
from vmtui.app import VmtuiApp  # noqa: E402
from vmtui.options import RunOptions  # noqa: E402
from vmtui.session import Session  # noqa: E402
from vmtui.targets import resolve_target  # noqa: E402
from driver.events import EventBus  # noqa: E402

SIZE = (140, 44)
SCRIPT_V1 = 'value = 1\nlog.info(f"value is {value}")\n'
SCRIPT_V2 = 'value = 2\nlog.info(f"value is {value}")\n'


class Project(nf.FakeNixProject):
    """Two stub nodes; `build(script, server_salt)` answers the next build with a new driver."""

    def build(self, script: str, *, server_salt: str = "", stderr: str = "") -> Path:
        vms = {
            "client": self.store.write_start_stub("client"),
            "server": self.store.write_start_stub("server", salt=server_salt),
        }
        drv = nf.write_driver(self.store, era="json-config", name="t", vms=vms, script=script, salt=server_salt)
        self.answer_with(nf.answer(drv, stderr=stderr))
        return drv


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = Project(tmp_path / "project")
    project.build(SCRIPT_V1)
    monkeypatch.setenv("PATH", project.path)
    return project


class Recorder:
    """Runs that ended, and what the app told the user."""

    def __init__(self, app: VmtuiApp) -> None:
        self.runs: list[ScriptFinished] = []
        self.said: list[str] = []
        notify = app.notify

        def recording(message: str, *args: object, **kwargs: object) -> None:
            self.said.append(f"{kwargs.get('title', '')}: {message}")
            notify(message, *args, **kwargs)  # type: ignore[arg-type]

        app.notify = recording  # type: ignore[method-assign]

    def __call__(self, event: Event) -> None:
        if isinstance(event, ScriptFinished):
            self.runs.append(event)


def open_app(target: Path, tmp_path: Path) -> VmtuiApp:
    """The app on `target` (a .nix file or a spec), as `vmtui TARGET` opens it."""
    config = resolve_target(str(target), RunOptions())

    def make_session(cfg):  # type: ignore[no-untyped-def]
        return Session(cfg, EventBus(), out_dir=tmp_path / "out")

    return VmtuiApp(config, make_session, autostart=True, clock=None, state_dir=tmp_path / "state")


@contextlib.asynccontextmanager
async def running(app: VmtuiApp) -> AsyncIterator[tuple[Pilot[int], Recorder]]:
    """The app running, past its first run; its session closed afterwards."""
    try:
        async with app.run_test(size=SIZE) as pilot:
            yield pilot, await started(pilot, app)
    finally:
        await close(app)


async def started(pilot, app: VmtuiApp) -> Recorder:  # type: ignore[no-untyped-def]
    recorder = Recorder(app)
    await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
    app.session.bus.subscribe(recorder)
    await wait_until(pilot, lambda: app.last_result_ok is not None and not app.script_running, "the first run")
    assert app.last_result_ok
    recorder.runs.clear()  # only what follows the first run counts
    return recorder


def banner(app: VmtuiApp) -> str:
    widget = app.query_one("#error-banner")
    return str(widget.render()) if widget.has_class("-visible") else ""


async def close(app: VmtuiApp) -> None:
    if app.session is not None:
        await asyncio.to_thread(app.session.close)


async def test_a_script_only_change_swaps_the_script_and_reruns(project: Project, tmp_path: Path) -> None:
    app = open_app(project.test_file, tmp_path)
    async with running(app) as (pilot, recorder):
        old_script = app.config.script_path
        app.session.stepper.set_breakpoint(2)
        app.session.stepper.clear_breakpoint(2)
        project.build(SCRIPT_V2, stderr="building '/nix/store/x-test-script.drv'...")
        project.save()
        await wait_until(pilot, lambda: len(recorder.runs) >= 1 and not app.script_running,
                         f"the rerun ({recorder.said})")
        assert recorder.runs[-1].ok
        assert app.config.script_path != old_script and app.session.config.script_path == app.config.script_path
        assert app.session.runner.filename == str(app.config.script_path)
        assert app.session.runner.namespace["value"] == 2
        assert "value = 2" in app.script_view.line_text(1)
        assert app.pending_restart == {}
        assert any("only the test script changed" in said for said in recorder.said)
        # The new source text is shown in the source view too.
        assert "revision 1" in app.query_one("#alt-source").line_text(1)  # type: ignore[attr-defined]


async def test_a_node_change_names_the_node_and_waits_for_the_restart_key(project: Project, tmp_path: Path) -> None:
    app = open_app(project.test_file, tmp_path)
    async with running(app) as (pilot, recorder):
        project.build(SCRIPT_V1, server_salt="v2")
        project.save()
        await wait_until(pilot, lambda: bool(app.pending_restart), f"the notice ({recorder.said})")
        new_server = str(project.store.path("nixos-vm", salt="serverv2") / "bin" / "run-server-vm")
        assert app.pending_restart == {"server": new_server}
        [notice] = [said for said in recorder.said if "must restart" in said]
        assert "server" in notice and "client" not in notice and "Press R" in notice
        assert recorder.runs == []  # nothing reran: it waits for the restart
        # The palette offers the action.
        commands = [command.title for command in app.get_system_commands(app.screen)]
        assert "Restart changed nodes" in commands


async def test_an_eval_error_is_shown_and_changes_nothing(project: Project, tmp_path: Path) -> None:
    app = open_app(project.test_file, tmp_path)
    async with running(app) as (pilot, recorder):
        script = app.config.script_path
        project.answer_with(nf.answer(stderr=nf.EVAL_ERROR, status=1))
        project.save()
        await wait_until(pilot, lambda: "undefined variable" in banner(app), f"the error ({recorder.said})")
        text = banner(app)
        assert "Nix could not evaluate" in text and "todos.nix:9:36" in text
        assert app.query_one("#error-banner").border_title == "rebuild failed"
        assert app.config.script_path == script and recorder.runs == []
        # Fixing the file clears the error.
        project.build(SCRIPT_V2)
        project.save()
        await wait_until(pilot, lambda: len(recorder.runs) >= 1 and not app.script_running, "the rerun")
        assert banner(app) == ""


async def test_a_second_save_cancels_the_stale_rebuild(project: Project, tmp_path: Path) -> None:
    app = open_app(project.test_file, tmp_path)
    async with running(app) as (pilot, recorder):
        project.answer_with({"stderr": ["evaluating ..."], "hang": True})
        project.save()
        await wait_until(pilot, lambda: len(nf.nix_calls(project.calls)) == 1, "the first build")
        stale_pid = int(nf.nix_calls(project.calls)[0]["pid"])  # type: ignore[call-overload]
        project.build(SCRIPT_V2)
        project.save()
        await wait_until(pilot, lambda: len(recorder.runs) >= 1 and not app.script_running,
                         f"the rerun ({recorder.said})")
        assert app.session.runner.namespace["value"] == 2
        assert not app.rebuilding
        await wait_until(pilot, lambda: not _alive(stale_pid), "the stale nix-build to end")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is an ended process that its parent has not reaped yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


# -- the same for a .toml spec ----------------------------------------------------------


def _stub(path: Path) -> None:
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)


def _write_spec(spec: Path, *, script: str, server: str) -> None:
    temp = spec.with_name(".spec.toml.tmp")
    temp.write_text(
        f'name = "t"\nscript = "{script}"\n\n'
        '[nodes.client]\nstart_command = "./run-client-vm"\nvlans = []\n\n'
        f'[nodes.server]\nstart_command = "./{server}"\nvlans = []\n'
    )
    os.replace(temp, spec)


async def test_a_spec_save_swaps_a_renamed_script_and_names_changed_nodes(tmp_path: Path) -> None:
    project = tmp_path / "spec"
    project.mkdir()
    for name in ("run-client-vm", "run-server-vm", "run-server-v2-vm"):
        _stub(project / name)
    (project / "a.py").write_text(SCRIPT_V1)
    (project / "b.py").write_text(SCRIPT_V2)
    spec = project / "t.toml"
    _write_spec(spec, script="a.py", server="run-server-vm")
    app = open_app(spec, tmp_path)
    async with running(app) as (pilot, recorder):
        _write_spec(spec, script="b.py", server="run-server-vm")
        await wait_until(pilot, lambda: len(recorder.runs) >= 1 and not app.script_running,
                         f"the rerun ({recorder.said})")
        assert app.config.script_path == (project / "b.py").resolve()
        assert app.session.runner.namespace["value"] == 2
        # The watcher follows the script to its new file.
        b_py = (project / "b.py").resolve()
        await wait_until(pilot, lambda: app._watcher is not None and b_py in app._watcher.paths, "the watch on b.py")
        _write_spec(spec, script="b.py", server="run-server-v2-vm")
        await wait_until(pilot, lambda: bool(app.pending_restart), f"the notice ({recorder.said})")
        assert list(app.pending_restart) == ["server"]
        assert app.pending_restart["server"].endswith("run-server-v2-vm")
