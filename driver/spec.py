"""TOML test specs: tests without Nix, on the built-in guests.

A spec names a script and its nodes (format in docs/internals.md)::

    name = "todos"
    script = "todos.py"

    [nodes.server]
    boot = "httpd -p 3000 -h /srv/www"
    [nodes.server.files]
    "/srv/www/todos.json" = "todos.json"

    [nodes.client]

`load_spec()` validates every key (any mistake is a `ConfigError` naming the
file and the reason, in one line), builds the guest images it needs (cached
by the guest builders), writes one NixOS-style `run-<name>-vm` per node into
a per-spec work dir, and returns the `TestConfig` the driver runs.

Guest flavours are a registry (`GUEST_FLAVOURS`): each names the node keys
it accepts beyond the common ones and a builder that writes the start
script.  Nodes are numbered 1..N in sorted name order, as NixOS does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from driver.config import NodeConfig, TestConfig
from driver.errors import ConfigError

Progress = Callable[[str], None]

_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TOP_KEYS = {"name", "script", "vlans", "global_timeout", "nodes"}
# Keys every built-in guest understands; flavours add their own.
_GUEST_KEYS = {"guest", "vlans", "memory", "boot", "files"}
_START_COMMAND_KEYS = {"start_command", "vlans"}
_MAX_NODES = 254
# Old per-node build directories are removed after this long unused.
_STALE_BUILD_SECONDS = 3600.0
_SOURCE_FILE = ".spec-path"


@dataclass(frozen=True)
class NodeBuild:
    """Everything a guest builder needs to write one node's start script."""

    name: str
    node_number: int
    vlans: tuple[int, ...]
    # (name, node number, first VLAN) of every node, for /etc/hosts.
    hosts: tuple[tuple[str, int, int], ...]
    memory_mb: int | None
    boot: str | None
    files: dict[str, bytes]
    options: dict[str, Any]  # flavour-specific keys (e.g. packages)
    out_dir: Path
    progress: Progress


@dataclass(frozen=True)
class GuestFlavour:
    """One value of `guest = ...`: how to build a node of that kind.

    `prepare(build)` makes sure the flavour's base image exists (building
    and caching it as needed) and returns `(key, image)`: the key changes
    whenever the image does, so start scripts are rewritten only then.
    `build(build, image)` writes `<build.out_dir>/bin/run-<name>-vm` and
    returns its path.
    """

    name: str
    prepare: Callable[[NodeBuild], tuple[str, Any]]
    build: Callable[[NodeBuild, Any], Path]
    extra_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NodeSpec:
    name: str
    guest: str | None  # None when the node has its own start_command
    vlans: tuple[int, ...]
    memory_mb: int | None = None
    boot: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    start_command: str | None = None


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    script: Path
    vlans: tuple[int, ...]
    global_timeout: float | None
    nodes: tuple[NodeSpec, ...]  # sorted by name: index + 1 is the node number


# -- the flavours -----------------------------------------------------------------


def _prepare_tiny(build: NodeBuild) -> tuple[str, Any]:
    from driver.guest.tiny import build_tiny_guest

    image = build_tiny_guest(progress=build.progress)
    return image.key, image


def _build_tiny(build: NodeBuild, image: Any) -> Path:
    from driver.guest.startscript import HostEntry, write_start_script

    return write_start_script(
        build.out_dir,
        name=build.name,
        node_number=build.node_number,
        vlans=build.vlans,
        hosts=[HostEntry(*host) for host in build.hosts],
        image=image,
        memory_mb=build.memory_mb or 256,
        files=build.files or None,
        boot_script=build.boot,
        shape=build.options.get("shape", "fast"),
        graphics=bool(build.options.get("graphics", False)),
    )


def _prepare_systemd(build: NodeBuild) -> tuple[str, Any]:
    from driver.guest.systemd import build_image

    image = build_image(build.options.get("packages", ()), progress=build.progress)
    return str(image.directory), image


def _build_systemd(build: NodeBuild, image: Any) -> Path:
    from driver.guest.systemd import write_systemd_start_script
    from driver.guest.systemd_node import DEFAULT_MEMORY_MB

    return write_systemd_start_script(
        build.out_dir,
        name=build.name,
        node_number=build.node_number,
        vlans=build.vlans,
        hosts=build.hosts,
        image=image,
        memory_mb=build.memory_mb or DEFAULT_MEMORY_MB,
        files=build.files or None,
        boot_script=build.boot,
        shape=build.options.get("shape", "fast"),
    )


