"""A test script written for the late-2026 NixOS driver runs unmodified.

`examples/api-2026/test.py` uses timedelta timeouts, imports from
`test_driver.*`, builds a machine of its own `QemuMachine` subclass and
copies a file out with `copy_from_machine`; here it runs as a user runs it,
`vmtui run --headless`, on two real tiny guests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
# A safety net for a hung run, not a timing assertion.
RUN_LIMIT = 900


def test_the_2026_example_passes_headless(tmp_path: Path) -> None:
    # Short: the machines' UNIX socket paths live under it.
    run_tmp = Path(tempfile.mkdtemp(prefix="va-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(run_tmp)}
    env.pop("XDG_RUNTIME_DIR", None)
    (tmp_path / "out").mkdir()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "vmtui", "run", "--headless", str(REPO / "examples/api-2026/test.toml"), "-o", str(tmp_path / "out")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT,
        )
        left = subprocess.run(["pgrep", "-f", str(run_tmp)], capture_output=True, text=True).stdout.strip()
        assert left == "", f"left running: {left}"
        assert sorted(p.name for p in run_tmp.iterdir()) == []
    finally:
        shutil.rmtree(run_tmp, ignore_errors=True)
    log = result.stderr
    assert result.returncode == 0, log[-4000:]
    assert (tmp_path / "out" / "reports" / "report.txt").read_text() == "report from server\n"
    # The deprecated spellings ran and said so in the log, once each.
    assert log.count("retry(): the 'timeout_seconds' argument is deprecated") == 1
    assert log.count("sleep(): the 'secs' argument is deprecated") == 1
    assert "timed out as expected" in log and "failed as expected" in log
    # The script's own machine class booted and answered.
    assert "waiting for /etc/hosts (busybox init)" in log
