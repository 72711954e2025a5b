# vmtui as a `pythonTestDriverPackage`: in the place of nixpkgs' `nixos-test-driver`.
#
# Since nixpkgs PR #503686 a test takes its driver from the option
# `pythonTestDriverPackage`, which defaults to `hostPkgs.nixos-test-driver`
# (read-only: a test changes it through its host pkgs, see `lib.nix`).
# `nixos/lib/testing/driver.nix` calls
# `.override { qemu_pkg; enableOCR; extraPythonPackages; enableNspawn; }`
# on it, links its `bin/nixos-test-driver`, runs its
# `bin/generate-driver-symbols`, and type checks the test script against its
# `test_driver` Python package.  So this package is the upstream one with a
# single file swapped: `bin/nixos-test-driver` execs `vmtui driver …`, which
# reads the same flags and environment as the upstream driver (every era).
# The flake offers it as `packages.<system>.nixos-test-driver` and
# `pkgs.vmtui-nixos-test-driver`.
{
  lib,
  symlinkJoin,
  makeWrapper,
  vmtui,
  # The package this one stands in for (`prev.nixos-test-driver` in an overlay).
  upstream,
  qemu_test,
  qemu_pkg ? qemu_test,
  enableOCR ? false,
  enableNspawn ? false,
  extraPythonPackages ? (_: [ ]),
}@args:
let
  # Hand on only the arguments driver.nix actually passed: an older upstream
  # may not know every one of them (e.g. enableNspawn).
  upstreamArgs = lib.filterAttrs (
    name: _:
    lib.elem name [
      "qemu_pkg"
      "enableOCR"
      "enableNspawn"
      "extraPythonPackages"
    ]
  ) args;
  upstreamDriver = upstream.override upstreamArgs;
in
symlinkJoin {
  name = "vmtui-as-nixos-test-driver-${vmtui.version}";
  paths = [ upstreamDriver ];
  nativeBuildInputs = [ makeWrapper ];
  postBuild = ''
    rm "$out/bin/nixos-test-driver"
    makeWrapper ${lib.getExe vmtui} "$out/bin/nixos-test-driver" \
      --add-flags driver \
      --prefix PATH : ${lib.makeBinPath [ qemu_pkg ]}
  '';
  passthru = {
    inherit upstreamDriver vmtui;
  };
  meta = (upstreamDriver.meta or { }) // {
    mainProgram = "nixos-test-driver";
  };
}
