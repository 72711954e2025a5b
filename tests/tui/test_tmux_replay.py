"""`vmtui replay` in a real terminal (tmux): a NixOS log opens, the failure shows, `q` leaves cleanly."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from test_tmux_demo import VMTUI, Terminal

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

DATA = Path(__file__).resolve().parents[1] / "data"


def test_replay_of_a_nixos_log_in_a_terminal(tmp_path: Path) -> None:
    spools_before = set(Path(tempfile.gettempdir()).glob("vmtui-replay-*"))
    log = DATA / "nixos-json-era.log"
    terminal = Terminal(f"{VMTUI} replay {log} --script {DATA / 'storefront.py'}", tmp_path)
    try:
        terminal.wait_for(lambda: "panic: database is locked" in terminal.screen(), "the store console")
        terminal.wait_for(lambda: "failed at line 8" in terminal.screen(), "the failure in the status line")
        screen = terminal.screen()
        assert 'store.wait_for_unit("storefront.service")' in screen
        assert "✗ run the VM test script" in screen and "✓ start all VLans" in screen
        terminal.keys("q")
        terminal.wait_for(lambda: terminal.exit_status() is not None, "vmtui to exit")
        assert terminal.exit_status() == 0
    finally:
        terminal.close()
    # The spool directory went with the app.
    assert set(Path(tempfile.gettempdir()).glob("vmtui-replay-*")) == spools_before


def test_closing_the_terminal_ends_replay_and_removes_its_spool(tmp_path: Path) -> None:
    spools_before = set(Path(tempfile.gettempdir()).glob("vmtui-replay-*"))
    terminal = Terminal(f"{VMTUI} replay {DATA / 'nixos-logfile.xml'}", tmp_path)
    try:
        terminal.wait_for(lambda: "postfix/local[815]" in terminal.screen(), "the mailer console")
        assert set(Path(tempfile.gettempdir()).glob("vmtui-replay-*")) != spools_before
        pid = terminal.shell_pid
    finally:
        terminal.close()  # the terminal goes away: SIGHUP
    give_up = time.monotonic() + 30
    while set(Path(tempfile.gettempdir()).glob("vmtui-replay-*")) != spools_before:
        assert time.monotonic() < give_up, "the spool directory stayed"
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "vmtui" not in Path(f"/proc/{pid}/cmdline").read_text()
