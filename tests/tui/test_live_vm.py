"""Shell panes, checkpoints and rewinds in the app, on a booted tiny guest."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.config import NodeConfig
from driver.guest.startscript import write_start_script
from driver.guest.tiny import build_tiny_guest
from helpers import Runs, script_app, wait_until
from vmtui.app import VmtuiApp
from vmtui.rerun import BOOT_CHECKPOINT, RerunMode
from widgets.terminal_view import ShellPane

pytestmark = pytest.mark.vm

SIZE = (160, 48)


@pytest.fixture(scope="module")
def node_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeConfig]:
    root = tmp_path_factory.mktemp("live-vm")
    script = write_start_script(root, name="node", node_number=1, vlans=[1], hosts=[("node", 1, 1)],
                                image=build_tiny_guest())
    yield NodeConfig("node", str(script))


async def guest(app: VmtuiApp, command: str) -> tuple[int, str]:
    """A command on the node, from a thread (as the app's workers do)."""
    machine = app.session.driver.machines[0]
    return await asyncio.to_thread(machine.execute, command)


def record_notifications(app: VmtuiApp) -> list[str]:
    """What the app told the user (for failure messages)."""
    said: list[str] = []
    notify = app.notify

    def recording(message: str, *args: object, **kwargs: object) -> None:
        said.append(f"{kwargs.get('title', '')}: {message}")
        notify(message, *args, **kwargs)  # type: ignore[arg-type]

    app.notify = recording  # type: ignore[method-assign]
    return said


async def start(pilot, app: VmtuiApp) -> Runs:  # type: ignore[no-untyped-def]
    await wait_until(pilot, lambda: app.session is not None and app.rerun is not None, "the session")
    runs = Runs(app)
    await pilot.press("c")
    return runs


async def ended(pilot, app: VmtuiApp, runs: Runs, count: int, what: str) -> None:  # type: ignore[no-untyped-def]
    await wait_until(pilot, lambda: len(runs.ended) >= count and not app.script_running, what)
    await pilot.pause(0.1)


async def test_shell_pane_into_a_node(tmp_path: Path, node_config: NodeConfig) -> None:
    app = script_app(tmp_path, 'node.succeed("true")\n', nodes=[node_config])
    try:
        await shell_pane_steps(app)
    finally:
        if app.session is not None:
            await asyncio.to_thread(app.session.close)


async def shell_pane_steps(app: VmtuiApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        runs = await start(pilot, app)
        await ended(pilot, app, runs, 1, "the node to boot")
        await pilot.press("o")
        await wait_until(pilot, lambda: len(app.query(ShellPane)) == 1, "the shell pane")
        pane = app.query_one(ShellPane)
        view = pane.view
        await wait_until(pilot, lambda: view.screen_text.rstrip().endswith("#"), "the prompt")
        assert app.focused is view
        await pilot.press(*"echo $((6*7))", "enter")
        await wait_until(pilot, lambda: "\n42" in view.screen_text, "the command's output")
        # Ctrl-C reaches the guest's foreground job, not the app.
        await pilot.press(*"sleep 4321", "enter")
        probe = "ps -o stat,args | grep -v grep | grep 'sleep 4321' | grep -qv '^ *T'"
        for _ in range(600):
            if (await guest(app, probe))[0] == 0:
                break
            await pilot.pause(0.1)
        await pilot.press("ctrl+c")
        await pilot.press(*"echo rc=$?", "enter")
        await wait_until(pilot, lambda: "rc=130" in view.screen_text, "the prompt after Ctrl-C")
        # The script's channel is untouched by the shell.
        assert (await guest(app, "echo backdoor")) == (0, "backdoor\n")
        # ctrl+] leaves the terminal; `exit` closes the pane.
        await pilot.press("ctrl+right_square_bracket")
        assert app.focused is not view
        view.focus()
        await pilot.press(*"exit", "enter")
        await wait_until(pilot, lambda: len(app.query(ShellPane)) == 0, "the pane to close")


THREE_STEPS = """\
node.succeed("echo one > /root/one")
node.succeed("echo two > /root/two")
node.succeed("echo three > /root/three")
"""


async def test_checkpoints_rewind_and_rerun_from_a_checkpoint(tmp_path: Path, node_config: NodeConfig) -> None:
    app = script_app(tmp_path, THREE_STEPS, nodes=[node_config])
    try:
        await checkpoint_steps(app, tmp_path)
    finally:
        if app.session is not None:
            await asyncio.to_thread(app.session.close)


async def checkpoint_steps(app: VmtuiApp, tmp_path: Path) -> None:
    said = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        runs = await start(pilot, app)
        await ended(pilot, app, runs, 1, "the first run")
        assert runs.ended[-1].ok
        # The node came up during the first statement: the boot checkpoint follows it.
        marks = app.rerun.checkpoint_marks()
        assert [(m.name, m.statement_index) for m in marks] == [(BOOT_CHECKPOINT, 1)]

        # Rewind to just before line 3: restore "boot", replay line 2, stop.
        app.script_view.focus()
        app.script_view.cursor_line = 3
        await guest(app, "touch /root/extra")
        await pilot.press("u")
        await ended(pilot, app, runs, 2, "the replay after the rewind")
        listing = (await guest(app, "ls /root"))[1].split()
        assert listing == ["one", "two"]  # /root/three and /root/extra are gone

        # A checkpoint on demand, then rerun-from-checkpoint on a save.
        await pilot.press("k")
        await wait_until(pilot, lambda: len(app.rerun.checkpoint_marks()) == 2, f"the new checkpoint ({said})")
        await pilot.press("m", "m", "m")
        assert app.rerun.mode is RerunMode.CHECKPOINT
        await guest(app, "touch /root/extra")
        temp = tmp_path / ".test.py.tmp"
        temp.write_text(THREE_STEPS.replace("echo three", "echo THREE"))
        os.replace(temp, app.config.script_path)
        await ended(pilot, app, runs, 3, "the rerun from the checkpoint")
        assert runs.ended[-1].ok
        assert (await guest(app, "cat /root/three"))[1] == "THREE\n"
        assert (await guest(app, "test -e /root/extra"))[0] == 1  # rolled back first


@pytest.fixture(scope="module")
def virtiofs_node_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeConfig]:
    """A node shaped like a NixOS VM of September 2026: shares through virtiofsd."""
    root = tmp_path_factory.mktemp("live-vm-fs")
    script = write_start_script(root, name="node", node_number=1, vlans=[1], hosts=[("node", 1, 1)],
                                image=build_tiny_guest(), shape="nixos-virtiofs")
    yield NodeConfig("node", str(script))


async def test_without_checkpoints_rewind_and_checkpoint_mode_say_so_and_rerun(
    tmp_path: Path, virtiofs_node_config: NodeConfig
) -> None:
    app = script_app(tmp_path, THREE_STEPS, nodes=[virtiofs_node_config])
    try:
        await fallback_steps(app, tmp_path)
    finally:
        if app.session is not None:
            await asyncio.to_thread(app.session.close)


async def fallback_steps(app: VmtuiApp, tmp_path: Path) -> None:
    said = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        runs = await start(pilot, app)
        await ended(pilot, app, runs, 1, "the first run")
        assert runs.ended[-1].ok
        # The boot checkpoint was refused: QEMU 7.2 cannot save vhost-user-fs.
        assert app.rerun.checkpoint_marks() == []
        refused = app.session.checkpoints.refused
        assert refused is not None and "vhost-user-fs-pci" in refused and "'nix-store'" in refused

        # `u` says why it cannot rewind and reruns from the cursor's statement.
        app.script_view.focus()
        app.script_view.cursor_line = 3
        await guest(app, "rm /root/three")
        await pilot.press("u")
        await ended(pilot, app, runs, 2, "the plain rerun instead of a rewind")
        assert runs.ended[-1].ok
        rewind = [line for line in said if line.startswith("rewind: ")]
        assert rewind and rewind[-1].startswith("rewind: cannot rewind, no checkpoints in this test: node cannot")
        assert "a plain rerun from line 3 instead" in rewind[-1]
        assert (await guest(app, "cat /root/three"))[1] == "three\n"

        # `k` says why no checkpoint can be taken.
        await pilot.press("k")
        await wait_until(pilot, lambda: any(line.startswith("checkpoint: node cannot be checkpointed") for line in said),
                         f"the refusal ({said})")

        # The "from a checkpoint" mode says so when chosen, and on a save.
        await pilot.press("m", "m", "m")
        assert app.rerun.mode is RerunMode.CHECKPOINT
        assert any("this test can have no checkpoints" in line for line in said if line.startswith("rerun mode: "))
        temp = tmp_path / ".test.py.tmp"
        temp.write_text(THREE_STEPS.replace("echo three", "echo THREE"))
        os.replace(temp, app.config.script_path)
        await ended(pilot, app, runs, 3, "the plain rerun after the save")
        assert runs.ended[-1].ok
        saved = [line for line in said if line.startswith("saved: ")]
        assert saved and saved[-1].startswith("saved: no checkpoints in this test: node cannot be checkpointed")
        assert (await guest(app, "cat /root/three"))[1] == "THREE\n"