GUEST_FLAVOURS: dict[str, GuestFlavour] = {
    "tiny": GuestFlavour("tiny", _prepare_tiny, _build_tiny, extra_keys=frozenset({"shape", "graphics"})),
    "systemd": GuestFlavour(
        "systemd", _prepare_systemd, _build_systemd, extra_keys=frozenset({"packages", "shape"})
    ),
}
DEFAULT_FLAVOUR = "tiny"


def register_flavour(flavour: GuestFlavour) -> None:
    """Add or replace a guest flavour (`guest = "<name>"` in a spec)."""
    GUEST_FLAVOURS[flavour.name] = flavour


# -- parsing and validation -----------------------------------------------------------


def parse_spec(path: Path | str) -> Spec:
    """Read and validate a spec; nothing is built.  Raises ConfigError."""
    spec_path = Path(path)
    where = str(spec_path)
    try:
        raw = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a test spec") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a text file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"{where}: {reason}")

    _reject_unknown(raw, _TOP_KEYS, "", fail)
    base = spec_path.resolve().parent

    name = raw.get("name", spec_path.stem)
    if not isinstance(name, str) or not name.strip():
        raise fail("'name' must be a non-empty string")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise fail(f"'name' may only contain letters, digits, '.', '_' and '-': {name!r}")

    if "script" not in raw:
        raise fail("missing 'script' (the Python test script, relative to this file)")
    script_value = raw["script"]
    if not isinstance(script_value, str) or not script_value:
        raise fail("'script' must be a file name (a string)")
    script = (base / script_value).resolve()
    if not script.is_file():
        raise fail(f"test script not found: {script}")

    global_timeout = raw.get("global_timeout")
    if global_timeout is not None:
        if isinstance(global_timeout, bool) or not isinstance(global_timeout, (int, float)) or global_timeout <= 0:
            raise fail("'global_timeout' must be a positive number of seconds")
        global_timeout = float(global_timeout)

    nodes_raw = raw.get("nodes")
    if nodes_raw is None:
        raise fail("no nodes: add at least one [nodes.<name>] table")
    if not isinstance(nodes_raw, dict):
        raise fail("'nodes' must be a table of [nodes.<name>] tables")
    if not nodes_raw:
        raise fail("no nodes: add at least one [nodes.<name>] table")
    if len(nodes_raw) > _MAX_NODES:
        raise fail(f"too many nodes ({len(nodes_raw)}; at most {_MAX_NODES})")

    nodes = tuple(_parse_node(node_name, nodes_raw[node_name], base, fail) for node_name in sorted(nodes_raw))
    _check_python_names(nodes, fail)

    node_vlans = sorted({v for node in nodes for v in node.vlans})
    if "vlans" in raw:
        vlans = _vlan_list(raw["vlans"], "'vlans'", fail)
        missing = sorted(set(node_vlans) - set(vlans))
        if missing:
            raise fail(f"'vlans' lacks VLAN(s) {', '.join(map(str, missing))} that nodes are on")
    else:
        vlans = tuple(node_vlans)
    return Spec(
        path=spec_path, name=name, script=script, vlans=vlans, global_timeout=global_timeout, nodes=nodes
    )


def _reject_unknown(table: dict[str, Any], allowed: set[str] | frozenset[str], prefix: str, fail: Callable[[str], ConfigError]) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed))
        raise fail(f"unknown key '{prefix}{unknown[0]}' (known keys: {known})")


def _vlan_list(value: Any, what: str, fail: Callable[[str], ConfigError]) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise fail(f"{what} must be a list of VLAN numbers, like [1, 2]")
    for v in value:
        if not 1 <= v <= 255:
            raise fail(f"{what}: VLAN {v} is out of range (1..255)")
    if len(set(value)) != len(value):
        raise fail(f"{what} lists a VLAN twice")
    return tuple(value)


