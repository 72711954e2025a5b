"""tests/conftest.py: a session that leaves files in its TMPDIR fails and names them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def run_session(tmp_path: Path, test_body: str) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own, in `tmp_path`, under the suite's conftest."""
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_it.py").write_text(test_body)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_file_left_in_tmpdir_fails_the_session(tmp_path: Path) -> None:
    result = run_session(
        tmp_path,
        "import os, tempfile\n"
        "def test_forgets_its_dir():\n"
        "    path = tempfile.mkdtemp(prefix='forgotten-')\n"
        "    open(os.path.join(path, 'state'), 'w').close()\n",
    )
    assert result.returncode == 1, result.stdout
    assert "1 passed" in result.stdout
    assert "files left behind" in result.stdout
    assert "forgotten-" in result.stdout and "/state" in result.stdout


def test_a_session_that_cleans_up_passes_and_leaves_nothing(tmp_path: Path) -> None:
    before = set(Path(os.environ["TMPDIR"]).iterdir())
    result = run_session(
        tmp_path,
        "import os, shutil, tempfile\n"
        "def test_cleans_up(tmp_path):\n"
        "    assert os.environ['TMPDIR'] != '/tmp' and str(tmp_path).startswith(os.path.dirname(os.environ['TMPDIR']))\n"
        "    path = tempfile.mkdtemp()\n"
        "    shutil.rmtree(path)\n"
        "    (tmp_path / 'kept').write_text('pytest tmp_path is cleared with the area')\n",
    )
    assert result.returncode == 0, result.stdout
    assert "files left behind" not in result.stdout
    # The session's private area (its tmp_path included) is gone with it.
    assert set(Path(os.environ["TMPDIR"]).iterdir()) == before
