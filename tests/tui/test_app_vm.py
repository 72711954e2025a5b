"""The app against real guests: consoles, REPL into a node, interrupting a wait, quitting.

One two-node session (the todos example's nodes, booted once) is shared by
every test of the module; each test opens its own app on it with its own
script, as a user editing the script against running VMs would.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from driver import processes
from driver.events import EventBus, MachineState
from driver.spec import load_spec
from helpers import evaluate, script_app, wait_until
from vmtui.app import VmtuiApp
from vmtui.session import Session
from widgets.run_status import RunStatus
from widgets.timeline import Timeline

if TYPE_CHECKING:  # imported by name, pytest would try to collect the class
    from driver.config import TestConfig

pytestmark = pytest.mark.vm

SIZE = (160, 48)
TODOS = Path(__file__).resolve().parents[2] / "vmtui" / "examples" / "todos.toml"


@pytest.fixture(scope="module", params=["fast", "nixos"])
def todos_config(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TestConfig:
    """The todos example, on the fast start scripts and on NixOS-shaped ones
    (SeaBIOS writing to the consoles, a qcow2 root disk, 9p shares)."""
    if request.param == "fast":
        return load_spec(TODOS)
    copy = tmp_path_factory.mktemp("todos-nixos")
    for source in TODOS.parent.glob("todos.*"):
        shutil.copy(source, copy / source.name)
    spec = copy / TODOS.name
    text = spec.read_text()
    for node in ("server", "client"):
        text = text.replace(f"[nodes.{node}]\n", f'[nodes.{node}]\nshape = "{request.param}"\n')
    spec.write_text(text)
    config = load_spec(spec)
    assert all("qboot" not in Path(node.start_command).read_text() for node in config.nodes)
    return config


@pytest.fixture(scope="module")
def session(todos_config: TestConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    out = tmp_path_factory.mktemp("out")
    session = Session(todos_config, EventBus(), out_dir=out)
    try:
        yield session
    finally:
        session.close()
        leftovers = [p.pid for p in processes.registry.live() if p.poll() is None]
        assert not leftovers, f"processes left running: {leftovers}"


def machines_up(session: Session) -> bool:
    return all(machine.is_up() for machine in session.driver.machines)


def finished(app: VmtuiApp) -> bool:
    return app.query_one(RunStatus).state in ("passed", "failed", "stopped") and not app.script_running


async def test_consoles_fill_and_state_lines_follow_the_boot(tmp_path: Path, session: Session, todos_config: TestConfig) -> None:
    script = 'start_all()\nserver.succeed("true")\nclient.succeed("true")\n'
    app = script_app(tmp_path, script, nodes=todos_config.nodes, autostart=True, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: finished(app), "both nodes answered")
        assert app.query_one(RunStatus).state == "passed"
        for pane in app.panes:
            await wait_until(pilot, lambda pane=pane: pane.view.line_count > 0, f"{pane.machine}'s console has lines")
            await wait_until(pilot, lambda pane=pane: pane.status.state is MachineState.CONNECTED, "connected")
            assert f"pid {pane.status.pid}" in str(pane.border_title)
            assert "connected" in str(pane.border_title)
        server_lines = "\n".join(app.pane_for("server").view.lines)
        assert "boot.sh" in server_lines  # the server's boot hook reported itself on ttyS0


async def test_repl_runs_commands_in_a_node(tmp_path: Path, session: Session, todos_config: TestConfig) -> None:
    script = 'start_all()\nhostname = server.succeed("hostname").strip()\nclient.succeed("true")\n'
    app = script_app(tmp_path, script, nodes=todos_config.nodes, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.session is not None, "session attached")
        app.script_view.cursor_line = 3
        await pilot.press("t")  # run to line 3: both VMs are up, `hostname` is set
        await wait_until(pilot, lambda: app.script_view.paused_line == 3, "paused on line 3")
        await evaluate(pilot, app, 'server.succeed("cat /srv/www/todos.json")', "write the test script")
        await evaluate(pilot, app, "hostname", "'server'")
        await evaluate(pilot, app, 'client.fail("false")', ">>>")
        await pilot.press("escape", "c")
        await wait_until(pilot, lambda: finished(app), "run done")
        assert app.query_one(RunStatus).state == "passed"


async def test_a_long_wait_shows_progress_and_stops_without_killing_the_vms(
    tmp_path: Path, session: Session, todos_config: TestConfig
) -> None:
    script = 'start_all()\nserver.wait_until_succeeds("test -e /tmp/never-there", timeout=900)\n'
    app = script_app(tmp_path, script, nodes=todos_config.nodes, autostart=True, session=session)
    async with app.run_test(size=SIZE) as pilot:
        status = app.query_one(RunStatus)
        await wait_until(pilot, lambda: "never-there" in str(status.render()), "the wait is shown in the status line")
        pids = {machine.name: machine.pid for machine in session.driver.machines}
        await pilot.press("x")
        await wait_until(pilot, lambda: finished(app), "the run stopped")
        assert status.state == "stopped"
        assert machines_up(session), "stopping a run must leave the VMs running"
        assert {machine.name: machine.pid for machine in session.driver.machines} == pids
        # And they still answer.
        await evaluate(pilot, app, 'server.succeed("echo still here")', "still here")


async def test_rerun_reuses_the_running_vms(tmp_path: Path, session: Session, todos_config: TestConfig) -> None:
    app = script_app(tmp_path, 'start_all()\nserver.succeed("true")\n', nodes=todos_config.nodes, autostart=True, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: finished(app), "first run")
        pids = {machine.name: machine.pid for machine in session.driver.machines}
        await pilot.press("r")
        runs = app.query_one(Timeline).root.children
        await wait_until(pilot, lambda: len(runs) == 2 and finished(app), "the rerun done")
        assert app.query_one(RunStatus).state == "passed"
        assert {machine.name: machine.pid for machine in session.driver.machines} == pids


async def test_post_mortem_keeps_the_vms_up_for_inspection(tmp_path: Path, session: Session, todos_config: TestConfig) -> None:
    script = 'start_all()\nserver.succeed("test -e /srv/www/missing.json")\n'
    app = script_app(tmp_path, script, nodes=todos_config.nodes, autostart=True, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one(RunStatus).state == "post-mortem", "post-mortem stop")
        assert app.script_view.paused_line == 2
        assert "missing.json" in str(app.query_one("#error-banner").render())
        assert machines_up(session)
        await evaluate(pilot, app, 'server.succeed("ls /srv/www")', "todos.json")
        await pilot.press("escape", "x")
        await wait_until(pilot, lambda: finished(app), "post-mortem ended")
        assert app.query_one(RunStatus).state == "failed" or app.query_one(RunStatus).state == "stopped"
