"""Open a NixOS test from its Nix source: build `driverInteractive`, then read it.

`vmtui test.nix` runs `nix-build test.nix -A driverInteractive --out-link <gc root>`;
`vmtui .#checks.x86_64-linux.foo` runs
`nix build .#checks.x86_64-linux.foo.driverInteractive --out-link <gc root> --json`.
Nix's stderr is streamed line by line to a callback (the headless runner
prints it, the TUI shows it), and the failures a Nix user meets come back as
one clear paragraph (`NixError`, a `ConfigError`), never a traceback.

A `.nix` file can be any of:
- an expression that is a test (`pkgs.testers.runNixOSTest { … }`, `pkgs.nixosTest …`);
- a function nix-build can call with its defaults (`{ pkgs ? import <nixpkgs> { } }: …`,
  or nixpkgs' `import ./make-test-python.nix ({ pkgs, ... }: { … })`);
- an attribute set of tests: select one with `-A <attr>`, as with nix-build;
- a test *module* (`{ pkgs, ... }: { nodes = …; testScript = …; }`, the form of
  newer nixpkgs tests): nix-build cannot call it, so vmtui retries with
  `(import <nixpkgs> { }).testers.runNixOSTest (import ./file.nix)`.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driver import scratch
from driver.config import TestConfig
from driver.errors import Cancelled, ConfigError
from driver.wrapper import load_driver_result, read_driver_result

ProgressCallback = Callable[[str], None]

_DRIVER_ATTRS = ("driverInteractive", "driver")

# Out-links of this process's builds: each is a GC root (Nix registers it),
# so `nix-collect-garbage` during a session cannot delete a driver or a start
# script whose VM still runs.  Removed when vmtui exits, however it exits
# (`driver.scratch`).
_gc_roots: Path | None = None
_gc_root_numbers = itertools.count(1)
_gc_roots_lock = threading.Lock()


def _next_out_link() -> Path:
    """A fresh out-link path in this process's GC-root directory."""
    global _gc_roots
    with _gc_roots_lock:
        if _gc_roots is None:
            _gc_roots = scratch.make_temp_dir("vmtui-gcroots-")
        return _gc_roots / f"driver-{next(_gc_root_numbers)}"


def release_gc_roots() -> None:
    """Drop the GC roots of every build so far (nothing built may still run)."""
    global _gc_roots
    with _gc_roots_lock:
        if _gc_roots is not None:
            scratch.remove(_gc_roots)
            _gc_roots = None

_FLAKE_FEATURES = ["--extra-experimental-features", "nix-command flakes"]


class NixError(ConfigError):
    """Nix could not produce a driver; the message is one paragraph for the user."""


class NixNotFound(NixError):
    pass


class NixEvalError(NixError):
    pass


class NixBuildFailed(NixError):
    def __init__(self, message: str, drv: str | None) -> None:
        super().__init__(message)
        self.drv = drv


class NotANixOSTest(NixError):
    pass


class NixBuildCancelled(Cancelled):
    """The build was cancelled through the `cancel` event (not a user error)."""


@dataclass(frozen=True)
class NixTarget:
    """What to build: a `.nix` file with an optional attribute path, or a flake output."""

    file: Path | None = None
    attr: str | None = None
    flake_ref: str | None = None  # `<flake>#<attribute path>`

    def __str__(self) -> str:
        if self.flake_ref is not None:
            return self.flake_ref
        return f"{self.file} -A {self.attr}" if self.attr else str(self.file)


def looks_like_nix_target(target: str) -> bool:
    """A `.nix` file, or a flake reference with an attribute (`.#foo`, `github:o/r#foo`)."""
    return target.endswith(".nix") or ("#" in target and not Path(target).exists())


def parse_nix_target(target: str, attr: str | None = None) -> NixTarget:
    """`test.nix` (+ `-A attr`) or `<flake>#<attr>` -> NixTarget; bad input -> ConfigError."""
    if target.endswith(".nix"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"{target} does not exist" if not path.exists() else f"{target} is not a file")
        return NixTarget(file=path.resolve(), attr=attr or None)
    if "#" in target:
        if attr:
            raise ConfigError(
                f"-A applies to .nix files; for a flake, write the attribute after '#': {target}.{attr}"
            )
        flake, _, flake_attr = target.partition("#")
        if not flake_attr:
            raise ConfigError(
                f"{target}: name the test after '#', e.g. {flake or '.'}#checks.x86_64-linux.<name>"
            )
        return NixTarget(flake_ref=target)
    raise ConfigError(f"{target} is neither a .nix file nor a flake reference (<flake>#<attribute>)")


