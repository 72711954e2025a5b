"""What every kind of target (a spec, a built NixOS driver, a .nix file) resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NodeConfig:
    """One QEMU node: its name and the NixOS-style start command that boots it."""

    name: str
    # A `run-<name>-vm` path or any shell command line; the driver appends its
    # own QEMU arguments.
    start_command: str


@dataclass
class TestConfig:
    __test__ = False  # a test's configuration, not a pytest test class

    nodes: list[NodeConfig]
    vlans: list[int]
    # The Python test script: what the script view shows and the stepper steps.
    script_path: Path
    global_timeout: float | None = None
    # The file the user opened (.toml / .nix), for display and for watching.
    source_path: Path | None = None
    name: str = "test"
    # Extra details a front end may show (e.g. the wrapper era it came from).
    notes: list[str] = field(default_factory=list)
