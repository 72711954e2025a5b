"""Read the configuration of a NixOS test driver, in every era of its contract.

A built `driver` / `driverInteractive` is a store directory holding
`test-script` and `bin/nixos-test-driver` (or, in newer nixpkgs,
`bin/run-nixos-test`: the derivation's `meta.mainProgram`), a bash wrapper
written by nixpkgs' `makeWrapper`.  Over the years the wrapper has handed the nodes, VLANs, test
script and timeout to the real driver in three ways:

- env-var era: `export startScripts=… vlans=… testScript=… globalTimeout=…`;
- nspawn era: `vmNames` / `vmStartScripts` (+ `containerNames` /
  `containerStartScripts`) instead of `startScripts`;
- JSON era: no exports; `--config <store>/…-driverConfiguration.json` on the
  exec line.

The same contract applies when vmtui *is* the driver program (the wrapper
execs vmtui with the flags and environment above), so both paths go through
one argument parser that mirrors the real driver's: `parse_driver_args`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from driver.config import NodeConfig, TestConfig
from driver.errors import ConfigError

# The names of a built driver's program (its `meta.mainProgram`), preferred first.
INTERACTIVE_PROGRAM_NAMES = ("nixos-test-driver", "run-nixos-test")

# The program names a NixOS driver wrapper execs; vmtui installed under one of
# these names acts as the driver.
DRIVER_PROGRAM_NAMES = frozenset(
    name for program in INTERACTIVE_PROGRAM_NAMES for name in (program, f".{program}-wrapped")
)

# The env-var era names a node after its start script, `run-<hostName>-vm`.
_START_SCRIPT_NAME = re.compile(r"run-(.+)-vm$")
# `/nix/store/<32-char hash>-<name>`.
_STORE_NAME = re.compile(r"^[0-9a-z]{32}-(.+)$")
_LOG_LEVELS = ("debug", "info", "warning", "error")

ERA_ENV = "env-var"
ERA_NSPAWN = "nspawn"
ERA_JSON = "json-config"


@dataclass
class DriverInvocation:
    """Everything a nixos-test-driver command line asks for."""

    config: TestConfig
    era: str
    keep_state: bool = False
    interactive: bool = False
    output_dir: Path | None = None
    junit_xml: Path | None = None
    log_level: str | None = None
    # `--dump-vsocks` / `enable_ssh_backdoor`: the nodes carry an SSH backdoor
    # that vmtui does not connect to (its shell panes use their own channel).
    ssh_backdoor: bool = False
    debug_hook_attach: str | None = None
    extra_notes: list[str] = field(default_factory=list)


def is_driver_program_name(argv0: str) -> bool:
    """True when vmtui was started under a nixos-test-driver program name."""
    return os.path.basename(argv0) in DRIVER_PROGRAM_NAMES


def config_from_driver_args(argv: Sequence[str], environ: Mapping[str, str]) -> TestConfig | None:
    """The drop-in contract: vmtui started as `nixos-test-driver ARGS`.

    `argv` excludes the program name.  Returns None when neither the
    arguments nor the environment describe a test (so the caller can fall
    back to its own CLI); raises ConfigError on a malformed description.
    """
    invocation = parse_driver_args(argv, environ)
    return invocation.config if invocation is not None else None


def parse_driver_args(
    argv: Sequence[str], environ: Mapping[str, str], *, check_paths: bool = True
) -> DriverInvocation | None:
    """Parse a nixos-test-driver command line of any era, with env defaults.

    Returns None when nothing describes a test.  With `check_paths`, the test
    script and every start script must exist.
    """
    invocation = _parse_driver_args(argv, environ)
    if invocation is not None and check_paths:
        _check_paths_exist(invocation.config, origin="nixos-test-driver")
    return invocation


def _parse_driver_args(argv: Sequence[str], environ: Mapping[str, str]) -> DriverInvocation | None:
    args = _parse_flags(argv)
    if args.config is not None:
        return _from_json_config(args, Path(args.config))
    env_keys = (
        "startScripts",
        "vmNames",
        "vmStartScripts",
        "containerNames",
        "containerStartScripts",
        "testScript",
    )
    from_flags = any(
        v is not None
        for v in (
            args.start_scripts,
            args.vm_names,
            args.vm_start_scripts,
            args.container_names,
            args.container_start_scripts,
            args.testscript,
        )
    )
    if not from_flags and not any(k in environ for k in env_keys):
        return None
    return _from_flags_and_env(args, environ)


def load_driver_result(path: str | Path) -> TestConfig:
    """A built `driver`/`driverInteractive` (a result dir or its wrapper) -> TestConfig."""
    return read_driver_result(path).config


def read_driver_result(path: str | Path, *, main_program: str | None = None) -> DriverInvocation:
    """Like `load_driver_result`, keeping the flags the wrapper passes.

    `main_program` is the driver's `meta.mainProgram` when Nix told it (a
    directory's `bin/<main_program>` is then the wrapper); otherwise the
    program is found by scanning `bin/` (`find_driver_program`).
    """
    wrapper, drv_dir = _locate_wrapper(Path(path), main_program)
    text = _read_text(wrapper)
    exports, flags = parse_wrapper_text(text, origin=str(wrapper))
    try:
        invocation = parse_driver_args(flags, exports, check_paths=False)
    except ConfigError as exc:
        raise ConfigError(f"{wrapper}: {exc}") from None
    if invocation is None:
        raise ConfigError(
            f"{wrapper}: the wrapper passes no start scripts, test script or --config;"
            " it does not look like a NixOS test driver"
        )
    config = invocation.config
    if drv_dir is not None:
        # `<drv>/test-script` exists in every era; prefer it when the path the
        # wrapper names is gone (e.g. a wrapper copied from another machine).
        fallback = drv_dir / "test-script"
        if not config.script_path.is_file() and fallback.is_file():
            config.script_path = fallback
        config.name = _test_name(drv_dir) or config.name
        config.source_path = drv_dir
    _check_paths_exist(config, origin=str(wrapper))
    config.notes.insert(0, f"NixOS driver wrapper ({invocation.era} era): {wrapper}")
    if invocation.interactive:
        config.notes.append("built as driverInteractive (the wrapper passes --interactive)")
    return invocation


# -- the wrapper script -------------------------------------------------------


def parse_wrapper_text(text: str, *, origin: str = "wrapper") -> tuple[dict[str, str], list[str]]:
    """A makeWrapper shell script -> (its exported variables, the exec line's flags).

    Handles every shape makeWrapper has emitted: `#! bash -e` or `-eu`
    shebangs, `declare -a extraFlagsArray=()`, `set +u`, `@Q`-quoted values
    (`'…'` with `'\\''`, `$'…'`), `--set-default` exports, and an exec line
    `exec -a "$0" "<hidden program>" <flags> "${extraFlagsArray[@]}" "$@"`
    (quoting of the program and the placeholders varies by version).
    """
    exports: dict[str, str] = {}
    exec_line: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("export "):
            parsed = _parse_export(stripped, origin=f"{origin}:{lineno}")
            if parsed is not None:
                exports[parsed[0]] = parsed[1]
        elif stripped.startswith("exec "):
            exec_line = stripped
    if exec_line is None:
        raise ConfigError(f"{origin}: no exec line; not a makeWrapper shell script")
    return exports, _exec_flags(exec_line, origin=origin)


_EXPORT = re.compile(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_SET_DEFAULT = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)-(.*)\}$")


def _parse_export(line: str, *, origin: str) -> tuple[str, str] | None:
    """`export NAME=<one literal word>` -> (NAME, value); None for other shapes.

    Exports that compute their value (PATH prefixes and the like) are not
    part of the driver contract and are skipped.
    """
    match = _EXPORT.match(line)
    if match is None:
        return None
    name, raw = match.groups()
    if raw == "":
        return name, ""
    default = _SET_DEFAULT.match(raw)
    if default is not None and default.group(1) == name:
        raw = default.group(2)
    words = _split_words(raw, origin=origin)
    if len(words) != 1 or words[0].expands:
        return None
    return name, words[0].text


_PLACEHOLDERS = ('"$@"', '"${extraFlagsArray[@]}"', "$@", "${extraFlagsArray[@]}")


def _exec_flags(line: str, *, origin: str) -> list[str]:
    words = _split_words(line, origin=origin)
    rest = words[1:]
    if len(rest) >= 2 and rest[0].text == "-a":
        rest = rest[2:]  # the argv0 the wrapped program sees
    if not rest:
        raise ConfigError(f"{origin}: the exec line names no program")
    flags: list[str] = []
    for word in rest[1:]:
        if word.source in _PLACEHOLDERS:
            continue
        if word.expands:
            raise ConfigError(
                f"{origin}: the exec line uses a shell expansion vmtui cannot evaluate: {word.source}"
            )
        flags.append(word.text)
    return flags


@dataclass(frozen=True)
class _Word:
    text: str  # the word after quote removal (expansions kept literally)
    source: str  # the word as written
    expands: bool  # it contains an unquoted or double-quoted `$` expansion


_ANSI_C_ESCAPES = {
    "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n",
    "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?",
}  # fmt: skip


def _split_words(line: str, *, origin: str) -> list[_Word]:
    """Split one line of bash into words, the way bash's quote removal does.

    Only what makeWrapper writes is needed: single quotes, `$'…'`, double
    quotes, backslashes, and `$` expansions (recorded, never evaluated).
    """
    words: list[_Word] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n or line[i] == "#":
            break
        start, text, expands = i, [], False
        while i < n and line[i] not in " \t":
            c = line[i]
            if c == "'":
                end = line.find("'", i + 1)
                if end < 0:
                    raise ConfigError(f"{origin}: unterminated single quote")
                text.append(line[i + 1 : end])
                i = end + 1
            elif c == "$" and line.startswith("$'", i):
                i = _ansi_c_quoted(line, i + 2, text, origin=origin)
            elif c == '"':
                i, quoted_expands = _double_quoted(line, i + 1, text, origin=origin)
                expands = expands or quoted_expands
            elif c == "\\":
                if i + 1 < n:
                    text.append(line[i + 1])
                i += 2
            else:
                expands = expands or c == "$"
                text.append(c)
                i += 1
        words.append(_Word("".join(text), line[start:i], expands))
    return words


def _double_quoted(line: str, i: int, out: list[str], *, origin: str) -> tuple[int, bool]:
    expands = False
    while i < len(line):
        c = line[i]
        if c == '"':
            return i + 1, expands
        if c == "\\" and i + 1 < len(line) and line[i + 1] in '$`"\\':
            out.append(line[i + 1])
            i += 2
            continue
        expands = expands or c in "$`"
        out.append(c)
        i += 1
    raise ConfigError(f"{origin}: unterminated double quote")


def _ansi_c_quoted(line: str, i: int, out: list[str], *, origin: str) -> int:
    while i < len(line):
        c = line[i]
        if c == "'":
            return i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        esc = line[i + 1 : i + 2]
        if esc in _ANSI_C_ESCAPES:
            out.append(_ANSI_C_ESCAPES[esc])
            i += 2
        elif esc in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = re.match(rf"[0-9a-fA-F]{{1,{width}}}", line[i + 2 :])
            if digits is None:
                out.append("\\" + esc)
                i += 2
            else:
                out.append(chr(int(digits.group(0), 16)))
                i += 2 + len(digits.group(0))
        elif esc.isdigit() and esc in "01234567":
            digits = re.match(r"[0-7]{1,3}", line[i + 1 :])
            assert digits is not None
            out.append(chr(int(digits.group(0), 8) & 0xFF))
            i += 1 + len(digits.group(0))
        elif esc == "c" and i + 2 < len(line):
            out.append(chr(ord(line[i + 2]) & 0x1F))
            i += 3
        else:
            out.append("\\" + esc)
            i += 2
    raise ConfigError(f"{origin}: unterminated $'…' quote")


# -- the driver's command line ------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad input as a ConfigError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"nixos-test-driver arguments: {message}")


def _parse_flags(argv: Sequence[str]) -> argparse.Namespace:
    # The union of the flags of every era: a later era only removed flags, so
    # accepting all of them never misreads a command line.  Prefix matching
    # stays on, as in the real driver (`--debug-hook` -> `--debug-hook-attach`).
    p = _ArgumentParser(prog="nixos-test-driver", add_help=False)
    p.add_argument("-K", "--keep-vm-state", "--keep-machine-state", dest="keep_state", action="store_true")
    p.add_argument("-I", "--interactive", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--start-scripts", nargs="*")
    p.add_argument("--vm-names", nargs="*")
    p.add_argument("--vm-start-scripts", nargs="*")
    p.add_argument("--container-names", nargs="*")
    p.add_argument("--container-start-scripts", nargs="*")
    p.add_argument("--vlans", nargs="*")
    p.add_argument("--global-timeout")
    p.add_argument("-c", "--config")
    p.add_argument("-o", "--output_directory", "--output-directory", dest="output_directory")
    p.add_argument("--junit-xml")
    p.add_argument("--log-level")
    p.add_argument("--debug-hook-attach")
    p.add_argument("--dump-vsocks")
    p.add_argument("testscript", nargs="?")
    return p.parse_args(list(argv))


def _env_list(value: list[str] | None, environ: Mapping[str, str], key: str) -> list[str] | None:
    """A list flag, else its env default split on whitespace (as EnvDefault does)."""
    if value is not None:
        return value
    if key in environ:
        return environ[key].split()
    return None


def _from_flags_and_env(args: argparse.Namespace, environ: Mapping[str, str]) -> DriverInvocation:
    start_scripts = _env_list(args.start_scripts, environ, "startScripts")
    vm_names = _env_list(args.vm_names, environ, "vmNames")
    vm_scripts = _env_list(args.vm_start_scripts, environ, "vmStartScripts")
    container_names = _env_list(args.container_names, environ, "containerNames")
    container_scripts = _env_list(args.container_start_scripts, environ, "containerStartScripts")
    era = (
        ERA_NSPAWN
        if any(x is not None for x in (vm_names, vm_scripts, container_names, container_scripts))
        else ERA_ENV
    )

    _reject_containers(container_names or [], container_scripts or [])
    if vm_names is not None or vm_scripts is not None:
        nodes = _named_nodes(vm_names, vm_scripts or [])
    else:
        nodes = [_node_from_script(s) for s in start_scripts or []]
    _check_unique(nodes)

    script = args.testscript if args.testscript is not None else environ.get("testScript")
    if not script:
        raise ConfigError("no test script: pass it as the last argument or set testScript")
    vlans = _vlans(_env_list(args.vlans, environ, "vlans") or [])
    timeout_text = args.global_timeout if args.global_timeout is not None else environ.get("globalTimeout")
    timeout = _seconds(timeout_text, "globalTimeout") if timeout_text not in (None, "") else None
    config = TestConfig(nodes=nodes, vlans=vlans, script_path=_absolute(script), global_timeout=timeout)
    log_level = args.log_level if args.log_level is not None else environ.get("logLevel")
    return _invocation(config, era, args, log_level=log_level, ssh_backdoor=args.dump_vsocks is not None)


def _from_json_config(args: argparse.Namespace, path: Path) -> DriverInvocation:
    origin = str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"driver configuration {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"driver configuration {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"driver configuration {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a JSON object")

    containers = _json_machines(data.get("containers", {}), "containers", origin)
    _reject_containers([name for name, _ in containers], [])
    nodes = [
        NodeConfig(name=name, start_command=_start_command(script, base=path.parent))
        for name, script in _json_machines(data.get("vms"), "vms", origin)
    ]
    _check_unique(nodes)
    script = data.get("test_script")
    if not isinstance(script, str) or not script:
        raise ConfigError(f"{origin}: 'test_script' must be a path")
    vlans_raw = data.get("vlans", [])
    if not isinstance(vlans_raw, list):
        raise ConfigError(f"{origin}: 'vlans' must be a list of VLAN numbers")
    vlans = _vlans([str(v) for v in vlans_raw])
    timeout_raw = data.get("global_timeout")
    timeout = None if timeout_raw is None else _seconds(timeout_raw, "global_timeout")
    config = TestConfig(
        nodes=nodes, vlans=vlans, script_path=_absolute(script, base=path.parent), global_timeout=timeout
    )
    log_level = args.log_level
    return _invocation(
        config, ERA_JSON, args, log_level=log_level, ssh_backdoor=bool(data.get("enable_ssh_backdoor"))
    )


def _json_machines(value: object, key: str, origin: str) -> list[tuple[str, str]]:
    if value is None:
        raise ConfigError(f"{origin}: missing '{key}'")
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: '{key}' must map names to {{name, start_script}}")
    machines = []
    for attr, entry in value.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("start_script"), str):
            raise ConfigError(f"{origin}: {key}.{attr} needs a 'start_script' path")
        name = entry.get("name", attr)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{origin}: {key}.{attr}.name must be a non-empty string")
        machines.append((name, entry["start_script"]))
    return machines


def _invocation(
    config: TestConfig, era: str, args: argparse.Namespace, *, log_level: str | None, ssh_backdoor: bool
) -> DriverInvocation:
    if log_level is not None and log_level not in _LOG_LEVELS:
        raise ConfigError(f"log level {log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    invocation = DriverInvocation(
        config=config,
        era=era,
        keep_state=args.keep_state,
        interactive=bool(args.interactive),
        output_dir=Path(args.output_directory) if args.output_directory else None,
        junit_xml=Path(args.junit_xml) if args.junit_xml else None,
        log_level=log_level,
        ssh_backdoor=ssh_backdoor,
        debug_hook_attach=args.debug_hook_attach,
    )
    if ssh_backdoor:
        config.notes.append("the test enables the SSH backdoor; vmtui's shell panes do not need it")
    return invocation


def _reject_containers(names: list[str], scripts: list[str]) -> None:
    listed = names or [os.path.basename(s) for s in scripts]
    if listed:
        raise ConfigError(
            "this test has systemd-nspawn container nodes, which vmtui does not run: "
            + ", ".join(listed)
            + " (only QEMU nodes are supported)"
        )


def _named_nodes(names: list[str] | None, scripts: list[str]) -> list[NodeConfig]:
    if names is None:
        return [_node_from_script(s) for s in scripts]
    if len(names) != len(scripts):
        raise ConfigError(f"{len(names)} VM names ({' '.join(names)}) but {len(scripts)} VM start scripts")
    pairs = zip(names, scripts, strict=True)
    return [NodeConfig(name=n, start_command=_start_command(s)) for n, s in pairs]


def _node_from_script(script: str) -> NodeConfig:
    # The env-var era's rule: the name is the `<hostName>` of `run-<hostName>-vm`.
    match = _START_SCRIPT_NAME.search(os.path.basename(script))
    name = match.group(1) if match else "machine"
    return NodeConfig(name=name, start_command=_start_command(script))


def _start_command(script: str, base: Path | None = None) -> str:
    # The Machine runs it through a shell: quote it (store paths need no quotes).
    return shlex.quote(str(_absolute(script, base=base)))


def _check_unique(nodes: list[NodeConfig]) -> None:
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:
            raise ConfigError(f"two start scripts give the same node name {node.name!r}")
        seen.add(node.name)


def _vlans(words: list[str]) -> list[int]:
    vlans = set()
    for word in words:
        try:
            vlan = int(word)
        except ValueError:
            raise ConfigError(f"VLAN {word!r} is not a number") from None
        if not 0 <= vlan <= 255:
            raise ConfigError(f"VLAN {vlan} is out of range (0..255)")
        vlans.add(vlan)
    return sorted(vlans)


_ISO_DURATION = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def _seconds(value: object, what: str) -> float:
    """A timeout in seconds: a number, a numeric string, or an ISO 8601 duration."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of seconds, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            match = _ISO_DURATION.match(value)
            if match is None or value in ("P", "PT"):
                raise ConfigError(f"{what} {value!r} is not a number of seconds") from None
            d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise ConfigError(f"{what} must be a number of seconds, not {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{what} must be positive, not {value!r}")
    return seconds


def _absolute(path: str, base: Path | None = None) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (base or Path.cwd()) / p


# -- result directories -------------------------------------------------------


def _locate_wrapper(path: Path, main_program: str | None = None) -> tuple[Path, Path | None]:
    """(the wrapper script, the driver's store dir if known) for a user's path."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if not path.is_dir():
        parent = path.parent
        drv_dir = parent.parent if parent.name == "bin" else None
        return path, drv_dir
    if main_program is not None:
        wrapper = path / "bin" / main_program
        if not wrapper.is_file():
            raise ConfigError(f"{path}: its meta.mainProgram is {main_program!r}, but it has no bin/{main_program}")
        return wrapper, path
    try:
        return find_driver_program(path), path
    except ConfigError:
        if (path / "test-results.xml").exists() or (path / "log.html").exists():
            raise ConfigError(
                f"{path} is the output of a test run, not a driver; build the test's"
                " `driverInteractive` (or `driver`) attribute and open that"
            ) from None
        raise


def find_driver_program(drv_dir: Path) -> Path:
    """The program of a built driver, when nothing names it: scan `bin/`.

    A driver's program has been `bin/nixos-test-driver` and, in newer
    nixpkgs, `bin/run-nixos-test`; the first of those present wins.  Any other
    name needs its path given (or the derivation's `meta.mainProgram`): a
    lone `bin/hello` is far likelier a package than a test driver.
    """
    bin_dir = drv_dir / "bin"
    for name in INTERACTIVE_PROGRAM_NAMES:
        if (bin_dir / name).is_file():
            return bin_dir / name
    known = " or ".join(f"bin/{name}" for name in INTERACTIVE_PROGRAM_NAMES)
    programs = sorted(
        entry.name
        for entry in (bin_dir.iterdir() if bin_dir.is_dir() else [])
        if not entry.name.startswith(".") and entry.is_file() and os.access(entry, os.X_OK)
    )
    if not programs:
        raise ConfigError(f"{drv_dir} has no {known}; it is not a built NixOS test driver")
    raise ConfigError(
        f"{drv_dir} has no {known} (its bin/ holds {', '.join(programs)}); if one of those"
        f" runs the test, open it: vmtui {bin_dir}/<program>"
    )


def _read_text(wrapper: Path) -> str:
    try:
        data = wrapper.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {wrapper}: {exc.strerror}") from None
    if data.startswith(b"\x7fELF") or b"\0" in data[:4096]:
        raise ConfigError(
            f"{wrapper} is a binary wrapper, not a makeWrapper shell script;"
            " vmtui cannot read its configuration"
        )
    if not data.startswith(b"#!"):
        raise ConfigError(f"{wrapper} is not a shell script")
    return data.decode("utf-8", errors="replace")


def _test_name(drv_dir: Path) -> str | None:
    base = drv_dir.resolve().name
    match = _STORE_NAME.match(base)
    name = match.group(1) if match else base
    for prefix in ("nixos-test-driver-", "vm-test-run-"):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return None


def _check_paths_exist(config: TestConfig, *, origin: str) -> None:
    if not config.script_path.is_file():
        raise ConfigError(f"{origin}: the test script {config.script_path} does not exist")
    for node in config.nodes:
        script = shlex.split(node.start_command)[0]
        if not os.path.exists(script):
            raise ConfigError(
                f"{origin}: node {node.name!r}: start script {script} does not exist"
                " (was its store path garbage-collected?)"
            )
