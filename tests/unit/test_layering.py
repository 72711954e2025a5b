"""The layering rules of docs/internals.md, kept by tests rather than by hope.

- Importing the driver, and running the headless path, never loads
  `textual` or `rich` (checked in a fresh interpreter, through
  `sys.modules`): a headless run on a CI machine must not pay for, or
  depend on, the UI.
- The decisions of live iteration (vmtui/live.py) are Textual-free too.
- The names the script linter knows as the Machine API (`MACHINE_METHODS`)
  are exactly the public methods of `Machine`, minus the driver's own.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import driver
from driver.machine import Machine
from driver.runner import MACHINE_METHODS

ROOT = Path(__file__).resolve().parents[2]
UI_PACKAGES = ("textual", "rich")

# Public methods of Machine that are the driver's plumbing, not script API.
DRIVER_ONLY = frozenset({"exclusive_channel", "is_dead", "reset_state_dir", "send_control", "shell_socket_path", "screen_frame", "press_key", "is_graphical"})


def _loaded_ui_modules(code: str, cwd: Path) -> list[str]:
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {UI_PACKAGES!r})))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_every_driver_module_loads_no_ui(tmp_path: Path) -> None:
    modules = sorted(
        info.name for info in pkgutil.walk_packages(driver.__path__, "driver.") if not info.name.endswith("__main__")
    )
    assert "driver.machine" in modules and "driver.guest.tiny" in modules
    imports = "\n".join(f"import {name}" for name in modules)
    assert _loaded_ui_modules(imports, tmp_path) == []


def test_the_headless_path_loads_no_ui(tmp_path: Path) -> None:
    script = tmp_path / "test.py"
    script.write_text('with subtest("arithmetic"):\n    assert 1 + 1 == 2\n')
    code = f"""
        import sys
        from pathlib import Path
        from driver.config import TestConfig
        from vmtui.cli import main
        from vmtui.headless import run_headless
        from vmtui.options import RunOptions
        from vmtui import live, rebuild, rerun, session, targets, watch
        config = TestConfig(nodes=[], vlans=[], script_path=Path({str(script)!r}), name="layering")
        status = run_headless(config, RunOptions(out_dir=Path({str(tmp_path)!r}), headless=True))
        assert status == 0, status
        # The CLI's headless path, as far as a bad target takes it (exit 2).
        assert main(["run", "--headless", {str(tmp_path / "missing.toml")!r}]) == 2
    """
    assert _loaded_ui_modules(code, tmp_path) == []


def test_the_probe_does_see_the_ui_when_it_is_loaded(tmp_path: Path) -> None:
    # Without this, a probe that never saw any module would pass every test above.
    assert "textual.app" in _loaded_ui_modules("import vmtui.app", tmp_path)


def test_the_linters_machine_api_is_machines_public_methods() -> None:
    public = {name for name, value in inspect.getmembers(Machine)
              if not name.startswith("_") and inspect.isfunction(value)}
    assert sorted(MACHINE_METHODS - public) == [], "listed as Machine API but Machine has no such method"
    assert sorted(public - MACHINE_METHODS - DRIVER_ONLY) == [], (
        "new public Machine methods: add them to driver.runner.MACHINE_METHODS (script API) "
        "or to DRIVER_ONLY here (plumbing)"
    )
    assert DRIVER_ONLY <= public