def _parse_node(name: str, raw: Any, base: Path, fail: Callable[[str], ConfigError]) -> NodeSpec:
    where = f"node {name!r}"
    if not _NODE_NAME.match(name):
        raise fail(f"{where}: a node name must be letters, digits, '-' or '_', starting with a letter or digit")
    if not isinstance(raw, dict):
        raise fail(f"{where}: must be a table ([nodes.{name}])")

    if "start_command" in raw:
        _reject_unknown(raw, _START_COMMAND_KEYS, f"nodes.{name}.", fail)
        command = raw["start_command"]
        if not isinstance(command, str) or not command.strip():
            raise fail(f"{where}: 'start_command' must be a non-empty string")
        vlans = _vlan_list(raw["vlans"], f"{where}: 'vlans'", fail) if "vlans" in raw else ()
        return NodeSpec(name=name, guest=None, vlans=vlans, start_command=_absolute_program(command, base))

    guest = raw.get("guest", DEFAULT_FLAVOUR)
    if not isinstance(guest, str):
        raise fail(f"{where}: 'guest' must be a string")
    flavour = GUEST_FLAVOURS.get(guest)
    if flavour is None:
        known = ", ".join(sorted(GUEST_FLAVOURS))
        raise fail(f"{where}: unknown guest flavour {guest!r} (known: {known})")
    allowed = _GUEST_KEYS | flavour.extra_keys
    unknown = sorted(set(raw) - allowed)
    if unknown:
        if any(key in _flavour_only_keys() for key in unknown):
            raise fail(f"{where}: {unknown[0]!r} does not apply to guest = {guest!r}")
        raise fail(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(allowed | {'start_command'}))})")

    vlans = _vlan_list(raw["vlans"], f"{where}: 'vlans'", fail) if "vlans" in raw else (1,)
    memory = raw.get("memory")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int) or memory < 64):
        raise fail(f"{where}: 'memory' must be a whole number of MiB, at least 64")
    boot = raw.get("boot")
    if boot is not None and not isinstance(boot, str):
        raise fail(f"{where}: 'boot' must be a string (shell run at boot)")

    files: dict[str, Path] = {}
    files_raw = raw.get("files", {})
    if not isinstance(files_raw, dict):
        raise fail(f"{where}: 'files' must be a table of \"/guest/path\" = \"host file\"")
    for guest_path, host_path in files_raw.items():
        if not guest_path.startswith("/"):
            raise fail(f"{where}: file destination {guest_path!r} must be an absolute guest path")
        if not isinstance(host_path, str):
            raise fail(f"{where}: the source of {guest_path!r} must be a host file name (a string)")
        source = (base / host_path).resolve()
        if not source.is_file():
            raise fail(f"{where}: file for {guest_path!r} not found: {source}")
        files[guest_path] = source

    options: dict[str, Any] = {}
    if "packages" in raw:
        packages = raw["packages"]
        if not isinstance(packages, list) or not all(isinstance(p, str) and p for p in packages):
            raise fail(f"{where}: 'packages' must be a list of Debian package names")
        options["packages"] = tuple(packages)
    if "shape" in raw:
        from driver.guest.nixos_shape import SHAPES

        if raw["shape"] not in SHAPES:
            raise fail(f"{where}: 'shape' must be one of {', '.join(repr(s) for s in SHAPES)}")
        options["shape"] = raw["shape"]
    if "graphics" in raw:
        if not isinstance(raw["graphics"], bool):
            raise fail(f"{where}: 'graphics' must be true or false")
        options["graphics"] = raw["graphics"]
    if options.get("graphics") and options.get("shape", "fast") != "fast":
        raise fail(f"{where}: 'graphics = true' works with shape = \"fast\" only")
    return NodeSpec(
        name=name, guest=guest, vlans=vlans, memory_mb=memory, boot=boot, files=files, options=options
    )


def _flavour_only_keys() -> set[str]:
    return {key for flavour in GUEST_FLAVOURS.values() for key in flavour.extra_keys}


