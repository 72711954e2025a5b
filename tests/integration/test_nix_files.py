"""vmtui's own Nix files, read by a real Nix (Debian 12's Nix 2.8, unpacked).

No nixpkgs is at hand, so `flake.nix` is evaluated against a stand-in
(`tests/nix-standin/`): nixpkgs' builders reduced to attribute sets that
record their arguments.  That checks what can be checked without nixpkgs:
every file parses, the flake's outputs exist where they should, the package
for `pythonTestDriverPackage` is the upstream one with `bin/nixos-test-driver`
swapped for `vmtui driver`, and it hands the test framework's `.override`
arguments on to the upstream package.  Building against real nixpkgs is not
verified here (docs/nix.md says so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nixfixtures as nf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "nix-standin"
NIX_FILES = sorted([REPO / "flake.nix", *(REPO / "nix").glob("*.nix"), *(REPO / "examples").glob("*.nix")])


@pytest.fixture(scope="module")
def nix_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = nf.debian_nix(tmp_path_factory.mktemp("nix"))
    if env is None:
        pytest.skip("Debian's nix-bin could not be fetched (no apt lists or no network)")
    return dict(os.environ, **env)


def nix_eval(expr: str, env: dict[str, str]) -> object:
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_nix_file_parses(nix_env: dict[str, str], path: Path) -> None:
    result = subprocess.run(["nix-instantiate", "--parse", str(path)], env=nix_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_flake_against_a_stand_in_nixpkgs(nix_env: dict[str, str], tmp_path: Path) -> None:
    # A nixpkgs from before PR #503686: no `pkgs.nixos-test-driver`.
    old = tmp_path / "old-nixpkgs"
    old.mkdir()
    (old / "default.nix").write_text(
        f"args: import {STANDIN}/default.nix (args // {{ withTestDriverPackage = false; }})\n"
    )
    expr = f"""
    let
      evalFlake = dir:
        let
          flake = import {REPO}/flake.nix;
          self = flake.outputs {{ inherit self; nixpkgs = {{ outPath = dir; lib = import {STANDIN}/lib.nix; }}; }};
        in self;
      new = evalFlake {STANDIN};
      old = evalFlake {old};
      sys = "x86_64-linux";
      pkgs = import {STANDIN} {{ system = sys; }};
      package = new.packages.${{sys}}.nixos-test-driver;
      upstreamOf = drv: builtins.head drv.joinArgs.paths;
      overridden = package.override {{
        qemu_pkg = pkgs.qemu; enableOCR = true; extraPythonPackages = _: [ ]; enableNspawn = true;
      }};
      viaLib = new.lib.${{sys}}.runNixOSTest {{ name = "todos"; }};
      viaOverlay = import {STANDIN} {{ system = sys; overlays = [ new.overlays.nixosTestDriver ]; }};
    in {{
      packages = builtins.attrNames new.packages.${{sys}};
      oldPackages = builtins.attrNames old.packages.${{sys}};
      name = package.name;
      mainProgram = package.meta.mainProgram;
      postBuild = package.joinArgs.postBuild;
      upstreamArgs = (upstreamOf package).overriddenWith;
      overriddenUpstreamArgs = (upstreamOf overridden).overriddenWith;
      overriddenPostBuild = overridden.joinArgs.postBuild;
      runNixOSTestDriver = viaLib.testDriver.name;
      runNixOSTestUpstreamArgs = (upstreamOf viaLib.testDriver).overriddenWith;
      withVmtuiDriver = (new.lib.${{sys}}.withVmtuiDriver pkgs).nixos-test-driver.name;
      overlayDriver = viaOverlay.nixos-test-driver.name;
      overlayVmtui = viaOverlay.vmtui.name;
      app = new.apps.${{sys}}.default.program;
    }}
    """
    facts = nix_eval(expr, nix_env)
    assert isinstance(facts, dict)
    version = _version()
    vmtui_exe = f"/nix/store/00000000000000000000000000000000-vmtui-{version}/bin/vmtui"
    assert facts["packages"] == ["default", "nixos-test-driver", "vmtui"]
    assert facts["oldPackages"] == ["default", "vmtui"]
    assert facts["name"] == f"vmtui-as-nixos-test-driver-{version}"
    assert facts["mainProgram"] == "nixos-test-driver"
    # The upstream package, one file swapped: bin/nixos-test-driver runs `vmtui driver`.
    assert 'rm "$out/bin/nixos-test-driver"' in facts["postBuild"]
    assert f'makeWrapper {vmtui_exe} "$out/bin/nixos-test-driver"' in facts["postBuild"]
    assert "--add-flags driver" in facts["postBuild"]
    assert facts["upstreamArgs"] == []
    # driver.nix's `.override` reaches the upstream package, all four arguments.
    assert facts["overriddenUpstreamArgs"] == ["enableNspawn", "enableOCR", "extraPythonPackages", "qemu_pkg"]
    assert "/nix/store/00000000000000000000000000000000-qemu/bin" in facts["overriddenPostBuild"]
    assert facts["runNixOSTestDriver"] == f"vmtui-as-nixos-test-driver-{version}"
    assert facts["runNixOSTestUpstreamArgs"] == ["enableNspawn", "enableOCR", "extraPythonPackages", "qemu_pkg"]
    assert facts["withVmtuiDriver"] == f"vmtui-as-nixos-test-driver-{version}"
    assert facts["overlayDriver"] == f"vmtui-as-nixos-test-driver-{version}"
    assert facts["overlayVmtui"] == f"vmtui-{version}"
    assert facts["app"] == vmtui_exe


def _version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
