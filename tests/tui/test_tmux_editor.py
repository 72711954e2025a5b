"""The script editor in a real terminal (tmux): type an edit, Ctrl+S, and the edit runs on the live VM."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from test_tmux_demo import VMTUI, Terminal

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

SPEC = 'name = "edit"\nscript = "edit.py"\n\n[nodes.machine]\n'
SCRIPT = 'start_all()\nmachine.succeed("echo first")\nmachine.succeed("echo ORIGINAL")\n'


@pytest.fixture
def editing(tmp_path: Path) -> Iterator[Terminal]:
    (tmp_path / "edit.toml").write_text(SPEC)
    (tmp_path / "edit.py").write_text(SCRIPT)
    env = f"XDG_STATE_HOME={tmp_path / 'state'} XDG_CONFIG_HOME={tmp_path / 'config'}"
    terminal = Terminal(f"env -u COLUMNS -u LINES {env} {VMTUI} edit.toml", tmp_path)
    try:
        yield terminal
    finally:
        terminal.close_leaving_no_vm()


def test_an_edit_typed_in_vmtui_and_saved_with_ctrl_s_runs(editing: Terminal, tmp_path: Path) -> None:
    editing.wait_for(lambda: "✓ passed" in editing.screen(), "the first run to pass")
    editing.keys("g", "Down", "Down", "e")
    editing.wait_for(lambda: "EDIT" in editing.screen(), "the editor")
    # Find the word, select it, type over it.
    editing.keys("C-f")
    editing.wait_for(lambda: "replace with" in editing.screen(), "the find bar")
    editing.keys("-l", "ORIGINAL")
    editing.keys("Enter")
    # A terminal's Escape followed at once by a letter reads as Alt+letter: wait for the bar to close.
    editing.keys("Escape")
    editing.wait_for(lambda: "replace with" not in editing.screen(), "the find bar to close")
    editing.keys("-l", "EDITED")
    editing.wait_for(lambda: "unsaved" in editing.screen(), "the unsaved edit")
    editing.keys("C-s")
    editing.wait_for(lambda: 'echo EDITED' in (tmp_path / "edit.py").read_text(), "the save")
    # The rerun ran the edited statement against the running VM (the timeline says so), and passed.
    editing.wait_for(lambda: "must succeed: echo EDITED" in editing.screen(), "the edited statement to run")
    editing.wait_for(lambda: "✓ passed" in editing.screen() and "unsaved" not in editing.screen(), "the rerun to pass")
    editing.keys("Escape")
    editing.wait_for(lambda: "EDIT " not in editing.screen(), "the debugger keys")
    editing.keys("q")
    editing.wait_for(lambda: editing.exit_status() is not None, "vmtui to exit")
    assert editing.exit_status() == 0
    assert not list(tmp_path.glob(".*vmtui-save"))
