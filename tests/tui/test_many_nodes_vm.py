"""Ten real tiny guests in the app: the overview shows their real states, "tcg" and last lines.

The fleet example (vmtui/examples/fleet.toml) boots ten nodes and pings
round the ring; its web servers keep logging, so their rows stay active.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from driver.events import MachineState
from driver.spec import load_spec
from helpers import new_session, wait_until
from vmtui.app import VmtuiApp
from widgets.console_column import ConsoleColumn
from widgets.node_overview import NodeOverview
from widgets.run_status import RunStatus

pytestmark = [pytest.mark.vm, pytest.mark.slow]

FLEET = Path(__file__).resolve().parents[2] / "vmtui" / "examples" / "fleet.toml"


def rows(app: VmtuiApp) -> list[str]:
    return app.query_one(NodeOverview).render().plain.split("\n")


async def test_ten_guests_in_the_overview(tmp_path: Path) -> None:
    config = load_spec(FLEET)
    assert len(config.nodes) == 10
    app = VmtuiApp(config, lambda cfg: new_session(cfg, tmp_path / "out"), clock=None, state_dir=tmp_path / "state")
    async with app.run_test(size=(200, 60)) as pilot:
        await wait_until(pilot, lambda: app.query_one(RunStatus).state in ("passed", "failed"), "the fleet script ended",
                         deadline=1500.0)
        assert app.query_one(RunStatus).state == "passed"
        assert not app.query_one(ConsoleColumn).plan.stacked
        for pane in app.panes:
            assert (pane.status.state, pane.status.accelerator) == (MachineState.CONNECTED, "tcg"), pane.machine
        # Every row: its node up on TCG, with a real last line.
        await wait_until(pilot, lambda: all(" web1: GET /index.html 200" in row for row in rows(app) if " web1 " in row),
                         "web1's request log reached its row")
        for index, node in enumerate(config.nodes):
            row = rows(app)[index]
            assert row.split()[2:5] == [node.name, "tcg", "up"], row
            assert "no output yet" not in row
        # A key shows that node's console, history included; o and g then act on it.
        names = [node.name for node in config.nodes]
        await pilot.press(str((names.index("web2") + 1) % 10))
        await pilot.pause()
        web2 = app.pane_for("web2")
        assert web2.display and app.focused is web2.view
        assert web2.view.total_lines == web2.view.line_count > 10
        assert any("web2: GET /index.html 200 (request 1)" in line for line in web2.view.lines)
        assert app._node_for_action(None) == "web2"
        await pilot.press("0")
        await pilot.pause()
        tenth = app.pane_for(names[9])
        assert tenth.display and app.focused is tenth.view and tenth.view.line_count > 0
