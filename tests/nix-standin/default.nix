# A stand-in for `import nixpkgs { system; overlays; }`: the packages and
# builders vmtui's Nix files use, as plain attribute sets that record their
# arguments, so a test can evaluate the flake and look at what it made.
# `withTestDriverPackage = false` is a nixpkgs from before `pkgs.nixos-test-driver`.
{
  system ? "x86_64-linux",
  overlays ? [ ],
  withTestDriverPackage ? true,
}:
let
  lib = import ./lib.nix;

  fakeDrv =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
    }
    // extra;

  tool = name: fakeDrv name { meta.mainProgram = name; };

  base = final: {
    inherit lib system;
    extend =
      overlay:
      import ./default.nix {
        inherit system withTestDriverPackage;
        overlays = overlays ++ [ overlay ];
      };
    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
        call =
          given:
          let
            result = f given;
          in
          result // { override = more: call (given // more); };
      in
      call (builtins.intersectAttrs (builtins.functionArgs f) final // args);

    python3Packages = {
      setuptools = tool "setuptools";
      pytest = tool "pytest";
      pytest-asyncio = tool "pytest-asyncio";
      pytest-timeout = tool "pytest-timeout";
      buildPythonApplication =
        attrs:
        fakeDrv "${attrs.pname}-${attrs.version}" {
          inherit (attrs) pname version meta;
          buildArgs = attrs;
          passthru = attrs.passthru or { };
        }
        // (attrs.passthru or { });
    };
    python3.withPackages = f: fakeDrv "python3-env" { };
    symlinkJoin =
      args:
      fakeDrv args.name {
        joinArgs = args;
        meta = args.meta or { };
      }
      // (args.passthru or { });
    makeWrapper = tool "make-wrapper";
    writeShellApplication =
      args:
      fakeDrv args.name {
        inherit (args) text;
        meta.mainProgram = args.name;
      };
    mkShell = args: fakeDrv "shell" { shellArgs = args; };
    qemu_test = tool "qemu-test";
    qemu = tool "qemu";
    vde2 = tool "vde2";
    bash = tool "bash";
    coreutils = tool "coreutils";
    util-linux = tool "util-linux";
    e2fsprogs = tool "e2fsprogs";
    zstd = tool "zstd";
    # What nixpkgs' test framework does with the driver package, reduced to
    # what can be checked without building: it calls `.override` with the
    # four arguments of `nixos/lib/testing/driver.nix`.
    testers.runNixOSTest = module: {
      inherit module;
      testDriver = final.nixos-test-driver.override {
        qemu_pkg = final.qemu_test;
        enableOCR = false;
        extraPythonPackages = _: [ ];
        enableNspawn = false;
      };
    };
  }
  // lib.optionalAttrs withTestDriverPackage {
    nixos-test-driver = final.callPackage (
      {
        qemu_test,
        qemu_pkg ? qemu_test,
        enableOCR ? false,
        extraPythonPackages ? (_: [ ]),
        enableNspawn ? false,
      }@args:
      fakeDrv "nixos-test-driver-1.1" {
        # Only the arguments the caller gave (callPackage's own included).
        overriddenWith = builtins.attrNames (builtins.removeAttrs args [ "qemu_test" ]);
        meta.mainProgram = "nixos-test-driver";
      }
    ) { };
  };
in
lib.fix (builtins.foldl' (acc: overlay: lib.extends overlay acc) base overlays)
