"""What the command line asks of a run, for the headless runner and the TUI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class RunOptions:
    # Keep machine state (disks) from an earlier run (-K).
    keep_state: bool = False
    # Where screenshots, copied files and the JUnit report go (-o).
    out_dir: Path = field(default_factory=Path.cwd)
    # The JUnit XML report, already resolved against out_dir.
    junit_xml: Path | None = None
    # Overrides the test's own global timeout, in seconds.
    global_timeout: float | None = None
    log_level: str = "info"
    headless: bool = False
    # nixos-test-driver's -I: accepted; the TUI is vmtui's interactive mode.
    interactive: bool = False
    # The attribute of a .nix target to build (-A).
    attr: str | None = None
