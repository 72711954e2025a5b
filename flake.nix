{
  description = "vmtui: a terminal UI for debugging NixOS-style VM integration tests";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # vmtui drives QEMU and vde_switch: Linux hosts only.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      pkgsFor = lib.genAttrs systems (
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
        }
      );

      forAllSystems = f: lib.genAttrs systems (system: f system pkgsFor.${system});

      # The example NixOS test, built from this flake's nixpkgs.
      todosTest = pkgs: import ./examples/todos-nixos.nix { inherit pkgs; };
    in
    {
      overlays = {
        # Adds `pkgs.vmtui`, and `pkgs.vmtui-nixos-test-driver`: vmtui in the
        # shape of nixpkgs' `nixos-test-driver`, the package a test's
        # `pythonTestDriverPackage` option takes (nixpkgs with PR #503686).
        default = final: prev: {
          vmtui = final.callPackage ./nix/package.nix { };
          vmtui-nixos-test-driver = final.callPackage ./nix/test-driver.nix {
            upstream = prev.nixos-test-driver;
          };
        };

        # Makes vmtui the driver of every NixOS test built from these pkgs:
        # `pythonTestDriverPackage` defaults to `pkgs.nixos-test-driver`
        # (needs a nixpkgs with PR #503686; see docs/nix.md).
        nixosTestDriver = lib.composeManyExtensions [
          self.overlays.default
          (final: _prev: {
            nixos-test-driver = final.vmtui-nixos-test-driver;
          })
        ];
      };

      packages = forAllSystems (
        _system: pkgs:
        {
          default = pkgs.vmtui;
          inherit (pkgs) vmtui;
        }
        # Only where nixpkgs has a driver package to stand in for.
        // lib.optionalAttrs (pkgs ? nixos-test-driver) {
          nixos-test-driver = pkgs.vmtui-nixos-test-driver;
        }
      );

      apps = forAllSystems (
        system: pkgs: {
          default = {
            type = "app";
            program = lib.getExe pkgs.vmtui;
          };
          # `nix run .#todos`: the example NixOS test, opened in vmtui.
          todos = self.lib.${system}.mkApp (todosTest pkgs);
        }
      );

      devShells = forAllSystems (
        _system: pkgs: {
          default = pkgs.mkShell {
            packages = [
              (pkgs.python3.withPackages (
                ps:
                pkgs.vmtui.passthru.pythonDependencies ps
                ++ [
                  ps.setuptools
                  ps.pytest
                  ps.pytest-asyncio
                  ps.pytest-timeout
                  ps.pytest-textual-snapshot
                ]
              ))
            ]
            ++ pkgs.vmtui.passthru.runtimeTools;
            # Run from the checkout: `python -m pytest tests/unit`.
            shellHook = ''
              export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
            '';
          };
        }
      );

      # Everything here builds in the sandbox.  Building the package runs the
      # unit tests; the VM tests (pytest -m vm) boot QEMU guests and need a
      # machine without the sandbox: run them with `scripts/test`.
      checks = forAllSystems (
        _system: pkgs: {
          inherit (pkgs) vmtui;
          # Evaluates the example and type checks/lints its test script
          # (the driver build does that), without booting it.
          todos-nixos-driver = (todosTest pkgs).driverInteractive;
        }
      );

      # lib.<system>.openInVmtui test     -> a program that opens the test in vmtui
      # lib.<system>.runHeadless test     -> the same, headless (exit status 0/1)
      # lib.<system>.mkApp test           -> a flake `apps` entry for openInVmtui
      # lib.<system>.runNixOSTest module  -> pkgs.testers.runNixOSTest, with vmtui as the driver
      # lib.<system>.withVmtuiDriver pkgs -> those pkgs, with vmtui as `nixos-test-driver`
      lib = forAllSystems (
        _system: pkgs:
        import ./nix/lib.nix {
          inherit pkgs;
          inherit (pkgs) vmtui;
          nixosTestDriverOverlay = self.overlays.nixosTestDriver;
        }
      );
    };
}
