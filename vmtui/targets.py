"""Turn what the user typed after `vmtui` into a `TestConfig`.

A target is one of:

- `demo`: the embedded todos example (tiny guests, no Nix), run from a copy
  in `<out dir>/vmtui-demo/` so that editing it (`e`, `E`) never writes into
  the installed package;
- a `.toml` test spec (`driver.spec`);
- a `.nix` file or a flake reference with an attribute (`vmtui.nix`);
- a built NixOS test driver: `./result`, a store path, or its program
  (`bin/nixos-test-driver`, `bin/run-nixos-test`; `driver.wrapper`).

The Nix modules are imported only when a target needs them.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Callable

from driver.config import TestConfig
from driver.errors import ConfigError
from vmtui.options import RunOptions

Progress = Callable[[str], None]

DEMO = "demo"
# The demo's own copy, in the output directory; the files of the example it holds.
DEMO_DIR = "vmtui-demo"
DEMO_FILES = ("todos.toml", "todos.py", "todos.json")


def demo_spec_path() -> Path:
    """The todos example shipped inside the package."""
    return Path(str(resources.files("vmtui.examples").joinpath("todos.toml")))


def demo_copy(out_dir: Path) -> Path:
    """The demo's spec in `out_dir/vmtui-demo/`, copied there from the package first if need be.

    A copy already there is used as it is: the user's edits are theirs to
    keep (a missing file is copied again; deleting the directory starts afresh).
    """
    folder = out_dir / DEMO_DIR
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in DEMO_FILES:
            if not (folder / name).exists():
                shutil.copyfile(demo_spec_path().with_name(name), folder / name)
    except OSError as exc:
        raise ConfigError(f"cannot copy the demo to {folder}: {exc.strerror or exc}") from None
    if created:
        print(f"vmtui demo: the todos test is copied to {folder}/ (edit it freely; delete it for a fresh copy)",
              file=sys.stderr)
    return folder / DEMO_FILES[0]


def resolve_target(target: str, options: RunOptions, *, progress: Progress | None = None) -> TestConfig:
    """Resolve `target`; raises ConfigError (one line) when it cannot."""
    config = _resolve(target, options, progress)
    if options.global_timeout is not None:
        config = dataclasses.replace(config, global_timeout=options.global_timeout)
    return config


def _resolve(target: str, options: RunOptions, progress: Progress | None) -> TestConfig:
    from driver.spec import load_spec

    if target == DEMO:
        return load_spec(demo_copy(options.out_dir), progress=progress)
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
