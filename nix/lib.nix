# Helpers that turn a NixOS test into a program opening it in vmtui.
#
# A "test" here is what `pkgs.testers.runNixOSTest` / `pkgs.nixosTest`
# return: the test-run derivation, which carries `driver` and
# `driverInteractive`.  vmtui reads the driver's wrapper script to learn the
# nodes, VLANs and script, so no test option needs changing.
{
  pkgs,
  vmtui,
  # overlays.nixosTestDriver of the flake: `nixos-test-driver` becomes vmtui.
  nixosTestDriverOverlay,
}:
let
  inherit (pkgs) lib;

  testName = test: test.config.name or (lib.removePrefix "vm-test-run-" (test.name or "test"));
in
rec {
  # `nix run` this to debug the test in the TUI.  Extra arguments go to vmtui.
  openInVmtui =
    test:
    pkgs.writeShellApplication {
      name = "vmtui-${testName test}";
      text = ''
        exec ${lib.getExe vmtui} ${test.driverInteractive} "$@"
      '';
    };

  # The same test without a UI: NixOS-style log, exit status 0/1, for CI
  # machines that can run VMs outside the build sandbox.
  runHeadless =
    test:
    pkgs.writeShellApplication {
      name = "vmtui-run-${testName test}";
      text = ''
        exec ${lib.getExe vmtui} run --headless ${test.driver} "$@"
      '';
    };

  # A flake `apps` entry: `apps.<system>.my-test = vmtui.lib.<system>.mkApp myTest;`.
  mkApp = test: {
    type = "app";
    program = lib.getExe (openInVmtui test);
  };

  # `hostPkgs` with vmtui as `nixos-test-driver`.  A test's
  # `pythonTestDriverPackage` option defaults to `hostPkgs.nixos-test-driver`
  # and is read-only, so this is how a test gets another driver: build it
  # from these pkgs (`nixos-lib.runTest { hostPkgs = withVmtuiDriver pkgs; … }`).
  withVmtuiDriver = hostPkgs: hostPkgs.extend nixosTestDriverOverlay;

  # `pkgs.testers.runNixOSTest`, with vmtui as the driver: the result's
  # `driver`, `driverInteractive` and the sandboxed run all execute vmtui.
  runNixOSTest = testModule: (withVmtuiDriver pkgs).testers.runNixOSTest testModule;
}
