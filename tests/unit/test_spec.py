"""TOML specs: validation, numbering, and the per-flavour build hook.

Builds go through a fake flavour (the real guests boot in the integration
tests); only the file handling and caching of the spec loader is tested.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from driver import spec as spec_module
from driver.errors import ConfigError
from driver.spec import GuestFlavour, NodeBuild, load_spec, parse_spec, register_flavour

EXAMPLES = Path(__file__).resolve().parents[2] / "vmtui" / "examples"


def write_spec(tmp_path: Path, text: str, script: str | None = "start_all()\n") -> Path:
    if script is not None:
        (tmp_path / "test.py").write_text(script)
    path = tmp_path / "test.toml"
    path.write_text(text)
    return path


def bad(tmp_path: Path, text: str, match: str) -> None:
    path = write_spec(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        parse_spec(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    assert "\n" not in message
    assert match in message, message


def test_the_todos_example_parses() -> None:
    spec = parse_spec(EXAMPLES / "todos.toml")
    assert spec.name == "todos"
    assert spec.script == (EXAMPLES / "todos.py").resolve()
    assert [n.name for n in spec.nodes] == ["client", "server"]
    server = spec.nodes[1]
    assert server.guest == "tiny" and server.vlans == (1,)
    assert server.boot == "httpd -p 3000 -h /srv/www"
    assert server.files == {"/srv/www/todos.json": (EXAMPLES / "todos.json").resolve()}
    assert spec.vlans == (1,)
    assert spec.global_timeout == 900.0


def test_defaults(tmp_path: Path) -> None:
    spec = parse_spec(write_spec(tmp_path, 'script = "test.py"\n[nodes.b]\n[nodes.a]\nvlans = [2, 1]\n'))
    assert spec.name == "test"
    assert [n.name for n in spec.nodes] == ["a", "b"]
    assert spec.vlans == (1, 2)
    assert spec.global_timeout is None
    assert spec.nodes[1].vlans == (1,) and spec.nodes[1].guest == "tiny"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('script = "test.py"\nextra = 1\n[nodes.a]\n', "unknown key 'extra'"),
        ('script = "test.py"\n[nodes.a]\ncolour = "red"\n', "unknown key 'colour'"),
        ("[nodes.a]\n", "missing 'script'"),
        ('script = "missing.py"\n[nodes.a]\n', "test script not found"),
        ('script = "test.py"\n', "no nodes"),
        ('script = "test.py"\nnodes = 3\n', "'nodes' must be a table"),
        ('script = "test.py"\n[nodes.a]\nguest = "windows"\n', "unknown guest flavour 'windows'"),
        ('script = "test.py"\n[nodes.a]\nvlans = "1"\n', "must be a list of VLAN numbers"),
        ('script = "test.py"\n[nodes.a]\nvlans = [0]\n', "out of range"),
        ('script = "test.py"\n[nodes.a]\nvlans = [1, 1]\n', "lists a VLAN twice"),
        ('script = "test.py"\n[nodes.a]\nmemory = "lots"\n', "'memory' must be a whole number"),
        ('script = "test.py"\n[nodes.a]\nmemory = 16\n', "at least 64"),
        ('script = "test.py"\n[nodes.a]\nboot = 3\n', "'boot' must be a string"),
        ('script = "test.py"\n[nodes.a]\npackages = ["nginx"]\n', "'packages' does not apply to guest = 'tiny'"),
        ('script = "test.py"\n[nodes.a]\nshape = "nixos-9p"\n', "'shape' must be one of 'fast', 'nixos', 'nixos-virtiofs'"),
        ('script = "test.py"\n[nodes.a]\nguest = "systemd"\nshape = "9p"\n', "'shape' must be one of 'fast', 'nixos'"),
        ('script = "test.py"\n[nodes.a]\ngraphics = "yes"\n', "'graphics' must be true or false"),
        ('script = "test.py"\n[nodes.a]\nguest = "systemd"\ngraphics = true\n', "'graphics' does not apply to guest = 'systemd'"),
        ('script = "test.py"\nglobal_timeout = -1\n[nodes.a]\n', "positive number"),
        ('script = "test.py"\nglobal_timeout = true\n[nodes.a]\n', "positive number"),
        ('script = "test.py"\nvlans = [2]\n[nodes.a]\n', "lacks VLAN(s) 1"),
        ('script = "test.py"\n[nodes.a-b]\n[nodes.a_b]\n', "collide"),
        ('script = "test.py"\n[nodes."bad name"]\n', "a node name must be"),
        ('script = "test.py"\n[nodes.a]\n[nodes.a.files]\n"etc/x" = "test.py"\n', "absolute guest path"),
        ('script = "test.py"\n[nodes.a]\n[nodes.a.files]\n"/etc/x" = "nope.txt"\n', "not found"),
        ('script = "test.py"\n[nodes.a]\nstart_command = "./run"\nboot = "x"\n', "unknown key 'nodes.a.boot'"),
        ('script = "test.py"\n[nodes.a]\nstart_command = ""\n', "'start_command' must be a non-empty string"),
        ('script = "test.py"\nname = "has space"\n[nodes.a]\n', "'name' may only contain"),
        ("script = [\n", "invalid TOML"),
    ],
)
def test_mistakes_are_one_line_config_errors(tmp_path: Path, text: str, match: str) -> None:
    bad(tmp_path, text, match)


def test_a_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        parse_spec(tmp_path / "absent.toml")


def test_systemd_nodes_take_packages(tmp_path: Path) -> None:
    spec = parse_spec(write_spec(tmp_path, 'script = "test.py"\n[nodes.db]\nguest = "systemd"\npackages = ["postgresql"]\n'))
    assert spec.nodes[0].options == {"packages": ("postgresql",)}


def test_tiny_nodes_take_a_start_script_shape(tmp_path: Path) -> None:
    spec = parse_spec(write_spec(tmp_path, 'script = "test.py"\n[nodes.a]\nshape = "nixos-virtiofs"\n[nodes.b]\n'))
    assert [node.options for node in spec.nodes] == [{"shape": "nixos-virtiofs"}, {}]
def test_the_screen_example_has_a_graphical_node() -> None:
    spec = parse_spec(EXAMPLES / "screen.toml")
    assert [(node.name, node.options) for node in spec.nodes] == [("desk", {"graphics": True})]
    assert spec.script == (EXAMPLES / "screen.py").resolve()


def test_tiny_nodes_take_graphics(tmp_path: Path) -> None:
    spec = parse_spec(write_spec(tmp_path, 'script = "test.py"\n[nodes.desk]\ngraphics = true\n[nodes.b]\n'))
    assert [node.options for node in spec.nodes] == [{}, {"graphics": True}]


def test_systemd_nodes_take_a_start_script_shape(tmp_path: Path) -> None:
    text = 'script = "test.py"\n[nodes.a]\nguest = "systemd"\nshape = "nixos"\npackages = ["curl"]\n'
    spec = parse_spec(write_spec(tmp_path, text))
    assert spec.nodes[0].options == {"shape": "nixos", "packages": ("curl",)}


def test_start_command_paths_are_relative_to_the_spec(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        'script = "test.py"\n[nodes.a]\nstart_command = "QEMU_OPTS=-x ./result/bin/run-a-vm --flag"\n',
    )
    node = parse_spec(path).nodes[0]
    assert node.start_command == f"QEMU_OPTS=-x {tmp_path.resolve()}/result/bin/run-a-vm --flag"
    assert node.guest is None and node.vlans == ()


class FakeFlavour:
    """Records builds; writes a start script like a real builder would."""

    def __init__(self) -> None:
        self.builds: list[NodeBuild] = []

    def prepare(self, build: NodeBuild) -> tuple[str, Any]:
        return "image-1", "the image"

    def build(self, build: NodeBuild, image: Any) -> Path:
        assert image == "the image"
        self.builds.append(build)
        script = build.out_dir / "bin" / f"run-{build.name}-vm"
        script.parent.mkdir(parents=True)
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        return script


@pytest.fixture
def fake_flavour() -> Iterator[FakeFlavour]:
    fake = FakeFlavour()
    saved = dict(spec_module.GUEST_FLAVOURS)
    register_flavour(GuestFlavour("fake", fake.prepare, fake.build))
    try:
        yield fake
    finally:
        spec_module.GUEST_FLAVOURS.clear()
        spec_module.GUEST_FLAVOURS.update(saved)


def test_load_builds_each_node_once_and_numbers_them(tmp_path: Path, fake_flavour: FakeFlavour) -> None:
    (tmp_path / "page.html").write_text("hello")
    path = write_spec(
        tmp_path,
        'script = "test.py"\nglobal_timeout = 60\n'
        '[nodes.web]\nguest = "fake"\nvlans = [2]\nboot = "httpd"\n[nodes.web.files]\n"/srv/page.html" = "page.html"\n'
        '[nodes.app]\nguest = "fake"\n',
    )
    work = tmp_path / "work"
    config = load_spec(path, work_dir=work)
    assert [n.name for n in config.nodes] == ["app", "web"]
    assert config.vlans == [1, 2]
    assert config.global_timeout == 60.0
    assert config.source_path == path.resolve()
    assert config.name == "test"
    by_name = {b.name: b for b in fake_flavour.builds}
    assert by_name["app"].node_number == 1 and by_name["web"].node_number == 2
    assert by_name["web"].hosts == (("app", 1, 1), ("web", 2, 2))
    assert by_name["web"].files == {"/srv/page.html": b"hello"}
    assert by_name["web"].boot == "httpd"
    for node in config.nodes:
        assert Path(node.start_command).is_file()
        assert node.start_command.endswith(f"/bin/run-{node.name}-vm")

    # Unchanged: nothing is rebuilt.  A changed file: only its node is.
    load_spec(path, work_dir=work)
    assert len(fake_flavour.builds) == 2
    (tmp_path / "page.html").write_text("changed")
    load_spec(path, work_dir=work)
    assert [b.name for b in fake_flavour.builds[2:]] == ["web"]


def test_an_interrupted_build_is_redone(tmp_path: Path, fake_flavour: FakeFlavour) -> None:
    path = write_spec(tmp_path, 'script = "test.py"\n[nodes.a]\nguest = "fake"\n')
    work = tmp_path / "work"
    load_spec(path, work_dir=work)
    (marker,) = work.glob("nodes/a-*/.complete")
    marker.unlink()  # as if the process died before finishing
    load_spec(path, work_dir=work)
    assert len(fake_flavour.builds) == 2


def test_build_failures_become_config_errors(tmp_path: Path) -> None:
    def prepare(build: NodeBuild) -> tuple[str, Any]:
        raise RuntimeError("no network to fetch packages")

    saved = dict(spec_module.GUEST_FLAVOURS)
    register_flavour(GuestFlavour("broken", prepare, lambda build, image: Path("/")))
    try:
        path = write_spec(tmp_path, 'script = "test.py"\n[nodes.a]\nguest = "broken"\n')
        with pytest.raises(ConfigError, match="node a: cannot build the broken guest: no network"):
            load_spec(path, work_dir=tmp_path / "work")
    finally:
        spec_module.GUEST_FLAVOURS.clear()
        spec_module.GUEST_FLAVOURS.update(saved)


def test_start_command_nodes_need_no_build(tmp_path: Path) -> None:
    runner = tmp_path / "run-a-vm"
    runner.write_text("#!/bin/sh\n")
    os.chmod(runner, 0o755)
    path = write_spec(tmp_path, 'script = "test.py"\n[nodes.a]\nstart_command = "./run-a-vm"\nvlans = [3]\n')
    config = load_spec(path, work_dir=tmp_path / "work")
    assert config.nodes[0].start_command == str(runner.resolve())
    assert config.vlans == [3]
    assert not (tmp_path / "work").exists()


def test_work_dirs_of_deleted_specs_are_pruned(
    tmp_path: Path, fake_flavour: FakeFlavour, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMTUI_CACHE_DIR", str(tmp_path / "cache"))
    specs = tmp_path / "cache" / "specs"
    orphan = specs / "gone-000000000000"
    recent_orphan = specs / "just-gone-000000000000"
    for directory in (orphan, recent_orphan):
        directory.mkdir(parents=True)
        (directory / ".spec-path").write_text(str(tmp_path / "deleted.toml"))
    os.utime(orphan, (0, 0))
    path = write_spec(tmp_path, 'script = "test.py"\n[nodes.a]\nguest = "fake"\n')
    load_spec(path)
    assert not orphan.exists()
    assert recent_orphan.exists()  # maybe still in use by a run that just started
    (live,) = [d for d in specs.iterdir() if d.name.startswith("test-")]
    assert (live / ".spec-path").read_text() == str(path.resolve())
    load_spec(path)
    assert live.exists()
