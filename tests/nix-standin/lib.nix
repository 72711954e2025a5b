# A stand-in for the part of nixpkgs' `lib` that vmtui's Nix files use, written
# for tests/integration/test_nix_files.py: same names, same meaning, no more.
let
  composeExtensions =
    f: g: final: prev:
    let
      fApplied = f final prev;
    in
    fApplied // g final (prev // fApplied);
in
rec {
  fix =
    f:
    let
      x = f x;
    in
    x;
  extends =
    overlay: base: final:
    let
      prev = base final;
    in
    prev // overlay final prev;
  inherit composeExtensions;
  composeManyExtensions = builtins.foldl' composeExtensions (_: _: { });
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  filterAttrs =
    pred: set:
    builtins.listToAttrs (
      builtins.concatMap (
        name: if pred name set.${name} then [ { inherit name; value = set.${name}; } ] else [ ]
      ) (builtins.attrNames set)
    );
  optionalAttrs = cond: set: if cond then set else { };
  elem = builtins.elem;
  removePrefix =
    prefix: s:
    let
      n = builtins.stringLength prefix;
    in
    if builtins.substring 0 n s == prefix then builtins.substring n (-1) s else s;
  makeBinPath = paths: builtins.concatStringsSep ":" (map (p: "${p}/bin") paths);
  getExe = drv: "${drv}/bin/${drv.meta.mainProgram}";
  importTOML = path: builtins.fromTOML (builtins.readFile path);
  # Never copied to the store here: the tests only evaluate.
  fileset = {
    unions = files: files;
    toSource = { root, fileset }: { inherit root fileset; };
  };
  licenses.mit = "mit";
  platforms.linux = [
    "x86_64-linux"
    "aarch64-linux"
  ];
}
