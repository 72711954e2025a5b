"""Resolve a test's source again after a save, and say what the save changed.

The TUI watches the file the user opened besides the script: a `.nix` file
(or a local flake's `flake.nix`) or a `.toml` spec.  When it is saved, the
test is resolved again exactly as at start-up (Nix builds the driver; the
spec builds its start scripts) and compared with what runs now
(`vmtui.nix.diff_configs`): the script may be swapped in, nodes whose start
command changed must restart, anything else needs a new session.

Nothing here touches a VM; `SourceRebuilder.rebuild` blocks (Nix may build
for minutes) and is meant for a worker thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from driver.config import TestConfig
from driver.spec import load_spec
from vmtui.nix import ConfigChange, NixBuildCancelled, NixTarget, diff_configs, load_nix_target, parse_nix_target

ProgressCallback = Callable[[str], None]
# Resolves the source again: (progress callback, cancel event) -> the new config.
Resolver = Callable[[ProgressCallback | None, threading.Event | None], TestConfig]

# How vmtui.nix.load_nix_target records the target it built.
_BUILT_NOTE_PREFIX = "built "
_BUILT_NOTE_TARGET = " from "


@dataclass(frozen=True)
class RebuildResult:
    """A rebuild's outcome, sorted into what the session can and cannot apply."""

    change: ConfigChange
    # Nodes that run now and got a new start command: restartable one by one.
    restartable: dict[str, str]
    # What a running session cannot take on (nodes added or removed, VLANs changed).
    needs_new_session: list[str]
    # The script moved to another file (a new store path, or another file named by the spec).
    script_moved: bool

    @property
    def new_config(self) -> TestConfig:
        return self.change.new_config


class SourceRebuilder:
    """Re-resolves one test's `.nix`/`.toml` source; see the module docstring."""

    def __init__(self, source: Path, resolve: Resolver) -> None:
        self.source = source
        self._resolve = resolve

    @classmethod
    def for_config(cls, config: TestConfig, *, attr: str | None = None) -> SourceRebuilder | None:
        """The rebuilder for a config's source, or None when its source is not rebuildable."""
        source = config.source_path
        if source is None or source == config.script_path:
            return None
        if source.suffix == ".toml":
            # Building start scripts cannot be interrupted; the caller drops a stale result.
            return cls(source, lambda progress, cancel: load_spec(source, progress=progress))
        if source.suffix == ".nix":
            target = _nix_target(config, source, attr)
            return cls(source, lambda progress, cancel: load_nix_target(target, on_progress=progress, cancel=cancel))
        return None

    def rebuild(
        self,
        current: TestConfig,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> RebuildResult:
        """Resolve the source again and compare with `current`.

        Raises `ConfigError` (NixError included) when the source no longer
        resolves, and `NixBuildCancelled` when `cancel` was set.
        """
        new = self._resolve(on_progress, cancel)
        if cancel is not None and cancel.is_set():
            raise NixBuildCancelled(f"rebuild of {self.source} cancelled")
        return sort_change(current, diff_configs(current, new))


def sort_change(current: TestConfig, change: ConfigChange) -> RebuildResult:
    running = {node.name for node in current.nodes}
    commands = {node.name: node.start_command for node in change.new_config.nodes}
    restartable = {name: commands[name] for name in change.changed_nodes if name in running}
    structural = [f"node {name} is new" for name in change.changed_nodes if name not in running]
    structural += [f"node {name} was removed" for name in change.removed_nodes]
    if change.vlans_changed:
        structural.append(f"the VLANs are now {change.new_config.vlans}")
    return RebuildResult(
        change=change,
        restartable=restartable,
        needs_new_session=structural,
        script_moved=current.script_path != change.new_config.script_path,
    )


def _nix_target(config: TestConfig, source: Path, attr: str | None) -> NixTarget:
    # A local flake's source is its flake.nix; the reference it was opened
    # with (`.#checks.<system>.<name>`) is in the note the build left.
    for note in config.notes:
        if note.startswith(_BUILT_NOTE_PREFIX) and _BUILT_NOTE_TARGET in note:
            built_from = note.split(_BUILT_NOTE_TARGET, 1)[1]
            if "#" in built_from and not built_from.endswith(".nix") and " -A " not in built_from:
                return parse_nix_target(built_from)
    return NixTarget(file=source, attr=attr or None)