def resolve_nix_target(
    target: str,
    *,
    attr: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> TestConfig:
    """Build a test's interactive driver and read it: the entry point for `vmtui TARGET`."""
    return load_nix_target(parse_nix_target(target, attr), on_progress=on_progress, cancel=cancel)


def load_nix_target(
    target: NixTarget, *, on_progress: ProgressCallback | None = None, cancel: threading.Event | None = None
) -> TestConfig:
    built = build_driver_program(target, on_progress=on_progress, cancel=cancel)
    try:
        invocation = read_driver_result(built.path, main_program=built.main_program)
    except ConfigError as exc:
        raise NixError(f"{target}: {exc}") from None
    config = invocation.config
    config.source_path = _source_file(target)
    config.notes.append(f"built {built.path} from {target}")
    if built.main_program is not None:
        config.notes.append(f"its meta.mainProgram: {built.main_program}")
    return config


@dataclass(frozen=True)
class BuiltDriver:
    """A built driver, and the program its derivation names (None: Nix did not say)."""

    path: Path
    main_program: str | None


def build_driver_program(
    target: NixTarget, *, on_progress: ProgressCallback | None = None, cancel: threading.Event | None = None
) -> BuiltDriver:
    """Build the target's driver, then ask Nix for its `meta.mainProgram`.

    The program's name has changed across nixpkgs (`nixos-test-driver`,
    `run-nixos-test`); the derivation's meta says which.  When that
    evaluation fails (a derivation without it), the name is None and the
    caller scans the driver's `bin/`.
    """
    path, selection = _build_driver(target, on_progress=on_progress, cancel=cancel)
    return BuiltDriver(path, _main_program(selection, cancel=cancel))


def build_driver(
    target: NixTarget, *, on_progress: ProgressCallback | None = None, cancel: threading.Event | None = None
) -> Path:
    """Build the target's `driverInteractive` (or the driver it names); returns its store path."""
    return _build_driver(target, on_progress=on_progress, cancel=cancel)[0]


def _build_driver(
    target: NixTarget, *, on_progress: ProgressCallback | None, cancel: threading.Event | None
) -> tuple[Path, list[str]]:
    """(the built driver, the arguments that select it again for an evaluation)."""
    if target.flake_ref is not None:
        ref, _, flake_attr = target.flake_ref.partition("#")
        installable = f"{ref}#{_driver_attr(flake_attr)}"
        # `--json` rather than `--print-out-paths`, which Nix before 2.9 lacks.
        argv = ["nix", *_FLAKE_FEATURES, "build", installable, "--out-link", str(_next_out_link()), "--json", "-L"]
        return _build(argv, target, on_progress=on_progress, cancel=cancel), [installable]
    assert target.file is not None
    selection = [str(target.file), "-A", _driver_attr(target.attr)]
    argv = ["nix-build", *selection, "--out-link", str(_next_out_link())]
    try:
        return _build(argv, target, on_progress=on_progress, cancel=cancel), selection
    except _NeedsArguments:
        if target.attr:
            raise NixEvalError(
                f"Nix could not evaluate {target}: the file is a function whose arguments have no"
                " defaults, so nix-build cannot select an attribute from it."
            ) from None
    # A test module (`{ pkgs, ... }: { nodes …; testScript …; }`): wrap it.
    selection = ["-E", _module_expression(target.file), "-A", "driverInteractive"]
    argv = ["nix-build", "--out-link", str(_next_out_link()), *selection]
    if on_progress is not None:
        on_progress(f"vmtui: {target.file.name} is a test module; building it with <nixpkgs>'s runNixOSTest")
    return _build(argv, target, on_progress=on_progress, cancel=cancel, as_module=True), selection


def _module_expression(file: Path) -> str:
    return f"(import <nixpkgs> {{ }}).testers.runNixOSTest (import (/. + {_nix_string(str(file))}))"


# How long the `meta.mainProgram` evaluation may take: the build has just
# evaluated the same test, so this is a safety net, not an expectation.
MAIN_PROGRAM_EVAL_LIMIT = 300.0
_PROGRAM_NAME = re.compile(r"^[A-Za-z0-9+_.-]+$")


def _main_program(selection: list[str], *, cancel: threading.Event | None = None) -> str | None:
    """`meta.mainProgram` of what `selection` built, evaluated by Nix; None when Nix cannot say.

    `selection` is a flake installable (`[ref#attr]`) or nix-build's
    arguments (`[file, -A, attr]`, `[-E, expr, -A, attr]`).
    """
    if len(selection) == 1:
        argv = ["nix", *_FLAKE_FEATURES, "eval", "--raw", f"{selection[0]}.meta.mainProgram"]
    else:
        *source, _, attr = selection
        argv = ["nix-instantiate", "--eval", "--json", *source, "-A", f"{attr}.meta.mainProgram"]
    if shutil.which(argv[0]) is None:
        return None
    try:
        status, _err, out = _run(argv, on_progress=None, cancel=cancel, limit=MAIN_PROGRAM_EVAL_LIMIT)
    except subprocess.TimeoutExpired:
        return None
    if status != 0:
        return None  # Nix's complaint (no meta, no mainProgram) is not the user's problem
    value: object = out.strip()
    if argv[0] == "nix-instantiate":
        try:
            value = json.loads(out)
        except ValueError:
            return None
    # A name in bin/, nothing else: never a path that leads out of the driver.
    if not isinstance(value, str) or not _PROGRAM_NAME.match(value) or value in (".", ".."):
        return None
    return value


# -- watch support --------------------------------------------------------------


@dataclass
class ConfigChange:
    """What a rebuild changed, so a session can restart only what it must."""

    script_changed: bool
    # Nodes whose start script changed (a new store path) or that are new: restart them.
    changed_nodes: list[str]
    new_config: TestConfig
    removed_nodes: list[str] = field(default_factory=list)
    vlans_changed: bool = False

    @property
    def anything_changed(self) -> bool:
        return self.script_changed or bool(self.changed_nodes or self.removed_nodes) or self.vlans_changed


def diff_configs(old: TestConfig, new: TestConfig) -> ConfigChange:
    old_nodes = {n.name: n.start_command for n in old.nodes}
    new_nodes = {n.name: n.start_command for n in new.nodes}
    changed = [name for name, command in new_nodes.items() if old_nodes.get(name) != command]
    removed = [name for name in old_nodes if name not in new_nodes]
    return ConfigChange(
        script_changed=_read_or_none(old.script_path) != _read_or_none(new.script_path),
        changed_nodes=changed,
        new_config=new,
        removed_nodes=removed,
        vlans_changed=sorted(old.vlans) != sorted(new.vlans),
    )


def rebuild_and_diff(
    old: TestConfig,
    target: NixTarget | str | Path,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ConfigChange:
    """Rebuild (or, for a result dir, re-read) the target and say what changed.

    A script-only change swaps the script; nodes whose start script changed
    must restart.  The old script is compared by content: its store path
    changes whenever anything in the test does.
    """
    if isinstance(target, Path) or (isinstance(target, str) and not looks_like_nix_target(target)):
        new = load_driver_result(target)
    else:
        nix_target = target if isinstance(target, NixTarget) else parse_nix_target(target)
        new = load_nix_target(nix_target, on_progress=on_progress, cancel=cancel)
    return diff_configs(old, new)


# -- running Nix ------------------------------------------------------------------


class _NeedsArguments(Exception):
    """nix-build could not auto-call the file: it is a function without defaults."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BUILDER_FAILED = re.compile(r"builder for '(/[^']+\.drv)' failed")
# `-A` selecting an attribute the value lacks (not a missing attribute deep in the test).
_MISSING_ATTR = re.compile(r"attribute '([^']*)' in selection path '[^']*' not found")
_FLAKE_MISSING = re.compile(r"does not provide attribute '([^']*)'")
# How nix-build says it cannot call a file's function (wording of Nix 2.3, 2.4-2.12, 2.13+).
_AUTO_CALL = re.compile(
    r"(?:cannot evaluate|cannot auto-call) a function that has an argument without a value"
    r"|anonymous function at (?P<file>.+?):\d+:\d+ called without required argument"
)
_NO_NIXPKGS = re.compile(r"file 'nixpkgs' was not found in the Nix search path")


def _build(
    argv: list[str],
    target: NixTarget,
    *,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None,
    as_module: bool = False,
) -> Path:
    if shutil.which(argv[0]) is None:
        raise NixNotFound(_not_found_message(argv[0], target))
    status, err_lines, out = _run(argv, on_progress=on_progress, cancel=cancel)
    if status != 0:
        raise _classify_failure(err_lines, target, as_module=as_module)
    result = _out_path(out)
    if result is None:
        raise NixError(f"{argv[0]} built {target} but printed no store path")
    if not result.is_dir():
        raise NixError(f"{argv[0]} printed {result} for {target}, which is not a directory")
    return result


def _run(
    argv: list[str],
    *,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None,
    limit: float | None = None,
) -> tuple[int, list[str], str]:
    """Run Nix, streaming stderr lines; Nix never outlives this call.

    Past `limit` seconds Nix is stopped and `subprocess.TimeoutExpired` raised.
    """
    tail: deque[str] = deque(maxlen=500)
    out_parts: list[str] = []
    # Same process group as vmtui, so a Ctrl-C in the terminal also stops Nix.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    def pump_stderr() -> None:
        callback = on_progress
        for raw in stderr:
            line = raw.rstrip("\r\n")
            tail.append(line)
            if callback is not None:
                try:
                    callback(line)
                except Exception:  # a broken display must not break the build
                    callback = None

    readers = [
        threading.Thread(target=pump_stderr, name="nix-stderr", daemon=True),
        threading.Thread(target=lambda: out_parts.append(stdout.read()), name="nix-stdout", daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = None if limit is None else time.monotonic() + limit
    try:
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise NixBuildCancelled(f"cancelled: {' '.join(argv)}") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(argv, limit or 0.0) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join()
        stdout.close()
        stderr.close()
    return proc.returncode, list(tail), "".join(out_parts)


def _classify_failure(
    err_lines: list[str], target: NixTarget, *, as_module: bool
) -> NixError | _NeedsArguments:
    lines = [_ANSI.sub("", line) for line in err_lines]
    text = "\n".join(lines)
    builder = None
    for match in _BUILDER_FAILED.finditer(text):
        builder = match
    if builder is not None:
        drv = builder.group(1)
        log = _builder_log(lines, drv)
        return NixBuildFailed(
            f"Nix could not build {drv} (needed for {target}). Last log lines:\n"
            + "\n".join(f"  {line}" for line in log)
            + f"\nFull log: nix log {drv}",
            drv,
        )
    missing = _MISSING_ATTR.search(text)
    if missing is not None and missing.group(1) in _DRIVER_ATTRS:
        return NotANixOSTest(
            f"{target} is not a NixOS test: it has no `driverInteractive` attribute. vmtui opens"
            " an expression that evaluates to a test (e.g. `pkgs.testers.runNixOSTest { … }`);"
            " if the file holds several, pick one with -A <attr>."
        )
    if _FLAKE_MISSING.search(text) is not None and target.flake_ref is not None:
        # Nix says the same whether the attribute is missing or is not a test.
        attr = _driver_attr(target.flake_ref.partition("#")[2])
        return NotANixOSTest(
            f"{target} is not a NixOS test: the flake has no `{attr}`. Either the attribute"
            " does not exist, or it is not a test (`pkgs.testers.runNixOSTest { … }`);"
            " tests usually live under checks.<system>.<name>."
        )
    auto_call = _AUTO_CALL.search(text)
    # Only the file's own top-level function: a call without arguments deeper
    # down is an ordinary evaluation error.
    if (
        auto_call
        and target.file is not None
        and not as_module
        and auto_call.group("file") in (None, str(target.file))
    ):
        return _NeedsArguments()
    if as_module and _NO_NIXPKGS.search(text):
        return NixEvalError(
            f"{target} is a test module (a function of {{ pkgs, ... }}); vmtui builds it with"
            " <nixpkgs>'s runNixOSTest, but <nixpkgs> is not in NIX_PATH. Set"
            " NIX_PATH=nixpkgs=<path or channel>, or make the file evaluate to a test itself:"
            " `{ pkgs ? import <nixpkgs> { } }: pkgs.testers.runNixOSTest { … }`."
        )
    return NixEvalError(f"Nix could not evaluate {target}:\n{trim_nix_error(lines)}")


def trim_nix_error(lines: list[str], *, max_lines: int = 25) -> str:
    """Nix's error output reduced to its innermost `error:` and the location it shows."""
    clean = [_ANSI.sub("", line).rstrip() for line in lines]
    starts = [i for i, line in enumerate(clean) if line.lstrip().startswith("error:")]
    if not starts:
        block = [line for line in clean if line.strip()][-max_lines:]
        return "\n".join(block) if block else "(Nix printed no error message)"
    # The last `error:` that has a message; a bare `error:` heads a trace.
    with_message = [i for i in starts if clean[i].strip() != "error:"]
    start = with_message[-1] if with_message else starts[-1]
    block = []
    for line in clean[start:]:
        if "--show-trace" in line and line.strip().startswith("(use"):
            continue
        if block and not line.strip() and not block[-1].strip():
            continue
        block.append(line)
    while block and not block[-1].strip():
        block.pop()
    indent = min((len(line) - len(line.lstrip()) for line in block if line.strip()), default=0)
    return "\n".join(line[indent:] for line in block[:max_lines])


def _builder_log(lines: list[str], drv: str) -> list[str]:
    """The log tail Nix quotes after `builder for '<drv>' failed`, else the lines before it."""
    at = max(i for i, line in enumerate(lines) if f"builder for '{drv}'" in line)
    quoted = []
    for line in lines[at + 1 :]:
        stripped = line.strip()
        if stripped.startswith(("For full logs", "error:", "cannot build")) or not line.startswith(" "):
            break
        if stripped.startswith("last ") and stripped.endswith("log lines:"):
            continue
        if stripped.startswith(">"):
            # Nix quotes each log line as `> <line>`: keep the line's own indentation.
            stripped = line.lstrip()[1:]
            stripped = stripped[1:] if stripped.startswith(" ") else stripped
        quoted.append(stripped)
    if quoted:
        return quoted[-20:]
    # Nix already streamed the log (nix-build, `nix build -L`) and quotes none:
    # take what the builder printed after `building '<drv>'`.
    starts = [i for i, line in enumerate(lines[:at]) if f"building '{drv}'" in line]
    log = lines[starts[-1] + 1 : at] if starts else lines[:at]
    name = drv.rsplit("/", 1)[-1].split("-", 1)[-1].removesuffix(".drv")
    return [line.removeprefix(f"{name}> ") for line in log if line.strip()][-10:]


def _out_path(stdout: str) -> Path | None:
    """The built path from nix-build's stdout (one path a line) or `nix build --json`."""
    text = stdout.strip()
    if text.startswith("["):
        try:
            outputs = json.loads(text)[0]["outputs"]
        except (ValueError, LookupError, TypeError):
            return None
        path = outputs.get("out") or next(iter(outputs.values()), None)
        return Path(path) if isinstance(path, str) else None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return Path(lines[-1]) if lines else None


def _not_found_message(program: str, target: NixTarget) -> str:
    if program == "nix":
        how = f"`nix build {target.flake_ref}.driverInteractive` then `vmtui ./result`"
    else:
        how = f"`nix-build {target.file} -A {_driver_attr(target.attr)}` then `vmtui ./result`"
    return (
        f"vmtui needs `{program}` to build {target}, and it is not on PATH. Install Nix"
        " (https://nixos.org/download, or your distribution's `nix` package) and open a new"
        f" shell, or build the driver where Nix is installed and open the result: {how}."
    )


def _driver_attr(attr: str | None) -> str:
    if not attr:
        return "driverInteractive"
    if attr in _DRIVER_ATTRS or attr.endswith(tuple("." + a for a in _DRIVER_ATTRS)):
        return attr
    return f"{attr}.driverInteractive"


def _nix_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n")
    return f'"{escaped}"'


def _source_file(target: NixTarget) -> Path | None:
    if target.file is not None:
        return target.file
    assert target.flake_ref is not None
    ref = target.flake_ref.partition("#")[0] or "."
    ref = ref.removeprefix("path:")
    if ":" in ref or "?" in ref:
        return None  # a remote flake: nothing local to watch
    flake = Path(ref) / "flake.nix"
    return flake.resolve() if flake.is_file() else None


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
