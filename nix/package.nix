# vmtui as a Nix package: the Python application from pyproject.toml, wrapped
# so that every program it runs on the host is on its PATH.
{
  lib,
  python3Packages,
  qemu_test,
  # `qemu_test` is what NixOS tests use (no GUI, smaller); pass
  # `qemuPackage = pkgs.qemu;` for the full QEMU.
  qemuPackage ? qemu_test,
  vde2,
  bash,
  coreutils,
  util-linux,
  e2fsprogs,
  zstd,
}:
let
  pyproject = lib.importTOML ../pyproject.toml;

  # Programs vmtui itself calls.  NixOS start scripts (`run-<name>-vm`) carry
  # their own QEMU; this one serves the built-in guests and `qemu-img`.
  runtimeTools = [
    qemuPackage # qemu-system-*, qemu-img
    vde2 # vde_switch: one hub per VLAN
    bash # start scripts and the backdoor protocol's host side
    coreutils
    util-linux # umount, used when assembling the systemd guest image
    e2fsprogs # mkfs.ext4 for the systemd guest image
    zstd
  ];

  # Same list as `dependencies` in pyproject.toml.
  pythonDependencies =
    ps: with ps; [
      textual
      pexpect
      qemu-qmp
      pygments
      watchfiles
      pyte
    ];
in
python3Packages.buildPythonApplication {
  pname = "vmtui";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build and the unit tests read, so editing docs or
  # screenshots does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../driver
      ../widgets
      ../vmtui
      ../tests
    ];
  };

  build-system = [ python3Packages.setuptools ];
  dependencies = pythonDependencies python3Packages;

  # pyproject.toml pins textual exactly, because the SVG snapshot tests
  # compare against screenshots made with that version.  nixpkgs carries its
  # own textual; the app itself runs on it, so drop the pin here (the
  # snapshot tests are not part of this build).
  pythonRelaxDeps = [ "textual" ];

  makeWrapperArgs = [
    "--prefix"
    "PATH"
    ":"
    (lib.makeBinPath runtimeTools)
  ];

  # The unit tests only: tests marked `vm`/`slow` boot QEMU guests, which the
  # build sandbox cannot do (no /dev/kvm, no network for the guest builders).
  nativeCheckInputs =
    (with python3Packages; [
      pytest
      pytest-asyncio
      pytest-timeout
    ])
    ++ runtimeTools;
  checkPhase = ''
    runHook preCheck
    export HOME="$(mktemp -d)"
    pytest -q -p no:cacheprovider -m "not vm and not slow" tests/unit
    runHook postCheck
  '';

  pythonImportsCheck = [
    "driver"
    "widgets"
    "vmtui"
  ];

  passthru = {
    inherit runtimeTools pythonDependencies;
  };

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "vmtui";
    platforms = lib.platforms.linux;
  };
}
