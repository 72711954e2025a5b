"""`vmtui demo` runs from its own copy of the example in the output directory (vmtui/targets.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from driver.errors import ConfigError
from driver.spec import load_spec
from vmtui.options import RunOptions
from vmtui.targets import DEMO_DIR, DEMO_FILES, demo_copy, demo_spec_path, resolve_target


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in DEMO_FILES}


def test_the_demo_is_a_self_contained_copy_in_the_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = _digests(demo_spec_path().parent)
    config = resolve_target("demo", RunOptions(out_dir=tmp_path))
    folder = tmp_path / DEMO_DIR
    assert config.script_path == folder / "todos.py"
    assert _digests(folder) == shipped
    assert "copied to" in capsys.readouterr().err
    # Everything the spec names is in the copy: it loads on its own.
    assert load_spec(folder / "todos.toml").script_path == folder / "todos.py"


def test_edits_to_the_copy_are_kept_and_the_package_is_never_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = _digests(demo_spec_path().parent)
    demo_copy(tmp_path)
    script = tmp_path / DEMO_DIR / "todos.py"
    script.write_text(script.read_text() + "\nprint('mine')\n")
    (tmp_path / DEMO_DIR / "todos.json").unlink()
    capsys.readouterr()
    demo_copy(tmp_path)
    assert script.read_text().endswith("print('mine')\n")
    assert (tmp_path / DEMO_DIR / "todos.json").is_file()  # a missing file comes back
    assert capsys.readouterr().err == ""  # said once, when the copy was made
    assert _digests(demo_spec_path().parent) == shipped


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_output_directory_is_one_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="cannot copy the demo to"):
            demo_copy(tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_an_output_path_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot copy the demo to") as raised:
        demo_copy(blocker)
    assert "\n" not in str(raised.value)
