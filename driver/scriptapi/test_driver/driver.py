"""`test_driver.driver`: the driver class and its helpers."""

from pathlib import Path

from driver import script_context
from driver.driver import Driver, default_tmp_base, pythonize_name


def get_tmp_dir() -> Path:
    """Where machines keep their state: the running test's directory (NixOS: `$XDG_RUNTIME_DIR`)."""
    defaults = script_context.current()
    return defaults.tmp_dir if defaults is not None else default_tmp_base()


__all__ = ["Driver", "get_tmp_dir", "pythonize_name"]
