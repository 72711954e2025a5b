"""`vmtui replay`'s spool directory goes on every way the process ends, the forced one too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# run_replay with an app whose orderly exit hangs, so the signal watchdog
# (`vmtui.app._force_exit_after`) ends the process: it runs
# `processes.cleanup()` and then `os._exit`, skipping run_replay's `finally`.
HUNG_REPLAY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import vmtui.app
    import vmtui.replay.app as replay

    class HungApp:
        class replay:
            @staticmethod
            def close() -> None:
                pass

        @staticmethod
        def run() -> None:
            vmtui.app._force_exit_after(0, 3)

    def make_replay_app(path, script, spool_dir, *, owns_process):
        (spool_dir / "driver.spool").write_text("x")
        print(spool_dir, flush=True)
        return HungApp

    replay.make_replay_app = make_replay_app
    replay.run_replay(Path("run.log"))
    """
)


def test_a_forced_exit_removes_the_spool_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HUNG_REPLAY.format(repo=str(REPO))],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    spool = Path(done.stdout.strip())
    assert spool.parent == tmp_path and spool.name.startswith("vmtui-replay-")
    assert list(tmp_path.iterdir()) == []