def _absolute_program(command: str, base: Path) -> str:
    """Make a relative start script path in `command` relative to the spec."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    for index, word in enumerate(words):
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
            continue
        if "/" in word and not word.startswith("/"):
            words[index] = str((base / word).resolve())
            return shlex.join(words)
        return command
    return command


def _check_python_names(nodes: tuple[NodeSpec, ...], fail: Callable[[str], ConfigError]) -> None:
    seen: dict[str, str] = {}
    for node in nodes:
        python_name = re.sub(r"^[^A-Za-z_]|[^A-Za-z0-9_]", "_", node.name)
        if python_name in seen:
            raise fail(
                f"nodes {seen[python_name]!r} and {node.name!r} collide: both are {python_name!r} in the script"
            )
        seen[python_name] = node.name


# -- building ---------------------------------------------------------------------------


def default_work_dir(spec: Spec) -> Path:
    from driver.guest.debs import cache_dir

    digest = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "specs" / f"{spec.name}-{digest}"


def load_spec(path: Path | str, *, progress: Progress | None = None, work_dir: Path | None = None) -> TestConfig:
    """Validate the spec, build what its nodes need, return the TestConfig."""
    spec = parse_spec(path)
    report: Progress = progress or (lambda _line: None)
    if work_dir is None:
        root = default_work_dir(spec)
        _prune_orphaned_work_dirs(root.parent)
    else:
        root = work_dir
    numbers = {node.name: index for index, node in enumerate(spec.nodes, start=1)}
    hosts = tuple((node.name, numbers[node.name], node.vlans[0]) for node in spec.nodes if node.vlans)
    nodes: list[NodeConfig] = []
    for node in spec.nodes:
        if node.start_command is not None:
            nodes.append(NodeConfig(name=node.name, start_command=node.start_command))
            continue
        script = _build_node(spec, node, numbers[node.name], hosts, root, report)
        nodes.append(NodeConfig(name=node.name, start_command=shlex.quote(str(script))))
    if any(node.guest is not None for node in spec.nodes) and shutil.which("qemu-system-x86_64") is None:
        raise ConfigError(f"{spec.path}: qemu-system-x86_64 not found on PATH (the built-in guests need it)")
    return TestConfig(
        nodes=nodes,
        vlans=list(spec.vlans),
        script_path=spec.script,
        global_timeout=spec.global_timeout,
        source_path=spec.path.resolve(),
        name=spec.name,
    )


def _build_node(
    spec: Spec,
    node: NodeSpec,
    number: int,
    hosts: tuple[tuple[str, int, int], ...],
    root: Path,
    report: Progress,
) -> Path:
    assert node.guest is not None
    flavour = GUEST_FLAVOURS[node.guest]
    files = {}
    for guest_path, source in node.files.items():
        try:
            files[guest_path] = source.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{spec.path}: cannot read {source}: {exc.strerror}") from None
    build = NodeBuild(
        name=node.name,
        node_number=number,
        vlans=node.vlans,
        hosts=hosts,
        memory_mb=node.memory_mb,
        boot=node.boot,
        files=files,
        options=dict(node.options),
        out_dir=root,  # replaced by the node's own build directory
        progress=report,
    )
    try:
        image_key, image = flavour.prepare(build)
        key = _build_key(flavour.name, image_key, build)
        nodes_dir = root / "nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        # Which spec this is for: work dirs of specs that are gone get pruned.
        (root / _SOURCE_FILE).write_text(str(spec.path.resolve()))
        node_dir = nodes_dir / f"{node.name}-{key}"
        done = node_dir / ".complete"
        # One builder at a time per node; a concurrent run of the same spec
        # waits, then reuses the result.  `.complete` marks a finished build.
        with _locked(nodes_dir / f".{node.name}.lock"):
            if done.is_file():
                os.utime(node_dir)  # in use: keep it from being pruned
                return node_dir / done.read_text().strip()
            shutil.rmtree(node_dir, ignore_errors=True)  # a build cut short
            node_dir.mkdir()
            script = flavour.build(_with_out_dir(build, node_dir), image)
            done.write_text(str(script.relative_to(node_dir)))
            _prune_stale(nodes_dir, node.name, keep=node_dir)
            return script
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(str(spec.path)) else f"{spec.path}: {message}") from None
    except Exception as exc:
        # Guest build failures (no network, no apt lists, a failing
        # mmdebstrap) are reported as one line, like bad input.
        raise ConfigError(f"{spec.path}: node {node.name}: cannot build the {flavour.name} guest: {exc}") from None


def _with_out_dir(build: NodeBuild, out_dir: Path) -> NodeBuild:
    return replace(build, out_dir=out_dir)


def _build_key(flavour: str, image_key: str, build: NodeBuild) -> str:
    digest = hashlib.sha256()
    for part in (
        flavour,
        image_key,
        str(build.node_number),
        repr(build.vlans),
        repr(build.hosts),
        repr(build.memory_mb),
        build.boot or "",
        repr(sorted(build.options.items())),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    for guest_path in sorted(build.files):
        digest.update(guest_path.encode() + b"\0" + hashlib.sha256(build.files[guest_path]).digest())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune_orphaned_work_dirs(specs_dir: Path) -> None:
    """Remove work dirs whose spec file no longer exists (temporary tests)."""
    if not specs_dir.is_dir():
        return
    now = time.time()
    for work_dir in specs_dir.iterdir():
        source = work_dir / _SOURCE_FILE
        try:
            if Path(source.read_text().strip()).exists():
                continue
            if now - work_dir.stat().st_mtime > _STALE_BUILD_SECONDS:
                shutil.rmtree(work_dir, ignore_errors=True)
        except OSError:
            continue


def _prune_stale(nodes_dir: Path, node_name: str, keep: Path) -> None:
    now = time.time()
    for candidate in nodes_dir.glob(f"{node_name}-*"):
        if candidate == keep or not candidate.is_dir():
            continue
        if not re.fullmatch(re.escape(node_name) + r"-[0-9a-f]{16}", candidate.name):
            continue
        try:
            if now - candidate.stat().st_mtime > _STALE_BUILD_SECONDS:
                shutil.rmtree(candidate, ignore_errors=True)
        except OSError:
            pass
