"""Turn what the user typed after `vmtui` into a `TestConfig`.

A target is one of:

- `demo`: the embedded todos example (tiny guests, no Nix);
- a `.toml` test spec (`driver.spec`);
- a `.nix` file or a flake reference with an attribute (`vmtui.nix`);
- a built NixOS test driver: `./result`, a store path, or its program
  (`bin/nixos-test-driver`, `bin/run-nixos-test`; `driver.wrapper`).

The Nix modules are imported only when a target needs them.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Callable

from driver.config import TestConfig
from driver.errors import ConfigError
from vmtui.options import RunOptions

Progress = Callable[[str], None]

DEMO = "demo"


def demo_spec_path() -> Path:
    """The todos example shipped inside the package."""
    return Path(str(resources.files("vmtui.examples").joinpath("todos.toml")))


def resolve_target(target: str, options: RunOptions, *, progress: Progress | None = None) -> TestConfig:
    """Resolve `target`; raises ConfigError (one line) when it cannot."""
    config = _resolve(target, options, progress)
    if options.global_timeout is not None:
        config = dataclasses.replace(config, global_timeout=options.global_timeout)
    return config


def _resolve(target: str, options: RunOptions, progress: Progress | None) -> TestConfig:
    from driver.spec import load_spec

    if target == DEMO:
        return load_spec(demo_spec_path(), progress=progress)
    if target.endswith(".toml"):
        return load_spec(Path(target), progress=progress)

    path = Path(target)
    if not path.exists():
        from vmtui.nix import looks_like_nix_target, resolve_nix_target

        if looks_like_nix_target(target):
            return resolve_nix_target(target, attr=options.attr, on_progress=progress)
        raise ConfigError(f"{target}: no such file or directory")
    if target.endswith(".nix") or (path.is_dir() and (path / "flake.nix").is_file() and "#" in target):
        from vmtui.nix import resolve_nix_target

        return resolve_nix_target(target, attr=options.attr, on_progress=progress)
    if target.endswith(".py"):
        raise ConfigError(
            f"{target}: a test script alone is not a test; "
            "name a .toml spec, a .nix file, or a built test driver (./result)"
        )
    from driver.wrapper import load_driver_result

    return load_driver_result(path)
