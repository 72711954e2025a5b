"""The TUI on a `.nix` test, end to end with real guests, through one session.

A fake `nix-build` (tests/nixfixtures.py) answers with driver outputs whose
start scripts boot the tiny guest.  One app, one pair of booted nodes, in
order: the app opens and the script passes; a script-only edit reruns on the
same QEMU processes; a node's new configuration is named and `R` restarts
only that node; an evaluation error is shown while the VMs stay up.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nixfixtures as nf  # noqa: E402

from driver.events import EventBus  # noqa: E402
from driver.guest.startscript import write_start_script  # noqa: E402
from driver.guest.tiny import TinyGuestImage, build_tiny_guest  # noqa: E402
from helpers import wait_until  # noqa: E402
from test_nix_live import Recorder, banner  # noqa: E402
from vmtui.app import VmtuiApp  # noqa: E402
from vmtui.options import RunOptions  # noqa: E402
from vmtui.session import Session  # noqa: E402
from vmtui.targets import resolve_target  # noqa: E402
from widgets.console_pane import ConsolePane  # noqa: E402

pytestmark = pytest.mark.vm

SIZE = (160, 48)
HOSTS = [("client", 1, 1), ("server", 2, 1)]
TODOS_V1 = b'[{"id": 1, "task": "fetch the list"}]\n'
TODOS_V2 = b'[{"id": 1, "task": "fetch the list"}, {"id": 2, "task": "restart only the server"}]\n'

SCRIPT_V1 = """\
start_all()
server.wait_for_open_port(3000)
listing = client.succeed("wget -qO- http://server:3000/todos.json")
assert "fetch the list" in listing, listing
"""
# Only the last statement differs: the rerun starts there, on the same VMs.
SCRIPT_V2 = SCRIPT_V1 + 'client.succeed("echo edited > /tmp/edited")\n'


class Project(nf.FakeNixProject):
    def __init__(self, root: Path, image: TinyGuestImage) -> None:
        super().__init__(root)
        self.image = image

    def build(self, script: str, *, todos: bytes = TODOS_V1) -> None:
        """The next build: a driver running `script`, the server serving `todos`."""
        server = write_start_script(
            self.store.path("nixos-vm", salt="server" + todos.decode()), name="server", node_number=2, vlans=[1],
            hosts=HOSTS, image=self.image, files={"/srv/www/todos.json": todos},
            boot_script="httpd -p 3000 -h /srv/www\n",
        )  # fmt: skip
        client = write_start_script(
            self.store.path("nixos-vm", salt="client"), name="client", node_number=1, vlans=[1], hosts=HOSTS,
            image=self.image,
        )  # fmt: skip
        drv = nf.write_driver(self.store, era="env-var", name="todos", vms={"client": client, "server": server},
                              script=script, salt=todos.decode())
        self.answer_with(nf.answer(drv, stderr=f"building '{drv}.drv'..."))


def pids(app: VmtuiApp) -> dict[str, int | None]:
    return {machine.name: machine.pid for machine in app.session.driver.machines}


async def guest(app: VmtuiApp, node: str, command: str) -> tuple[int, str]:
    machine = app.session.driver.machine_named(node)
    return await asyncio.to_thread(machine.execute, command)


async def test_a_nix_test_in_the_tui_rebuilds_swaps_and_restarts_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project(tmp_path / "project", build_tiny_guest())
    project.build(SCRIPT_V1)
    monkeypatch.setenv("PATH", project.path)
    config = resolve_target(str(project.test_file), RunOptions())
    sessions: list[Session] = []

    def make_session(cfg):  # type: ignore[no-untyped-def]
        sessions.append(Session(cfg, EventBus(), out_dir=tmp_path / "out"))
        return sessions[-1]

    app = VmtuiApp(config, make_session, autostart=True, clock=None, state_dir=tmp_path / "state")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await steps(pilot, app, project)
    finally:
        for session in sessions:
            await asyncio.to_thread(session.close)


async def steps(pilot, app: VmtuiApp, project: Project) -> None:  # type: ignore[no-untyped-def]
    # (1) The app opens on the .nix test: the nodes boot, the script passes.
    recorder = Recorder(app)
    await wait_until(pilot, lambda: app.session is not None, "the session")
    app.session.bus.subscribe(recorder)
    await wait_until(pilot, lambda: app.last_result_ok is not None and not app.script_running,
                     f"the first run ({recorder.said})")
    assert app.last_result_ok, banner(app)
    await pilot.pause(0.2)
    assert all(pane.view.line_count > 0 for pane in app.query(ConsolePane))  # the consoles filled
    booted = pids(app)
    assert None not in booted.values()

    # (2) Only the script changed: it reruns from the change, on the same QEMU processes.
    recorder.runs.clear()
    project.build(SCRIPT_V2)
    project.save()
    await wait_until(pilot, lambda: len(recorder.runs) == 1 and not app.script_running,
                     f"the rerun ({recorder.said})")
    assert recorder.runs[-1].ok, recorder.runs[-1].error
    assert pids(app) == booted
    assert (await guest(app, "client", "cat /tmp/edited"))[1] == "edited\n"
    assert app.pending_restart == {}

    # (3) The server's configuration changed: named, and restarted alone on request.
    recorder.runs.clear()
    project.build(SCRIPT_V2, todos=TODOS_V2)
    project.save()
    await wait_until(pilot, lambda: bool(app.pending_restart), f"the restart notice ({recorder.said})")
    assert list(app.pending_restart) == ["server"]
    assert any("must restart" in said and "server" in said and "client" not in said for said in recorder.said)
    assert recorder.runs == [] and pids(app) == booted  # nothing happens until asked
    await pilot.press("R")
    await wait_until(pilot, lambda: len(recorder.runs) == 1 and not app.script_running,
                     f"the run after the restart ({recorder.said})")
    assert recorder.runs[-1].ok, recorder.runs[-1].error
    after = pids(app)
    assert after["client"] == booted["client"] and after["server"] != booted["server"]
    served = (await guest(app, "client", "wget -qO- http://server:3000/todos.json"))[1]
    assert "restart only the server" in served

    # (4) An evaluation error: shown, and the VMs stay up as they were.
    recorder.runs.clear()
    project.answer_with(nf.answer(stderr=nf.EVAL_ERROR, status=1))
    project.save()
    await wait_until(pilot, lambda: "undefined variable" in banner(app), f"the error ({recorder.said})")
    assert pids(app) == after and all(machine.is_up() for machine in app.session.driver.machines)
    assert recorder.runs == []
    assert (await guest(app, "server", "echo still here"))[1] == "still here\n"
