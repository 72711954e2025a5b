"""Builders of NixOS test driver outputs, as Nix would leave them in the store.

No Nix runs here, so the tests lay out a fake store directory by hand: a
`nixos-test-driver-<name>` output with `test-script` and a `bin/nixos-test-driver`
wrapper in the exact shapes nixpkgs' `makeWrapper` has written over the years,
for each era of the driver contract.  `write_fake_nix` adds `nix-build` and
`nix` programs that "build" by printing such an output's path.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

BASH_2021 = "/nix/store/4nmqxajzaf60yjribkgvj5j54x9yvr1r-bash-4.4-p23/bin/bash"
BASH_2024 = "/nix/store/1jzhbwq5rjjaqa75z88ws2b424vh7m53-bash-5.2p37/bin/bash"

# How makeWrapper's output looked, oldest first:
# - "classic-eu": `#! bash -eu`, `declare -a extraFlagsArray=()`, `set +u`,
#   and an exec line with `@Q`-quoted argv0 and program;
# - "2021": `#! bash -e`, exec `-a "$0" "<program>" <flags> "${extraFlagsArray[@]}" "$@"`;
# - "2023": the same without extraFlagsArray, with an (empty) flagsAfter slot.
WRAPPER_STYLES = ("classic-eu", "2021", "2023")

ERAS = ("env-var", "env-var-2021", "nspawn", "json-config")


def bash_quote(value: str) -> str:
    """`${value@Q}`: what makeWrapper writes for `--set NAME value`."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        escaped = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\E", "\\": "\\\\", "'": "\\'"}
        body = "".join(
            escaped.get(c, f"\\{ord(c):03o}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in value
        )
        return f"$'{body}'"
    return "'" + value.replace("'", "'\\''") + "'"


def wrapper_text(
    *,
    exports: Sequence[tuple[str, str]],
    program: str,
    flags: Sequence[str],
    style: str = "2023",
    bash: str = BASH_2024,
) -> str:
    """The text `wrapProgram <prog> --set … --add-flags …` writes, in one style."""
    lines = []
    if style == "classic-eu":
        lines.append(f"#! {bash} -eu")
        lines.append("declare -a extraFlagsArray=()")
    else:
        lines.append(f"#! {bash} -e")
    lines += [f"export {name}={bash_quote(value)}" for name, value in exports]
    if style == "classic-eu":
        lines.append("set +u")
        parts = [
            "exec",
            "-a",
            bash_quote("$0"),
            bash_quote(program),
            *flags,
            '"${extraFlagsArray[@]}"',
            '"$@"',
        ]
        lines.append(" ".join(parts))
    elif style == "2021":
        # flagsBefore accumulates as "$flagsBefore $flags": note the double space.
        flags_before = "".join(" " + f for f in flags)
        lines.append(f'exec -a "$0" "{program}" {flags_before} "${{extraFlagsArray[@]}}" "$@"')
    elif style == "2023":
        flags_before = "".join(" " + f for f in flags)
        lines.append(f'exec -a "$0" "{program}" {flags_before} "$@" ')
    else:
        raise ValueError(f"unknown wrapper style {style!r}")
    return "\n".join(lines) + "\n"


class FakeStore:
    """A directory standing in for /nix/store: `<32-char hash>-<name>` entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, salt: str = "") -> Path:
        digest = hashlib.sha256(f"{name}\0{salt}".encode()).hexdigest()
        # Nix's base-32 alphabet has no e, o, u, t; keep to it.
        alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
        store_hash = "".join(alphabet[int(digest[i : i + 2], 16) % 32] for i in range(0, 64, 2))
        return self.root / f"{store_hash}-{name}"

    def write_start_stub(self, host: str, salt: str = "") -> Path:
        """A `<vm>/bin/run-<host>-vm` that is never booted (parsing tests only)."""
        script = self.path("nixos-vm", salt=host + salt) / "bin" / f"run-{host}-vm"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(f'#! {BASH_2024}\nexec qemu-system-x86_64 -name {host} "$@"\n')
        script.chmod(0o755)
        return script


def write_driver(
    store: FakeStore,
    *,
    era: str,
    name: str,
    vms: Mapping[str, Path],
    script: str,
    vlans: Sequence[int] = (1,),
    global_timeout: int = 3600,
    interactive: bool = True,
    containers: Mapping[str, Path] | None = None,
    ssh_backdoor: bool = False,
    style: str | None = None,
    salt: str = "",
    program: str = "nixos-test-driver",
) -> Path:
    """Write a built `driver`/`driverInteractive` output; returns its store path.

    `vms` maps node names to start scripts.  In the env-var eras only the
    scripts are passed (names come from their `run-<name>-vm` basenames).
    `program` is the wrapper's name in `bin/` (the derivation's `meta.mainProgram`).
    """
    containers = dict(containers or {})
    out = store.path(f"nixos-test-driver-{name}", salt=salt + era + script)
    (out / "bin").mkdir(parents=True, exist_ok=True)
    (out / "test-script").write_text(script)
    # The real hidden program is a symlink into the nixos-test-driver package.
    hidden = out / "bin" / f".{program}-wrapped"
    if not hidden.is_symlink():
        hidden.symlink_to(store.path("nixos-test-driver-1.1") / "bin" / "nixos-test-driver")
    extra = ["--interactive"] if interactive else []
    vlan_words = " ".join(str(v) for v in vlans)
    exports: list[tuple[str, str]] = []
    flags: list[str] = []
    if era == "env-var-2021":
        # Before globalTimeout existed.
        exports = [
            ("startScripts", " ".join(str(p) for p in vms.values())),
            ("testScript", str(out / "test-script")),
            ("vlans", vlan_words),
        ]
        flags = extra
        style = style or "2021"
    elif era == "env-var":
        exports = [
            ("startScripts", " ".join(str(p) for p in vms.values())),
            ("testScript", str(out / "test-script")),
            ("globalTimeout", str(global_timeout)),
            ("vlans", vlan_words),
        ]
        flags = extra + (["--dump-vsocks=2"] if ssh_backdoor else [])
    elif era == "nspawn":
        exports = [
            ("vmNames", " ".join(vms)),
            ("vmStartScripts", " ".join(str(p) for p in vms.values())),
            ("containerNames", " ".join(containers)),
            ("containerStartScripts", " ".join(str(p) for p in containers.values())),
            ("testScript", str(out / "test-script")),
            ("globalTimeout", str(global_timeout)),
            ("vlans", vlan_words),
        ]
        flags = extra
    elif era == "json-config":
        script_file = store.path("test-script", salt=script)
        script_file.write_text(script)
        config = {
            "vms": {n: {"name": n, "start_script": str(p)} for n, p in vms.items()},
            "containers": {n: {"name": n, "start_script": str(p)} for n, p in containers.items()},
            "vlans": list(vlans),
            "global_timeout": global_timeout,
            "enable_ssh_backdoor": ssh_backdoor,
            "test_script": str(script_file),
        }
        config_file = store.path("driverConfiguration.json", salt=json.dumps(config))
        # writers.writeJSON pretty-prints with sorted keys.
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        flags = ["--config", str(config_file), "--log-level", "info", *extra]
    else:
        raise ValueError(f"unknown era {era!r}")
    wrapper = out / "bin" / program
    wrapper.write_text(wrapper_text(exports=exports, program=str(hidden), flags=flags, style=style or "2023"))
    wrapper.chmod(0o755)
    return out


# -- fake `nix-build` / `nix` -------------------------------------------------

FAKE_NIX_SCRIPT = textwrap.dedent(
    '''\
    #!{python}
    """A stand-in for {program}: answers from {table}."""
    import json, os, sys, time
    table = json.load(open({table!r}))
    argv = sys.argv[1:]
    evaluating = {program!r} == "nix-instantiate" or "eval" in argv
    with open({log!r}, "a") as log:
        kind = "eval" if evaluating else "build"
        log.write(json.dumps({{"program": {program!r}, "argv": argv, "pid": os.getpid(), "kind": kind}}) + "\\n")
    key = None
    out_link = None
    if "--out-link" in argv:  # both programs: the GC root, made once the build succeeded
        at = argv.index("--out-link")
        out_link = argv[at + 1]
        argv = argv[:at] + argv[at + 2:]
    if {program!r} in ("nix-build", "nix-instantiate"):
        args = [a for a in argv if a not in ("--no-out-link", "-L", "--eval", "--json")]
        attr = args[args.index("-A") + 1] if "-A" in args else ""
        if "-E" in args:
            key = "expr:" + attr
        else:
            key = args[0] + "#" + attr
    else:
        verb = "eval" if evaluating else "build"
        after = argv[argv.index(verb) + 1 :] if verb in argv else []
        refs = [a for a in after if not a.startswith("-")]
        key = refs[0] if refs else ""
    entry = table.get(key)
    if entry is None:
        sys.stderr.write("fake nix: no answer for " + key + "\\n")
        sys.exit(1)
    for line in entry.get("stderr", []):
        sys.stderr.write(line + "\\n")
        sys.stderr.flush()
    if entry.get("hang"):
        time.sleep(3600)
    if "value" in entry:  # an evaluation: `--json` prints JSON, `--raw` the string itself
        value = entry["value"]
        sys.stdout.write(json.dumps(value) + "\\n" if "--json" in argv else value)
    if "out" in entry and out_link is not None and entry.get("status", 0) == 0:
        os.symlink(entry["out"], out_link)
    if "out" in entry and "--json" in argv:
        drv = entry["out"].rsplit("/", 1)[0] + "/fake.drv"
        sys.stdout.write(json.dumps([{{"drvPath": drv, "outputs": {{"out": entry["out"]}}}}]) + "\\n")
    elif "out" in entry:
        sys.stdout.write(entry["out"] + "\\n")
    sys.exit(entry.get("status", 0))
    '''
)


def write_fake_nix(bin_dir: Path, table: Mapping[str, Mapping[str, object]], log: Path) -> None:
    """Put `nix-build`, `nix-instantiate` and `nix` into `bin_dir`, answering from `table`.

    Keys: `<file>#<attr>` for `nix-build <file> -A <attr>` (and for
    `nix-instantiate --eval`, whose attr ends in `.meta.mainProgram`),
    `expr:<attr>` for `-E … -A <attr>`, and the installable for
    `nix build <ref>` / `nix eval <ref>`.  Values: `stderr` (lines, streamed),
    `out` (a built path), `value` (an evaluation's result), `status`, `hang`.
    A key without an answer fails, as an attribute Nix cannot find does.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    table_file = bin_dir / "fake-nix-table.json"
    table_file.write_text(json.dumps(table))
    for program in ("nix-build", "nix-instantiate", "nix"):
        path = bin_dir / program
        path.write_text(
            FAKE_NIX_SCRIPT.format(
                python=sys.executable, program=program, table=str(table_file), log=str(log)
            )
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def path_with(bin_dir: Path, *, keep_system: bool = True) -> str:
    """A PATH with `bin_dir` first (and, optionally, nothing of Nix after it)."""
    rest = os.environ.get("PATH", "/usr/bin:/bin") if keep_system else ""
    return f"{bin_dir}:{rest}" if rest else str(bin_dir)


# -- what Nix prints when things go wrong (Nix 2.2x wording) ------------------

DRV_HASH = "c3m5yqv0lg0xaw6zi2dgiyf8p3h7vd1k"

EVAL_ERROR = """\
error:
       … while evaluating the attribute 'driverInteractive'
         at /nix/store/2z3kd7h2d5l8bjmvsvbl0bni1wd9ygl6-source/nixos/lib/testing/run.nix:35:7:
           34|     passthru = {
           35|       driverInteractive = config.interactive.driver;
             |       ^
           36|     };

       … while evaluating the option `nodes.server.environment.systemPackages':

       (stack trace truncated; use '--show-trace' to show the full, detailed trace)

       error: undefined variable 'pkgs'
       at /home/alice/todos/todos.nix:9:36:
            8|   nodes.server = { ... }: {
            9|     environment.systemPackages = [ pkgs.jq ];
             |                                    ^
           10|   };
"""

BUILD_FAILURE = f"""\
these 2 derivations will be built:
  /nix/store/a1x8dv2n0ds5l3khmj7rw4wq0hfp6z9c-test-script.drv
  /nix/store/{DRV_HASH}-nixos-test-driver-todos.drv
building '/nix/store/a1x8dv2n0ds5l3khmj7rw4wq0hfp6z9c-test-script.drv'...
building '/nix/store/{DRV_HASH}-nixos-test-driver-todos.drv'...
Running type check (enable/disable: config.skipTypeCheck)
See https://nixos.org/manual/nixos/stable/#test-opt-skipTypeCheck
testScriptWithTypes:52: error: Name "clinet" is not defined  [name-defined]
        clinet.succeed("curl --fail http://server:3000/todos.json")
        ^~~~~~
Found 1 error in 1 file (checked 1 source file)
error: builder for '/nix/store/{DRV_HASH}-nixos-test-driver-todos.drv' failed with exit code 1;
       last 6 log lines:
       > Running type check (enable/disable: config.skipTypeCheck)
       > See https://nixos.org/manual/nixos/stable/#test-opt-skipTypeCheck
       > testScriptWithTypes:52: error: Name "clinet" is not defined  [name-defined]
       >         clinet.succeed("curl --fail http://server:3000/todos.json")
       >         ^~~~~~
       > Found 1 error in 1 file (checked 1 source file)
       For full logs, run 'nix log /nix/store/{DRV_HASH}-nixos-test-driver-todos.drv'.
"""

NOT_A_TEST = "error: attribute 'driverInteractive' in selection path 'driverInteractive' not found\n"

NOT_A_TEST_FLAKE = (
    "error: flake 'git+file:///home/alice/todos' does not provide attribute"
    " 'packages.x86_64-linux.hello.driverInteractive', 'legacyPackages.x86_64-linux.hello.driverInteractive'"
    " or 'hello.driverInteractive'\n"
)

NEEDS_ARGUMENTS = """\
error:
       … while evaluating the attribute 'driverInteractive'

       error: cannot evaluate a function that has an argument without a value ('pkgs')
       Nix attempted to evaluate a function as a top level expression; in
       this case it must have its arguments supplied either by default
       values, or passed explicitly with '--arg' or '--argstr'. See
       https://nixos.org/manual/nix/stable/language/constructs.html#functions.
       at /home/alice/todos/module.nix:1:3:
            1| { pkgs, ... }:
             |   ^
            2| {
"""

NO_NIXPKGS = """\
error:
       … while calling the 'findFile' builtin
         at «string»:1:9:
            1| (import <nixpkgs> { }).testers.runNixOSTest (import (/. + "/home/alice/todos/module.nix"))
             |         ^

       error: file 'nixpkgs' was not found in the Nix search path (add it using $NIX_PATH or -I)
"""


def answer(
    out: Path | None = None, *, stderr: str = "", status: int | None = None, hang: bool = False
) -> dict[str, object]:
    """One entry of a fake Nix's table: a successful build of `out`, or a failure."""
    entry: dict[str, object] = {"stderr": stderr.splitlines()}
    if out is not None:
        entry["out"] = str(out)
    entry["status"] = status if status is not None else (0 if out is not None else 1)
    if hang:
        entry["hang"] = True
    return entry


def nix_calls(log: Path, kind: str | None = "build") -> list[dict[str, object]]:
    """The calls a fake Nix received: `{program, argv, pid, kind}` each.

    Builds only by default; `kind="eval"` gives the evaluations
    (`meta.mainProgram`), `kind=None` every call in order.
    """
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [call for call in calls if kind is None or call["kind"] == kind]


def evaluation(value: str) -> dict[str, object]:
    """A fake Nix's answer to an evaluation: `value` (e.g. a `meta.mainProgram`)."""
    return {"value": value, "status": 0}


# The same failures as Nix 2.8 (Debian 12's nix-bin) prints them: captured
# from real runs, with the store and home paths renamed.  Older Nix streams
# the build log and quotes none of it in the error.

EVAL_ERROR_NIX28 = """\
error: attribute 'cpus' missing

       at /home/alice/todos/todos.nix:5:23:

            4| in {
            5|   driverInteractive = nodes.server.cpus + 1;
             |                       ^
            6| }
(use '--show-trace' to show detailed location information)
"""

BUILD_FAILURE_NIX28 = f"""\
this derivation will be built:
  /nix/store/{DRV_HASH}-nixos-test-driver-todos.drv
building '/nix/store/{DRV_HASH}-nixos-test-driver-todos.drv'...
Running type check
testScriptWithTypes:52: error: Name "clinet" is not defined  [name-defined]
        clinet.succeed(1)
error: builder for '/nix/store/{DRV_HASH}-nixos-test-driver-todos.drv' failed with exit code 1
"""

# `nix build -L` prefixes each log line with the derivation's name.
BUILD_FAILURE_FLAKE_NIX28 = f"""\
building '/nix/store/{DRV_HASH}-nixos-test-driver-todos.drv'...
nixos-test-driver-todos> Running type check
nixos-test-driver-todos> testScriptWithTypes:52: error: Name "clinet" is not defined  [name-defined]
nixos-test-driver-todos>         clinet.succeed(1)
error: builder for '/nix/store/{DRV_HASH}-nixos-test-driver-todos.drv' failed with exit code 1
"""

NOT_A_TEST_FLAKE_NIX28 = (
    "error: flake 'path:/home/alice/todos' does not provide attribute"
    " 'packages.x86_64-linux.hello.driverInteractive', 'legacyPackages.x86_64-linux.hello.driverInteractive'"
    " or 'hello.driverInteractive'\n"
)


def needs_arguments_nix28(file: Path) -> str:
    return f"error: anonymous function at {file}:1:1 called without required argument 'pkgs'\n"


NO_NIXPKGS_NIX28 = """\
error: file 'nixpkgs' was not found in the Nix search path (add it using $NIX_PATH or -I)

       at «string»:1:9:

            1| (import <nixpkgs> { }).testers.runNixOSTest (import (/. + "/home/alice/todos/module.nix"))
             |         ^
(use '--show-trace' to show detailed location information)
"""


# -- a real Nix: Debian's nix-bin, unpacked, with a private store ------------

# nix-bin's libraries that a Debian 12 system without Nix lacks.
DEBIAN_NIX_PACKAGES = (
    "nix-bin",
    "libboost-context1.74.0",
    "libcpuid16",
    "libgc1",
    "libsodium23",
    "libarchive13",
)


def debian_nix(work: Path) -> dict[str, str] | None:
    """An environment in which `nix-build`/`nix` are Debian's Nix (2.8), or None.

    The packages are fetched with `apt-get download` into vmtui's cache and
    unpacked under `work`, never installed; the store, state and config live
    under `work` too, so nothing outside it changes.  None when the packages
    cannot be fetched (no apt lists, no network).
    """
    from driver.guest import debs

    try:
        files = debs.resolve_deb_files(list(DEBIAN_NIX_PACKAGES), lambda _m: None)
        downloaded = debs.download(files, debs.cache_dir() / "debs", lambda _m: None)
    except debs.PackageError:
        return None
    root = work / "nix-bin"
    for deb in downloaded.values():
        debs.unpack(deb, root)
    conf = work / "etc"
    conf.mkdir(parents=True, exist_ok=True)
    # Root needs no build users; no sandbox (it would need the store at
    # /nix/store), no binary cache (no network), and the build hook from the
    # unpacked tree rather than /usr/libexec.
    (conf / "nix.conf").write_text(
        "build-users-group =\nsandbox = false\nsubstituters =\n"
        f"build-hook = {root}/usr/libexec/nix/build-remote\n"
    )
    lib_dirs = sorted({str(p.parent) for p in root.rglob("*.so*")})
    return {
        "PATH": f"{root}/usr/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LD_LIBRARY_PATH": ":".join(lib_dirs),
        "NIX_STORE_DIR": str(work / "store"),
        "NIX_STATE_DIR": str(work / "state"),
        "NIX_LOG_DIR": str(work / "log"),
        "NIX_CONF_DIR": str(conf),
        "NIX_PATH": "",
    }


def nix_string(text: str) -> str:
    """A Nix double-quoted string literal holding `text`."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("${", "\\${")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def write_real_nix_test(
    directory: Path,
    *,
    era: str,
    start_scripts: Mapping[str, str],
    script: str,
    vlans: Sequence[int] = (1,),
    global_timeout: int = 3600,
    build_fails: bool = False,
    program: str = "nixos-test-driver",
) -> Path:
    """A `.nix` file whose `driverInteractive` real Nix builds into a driver output.

    Each node's start script (`start_scripts`: name -> script text) becomes
    its own `nixos-vm` derivation with `bin/run-<name>-vm`; the driver output
    holds `test-script` and a makeWrapper-style `bin/nixos-test-driver` of the
    given era, referring to those store paths exactly as nixpkgs' would.
    Another `program` name puts the wrapper there instead, names it in the
    derivation's `meta.mainProgram`, and leaves a `bin/nixos-test-driver` that
    is not a driver (so only the meta tells which program to read).
    """
    names = sorted(start_scripts)
    vm_exe = {n: f"@VM_{n}@/bin/run-{n}-vm" for n in names}
    hidden = f"@OUT@/bin/.{program}-wrapped"
    if era == "env-var":
        exports = [
            ("startScripts", " ".join(vm_exe[n] for n in names)),
            ("testScript", "@OUT@/test-script"),
            ("globalTimeout", str(global_timeout)),
            ("vlans", " ".join(str(v) for v in vlans)),
        ]
        wrapper = wrapper_text(exports=exports, program=hidden, flags=["--interactive"])
        config_text = ""
    elif era == "json-config":
        config = {
            "containers": {},
            "enable_ssh_backdoor": False,
            "global_timeout": global_timeout,
            "test_script": "@SCRIPT@",
            "vlans": list(vlans),
            "vms": {n: {"name": n, "start_script": vm_exe[n]} for n in names},
        }
        config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        wrapper = wrapper_text(
            exports=[], program=hidden, flags=["--config", "@CONFIG@", "--log-level", "info", "--interactive"]
        )
    else:
        raise ValueError(f"unsupported era {era!r}")

    vm_defs = "\n".join(f"  vm_{n} = mkVm {nix_string(n)} {nix_string(start_scripts[n])};" for n in names)
    subst_from = " ".join(nix_string(f"@VM_{n}@") for n in names)
    subst_to = " ".join(f'"${{vm_{n}}}"' for n in names)
    fail = (
        "echo 'testScriptWithTypes:1: error: Name \"clinet\" is not defined'; exit 1" if build_fails else ""
    )
    decoy = ""
    meta = ""
    if program != "nixos-test-driver":
        decoy = (
            "printf '#!/bin/sh\\necho a helper\\n' > $out/bin/nixos-test-driver;"
            " /bin/chmod +x $out/bin/nixos-test-driver"
        )
        meta = f" // {{ meta.mainProgram = {nix_string(program)}; }}"
    text = f"""\
# Written by tests/nixfixtures.py: a stand-in for a NixOS test's driver, for real Nix.
{{ }}:
let
  sh = args: name: env: derivation ({{ inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" args ]; }} // env);
  mkVm = host: text: sh "/bin/mkdir -p $out/bin && printf '%s' \\"$text\\" > $out/bin/run-${{host}}-vm && /bin/chmod +x $out/bin/run-${{host}}-vm" "nixos-vm" {{ inherit text; }};
{vm_defs}
  subst = builtins.replaceStrings [ {subst_from} ] [ {subst_to} ];
  testScript = sh "printf '%s' \\"$text\\" > $out" "test-script" {{ text = {nix_string(script)}; }};
  config = sh "printf '%s' \\"$text\\" > $out" "driverConfiguration.json" {{
    text = builtins.replaceStrings [ "@SCRIPT@" ] [ "${{testScript}}" ] (subst {nix_string(config_text)});
  }};
in
{{
  driverInteractive = sh ''
    echo "building the driver of todos" >&2
    {fail}
    /bin/mkdir -p $out/bin
    /bin/cp ${{testScript}} $out/test-script
    /bin/ln -s /nix/store/not-here/bin/nixos-test-driver $out/bin/.{program}-wrapped
    printf '%s' "$wrapper" > $out/bin/{program}
    /bin/chmod +x $out/bin/{program}
    {decoy}
  '' "nixos-test-driver-todos" {{
    wrapper = builtins.replaceStrings [ "@OUT@" "@CONFIG@" ] [ (builtins.placeholder "out") "${{config}}" ] (subst {nix_string(wrapper)});
  }}{meta};
}}
"""
    path = directory / "todos.nix"
    path.write_text(text)
    return path


class FakeNixProject:
    """A `.nix` test that a fake Nix "builds", for watch-mode tests.

    A test sets what the next build gives (`answer_with`, an `answer(...)`
    entry), then saves the file as an editor does (`save`): the app sees the
    save, runs the fake `nix-build`, and gets that answer.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = FakeStore(root / "store")
        self.bin_dir = root / "bin"
        self.calls = root / "calls.jsonl"
        self.test_file = (root / "test.nix").resolve()
        self.revision = 0
        self._write_source()

    @property
    def key(self) -> str:
        return f"{self.test_file}#driverInteractive"

    @property
    def path(self) -> str:
        """PATH with the fake Nix first."""
        return path_with(self.bin_dir)

    def answer_with(self, entry: Mapping[str, object]) -> None:
        write_fake_nix(self.bin_dir, {self.key: entry}, self.calls)

    def save(self) -> None:
        """Write a new revision of the file through a rename, as most editors do."""
        self.revision += 1
        self._write_source()

    def _write_source(self) -> None:
        temp = self.test_file.with_name(f".{self.test_file.name}.tmp")
        temp.write_text(
            f"# revision {self.revision}\n"
            "{ pkgs ? import <nixpkgs> { } }: pkgs.testers.runNixOSTest (import ./module.nix)\n"
        )
        os.replace(temp, self.test_file)
