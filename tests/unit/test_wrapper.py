"""driver.wrapper: built NixOS drivers of every era, and the drop-in contract."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nixfixtures as nf  # noqa: E402

from driver.errors import ConfigError  # noqa: E402
from driver.wrapper import (  # noqa: E402
    config_from_driver_args,
    is_driver_program_name,
    load_driver_result,
    parse_driver_args,
    parse_wrapper_text,
    read_driver_result,
)

SCRIPT = 'start_all()\nclient.succeed("curl -f http://server:3000/todos.json")\n'


@pytest.fixture
def store(tmp_path: Path) -> nf.FakeStore:
    return nf.FakeStore(tmp_path / "store")


def _two_nodes(store: nf.FakeStore) -> dict[str, Path]:
    return {"client": store.write_start_stub("client"), "server": store.write_start_stub("server")}


def _script_of(command: str) -> str:
    return shlex.split(command)[0]


# -- the fixtures are what bash and makeWrapper really produce ----------------


@pytest.mark.parametrize(
    "value",
    ["plain", "", "with space", "it's", "a'b'c", "tab\there", "two\nlines", "esc\x1b[", "q'\nx", "a\\b\n"],
)
def test_bash_quote_is_bash_at_q(value: str) -> None:
    real = subprocess.run(
        ["bash", "-c", 'printf %s "${1@Q}"', "bash", value], capture_output=True, text=True, check=True
    )
    assert nf.bash_quote(value) == real.stdout


@pytest.mark.parametrize("style", nf.WRAPPER_STYLES)
def test_parser_reads_the_wrapper_the_way_bash_runs_it(tmp_path: Path, style: str) -> None:
    # The wrapped program dumps the argv and environment bash really gives it.
    dumper = tmp_path / "dump"
    dumper.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, sys.stdout)\n"
    )
    dumper.chmod(0o755)
    exports = [
        ("startScripts", "/nix/store/aaa-vm/bin/run-a-vm /nix/store/bbb-vm/bin/run-b-vm"),
        ("testScript", "/tmp/it's here/test-script"),
        ("globalTimeout", "3600"),
        ("vlans", "1 2"),
        ("odd", "line one\nline two"),
    ]
    flags = ["--config", "/nix/store/ccc-driverConfiguration.json", "--log-level", "info", "--interactive"]
    text = nf.wrapper_text(exports=exports, program=str(dumper), flags=flags, style=style, bash="/bin/bash")
    wrapper = tmp_path / "nixos-test-driver"
    wrapper.write_text(text)
    real = json.loads(
        subprocess.run(["bash", str(wrapper)], capture_output=True, text=True, check=True).stdout
    )

    parsed_env, parsed_flags = parse_wrapper_text(text)
    assert parsed_flags == real["argv"] == flags
    for name, value in exports:
        assert parsed_env[name] == real["env"][name] == value


# -- each era, read from a built driver ---------------------------------------


@pytest.mark.parametrize("era", nf.ERAS)
def test_each_era_gives_nodes_vlans_script_and_timeout(store: nf.FakeStore, era: str) -> None:
    vms = _two_nodes(store)
    drv = nf.write_driver(
        store, era=era, name="todos", vms=vms, script=SCRIPT, vlans=[2, 1], global_timeout=900
    )
    config = load_driver_result(drv)

    assert [n.name for n in config.nodes] == ["client", "server"]
    assert [_script_of(n.start_command) for n in config.nodes] == [str(vms["client"]), str(vms["server"])]
    assert config.vlans == [1, 2]
    assert config.script_path.read_text() == SCRIPT
    assert config.global_timeout == (None if era == "env-var-2021" else 900)
    assert config.name == "todos"
    assert config.source_path == drv


@pytest.mark.parametrize("era", nf.ERAS)
def test_result_symlink_and_wrapper_path_are_accepted(store: nf.FakeStore, tmp_path: Path, era: str) -> None:
    drv = nf.write_driver(store, era=era, name="todos", vms=_two_nodes(store), script=SCRIPT)
    result = tmp_path / "result"
    result.symlink_to(drv)
    assert load_driver_result(result).name == "todos"
    assert [n.name for n in load_driver_result(result / "bin" / "nixos-test-driver").nodes] == [
        "client",
        "server",
    ]


@pytest.mark.parametrize("style", nf.WRAPPER_STYLES)
def test_every_makewrapper_style_reads_the_same(store: nf.FakeStore, style: str) -> None:
    drv = nf.write_driver(store, era="env-var", name="t", vms=_two_nodes(store), script=SCRIPT, style=style)
    invocation = read_driver_result(drv)
    assert [n.name for n in invocation.config.nodes] == ["client", "server"]
    assert invocation.interactive


def test_env_var_era_names_nodes_after_the_start_script(store: nf.FakeStore) -> None:
    # The node attribute is `server`, but its hostName (system.name) is `srv`:
    # the env-var era only passes the script, so the driver sees `srv`.
    vms = {"server": store.write_start_stub("srv"), "other": store.write_start_stub("other")}
    config = load_driver_result(nf.write_driver(store, era="env-var", name="t", vms=vms, script=SCRIPT))
    assert [n.name for n in config.nodes] == ["srv", "other"]
    # Later eras pass the node names explicitly (the JSON lists them sorted).
    config = load_driver_result(nf.write_driver(store, era="json-config", name="t", vms=vms, script=SCRIPT))
    assert [n.name for n in config.nodes] == ["other", "server"]


def test_a_start_script_not_named_run_x_vm_gives_machine(tmp_path: Path) -> None:
    script = tmp_path / "start-it"
    script.write_text("#!/bin/sh\n")
    test = tmp_path / "t.py"
    test.write_text("start_all()\n")
    config = config_from_driver_args([], {"startScripts": str(script), "testScript": str(test)})
    assert config is not None and [n.name for n in config.nodes] == ["machine"]


def test_interactive_and_ssh_backdoor_flags_are_reported(store: nf.FakeStore) -> None:
    drv = nf.write_driver(
        store, era="env-var", name="t", vms=_two_nodes(store), script=SCRIPT, ssh_backdoor=True
    )
    invocation = read_driver_result(drv)
    assert invocation.interactive and invocation.ssh_backdoor
    assert any("SSH backdoor" in note for note in invocation.config.notes)
    drv = nf.write_driver(
        store, era="json-config", name="t", vms=_two_nodes(store), script=SCRIPT, interactive=False
    )
    invocation = read_driver_result(drv)
    assert not invocation.interactive and invocation.log_level == "info" and invocation.era == "json-config"


def test_json_era_accepts_an_iso_duration_timeout(store: nf.FakeStore) -> None:
    drv = nf.write_driver(store, era="json-config", name="t", vms=_two_nodes(store), script=SCRIPT)
    json_path = next(p for p in store.root.iterdir() if p.name.endswith("driverConfiguration.json"))
    data = json.loads(json_path.read_text())
    data["global_timeout"] = "PT1H30M"
    json_path.write_text(json.dumps(data))
    assert load_driver_result(drv).global_timeout == 5400


def test_missing_test_script_path_falls_back_to_drv_test_script(store: nf.FakeStore) -> None:
    drv = nf.write_driver(store, era="env-var", name="t", vms=_two_nodes(store), script=SCRIPT)
    wrapper = drv / "bin" / "nixos-test-driver"
    wrapper.write_text(wrapper.read_text().replace(str(drv / "test-script"), "/nix/store/gone-test-script"))
    assert load_driver_result(drv).script_path == drv / "test-script"


# -- containers and malformed input -------------------------------------------


@pytest.mark.parametrize("era", ["nspawn", "json-config"])
def test_container_nodes_are_refused_by_name(store: nf.FakeStore, era: str) -> None:
    containers = {
        "db": store.write_start_stub("db", salt="c"),
        "web": store.write_start_stub("web", salt="c"),
    }
    drv = nf.write_driver(
        store, era=era, name="t", vms=_two_nodes(store), script=SCRIPT, containers=containers
    )
    with pytest.raises(ConfigError, match=r"container nodes.*db, web"):
        load_driver_result(drv)


def _malformed(store: nf.FakeStore, text: str) -> Path:
    drv = nf.write_driver(store, era="env-var", name="t", vms=_two_nodes(store), script=SCRIPT)
    (drv / "bin" / "nixos-test-driver").write_text(text)
    return drv


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#! /bin/bash -e\nexport startScripts='/x/run-a-vm'\n", "no exec line"),
        ('#! /bin/bash -e\nexport testScript=\'/x\nexec -a "$0" "/p"\n', "unterminated single quote"),
        ('#! /bin/bash -e\nexec -a "$0" "/p" --vlans "$HOME" "$@"\n', "cannot evaluate"),
        ('#! /bin/bash -e\nexec -a "$0" "/p" --frobnicate "$@"\n', "unrecognized arguments: --frobnicate"),
        ('#! /bin/bash -e\nexec -a "$0" "/p" "$@"\n', "does not look like a NixOS test driver"),
        (
            "#! /bin/bash -e\nexport startScripts='/x/run-a-vm'\nexport testScript=/t\nexport vlans='one'\nexec /p\n",
            "VLAN 'one'",
        ),
        ('#! /bin/bash -e\nexport startScripts=\'/x/run-a-vm\'\nexec "/p" "$@"\n', "no test script"),
        (
            "#! /bin/bash -e\nexport vmNames='a b'\nexport vmStartScripts='/x/run-a-vm'\nexport testScript=/t\nexec /p\n",
            "2 VM names",
        ),
        (
            "#! /bin/bash -e\nexport startScripts='/x/run-a-vm /y/run-a-vm'\nexport testScript=/t\nexec /p\n",
            "same node name 'a'",
        ),
        (
            "#! /bin/bash -e\nexport startScripts=/x/run-a-vm\nexport testScript=/t\nexport globalTimeout=soon\nexec /p\n",
            "globalTimeout 'soon'",
        ),
    ],
)
def test_malformed_wrappers_give_one_clear_line(store: nf.FakeStore, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_driver_result(_malformed(store, text))
    assert "\n" not in str(info.value)


def test_garbage_collected_start_script_is_named(store: nf.FakeStore) -> None:
    vms = _two_nodes(store)
    drv = nf.write_driver(store, era="json-config", name="t", vms=vms, script=SCRIPT)
    vms["server"].unlink()
    with pytest.raises(ConfigError, match=r"node 'server': start script .*run-server-vm does not exist"):
        load_driver_result(drv)


def test_bad_json_configs(store: nf.FakeStore) -> None:
    drv = nf.write_driver(store, era="json-config", name="t", vms=_two_nodes(store), script=SCRIPT)
    json_path = next(p for p in store.root.iterdir() if p.name.endswith("driverConfiguration.json"))
    json_path.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_driver_result(drv)
    json_path.write_text(json.dumps({"vms": {}, "containers": {}, "vlans": []}))
    with pytest.raises(ConfigError, match="'test_script' must be a path"):
        load_driver_result(drv)
    json_path.write_text(json.dumps({"vms": {"a": {"name": "a"}}, "test_script": "/t"}))
    with pytest.raises(ConfigError, match="vms.a needs a 'start_script'"):
        load_driver_result(drv)
    json_path.unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        load_driver_result(drv)


def test_paths_that_are_not_drivers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_driver_result(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no bin/nixos-test-driver"):
        load_driver_result(tmp_path)
    run_output = tmp_path / "vm-test-run-todos"
    run_output.mkdir()
    (run_output / "test-results.xml").write_text("<testsuites/>")
    with pytest.raises(ConfigError, match="output of a test run"):
        load_driver_result(run_output)
    binary = tmp_path / "nixos-test-driver"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\0\0\0")
    with pytest.raises(ConfigError, match="binary wrapper"):
        load_driver_result(binary)


# -- which program in bin/ is the driver ----------------------------------------


def _decoy(drv: Path, name: str) -> Path:
    """A program in the driver's bin/ that is not its wrapper."""
    path = drv / "bin" / name
    path.write_text("#!/bin/sh\necho not the driver\n")
    path.chmod(0o755)
    return path


def test_run_nixos_test_is_found_by_scanning_bin(store: nf.FakeStore) -> None:
    drv = nf.write_driver(
        store, era="json-config", name="todos", vms=_two_nodes(store), script=SCRIPT, program="run-nixos-test"
    )
    invocation = read_driver_result(drv)
    assert [n.name for n in invocation.config.nodes] == ["client", "server"]
    assert str(drv / "bin" / "run-nixos-test") in invocation.config.notes[0]


def test_another_program_name_is_named_in_the_error_and_read_through_its_path(store: nf.FakeStore) -> None:
    drv = nf.write_driver(
        store, era="env-var", name="todos", vms=_two_nodes(store), script=SCRIPT, program="run-todos"
    )
    _decoy(drv, "helper")
    holds = r"no bin/nixos-test-driver or bin/run-nixos-test \(its bin/ holds helper, run-todos\)"
    with pytest.raises(ConfigError, match=holds):
        load_driver_result(drv)
    assert [n.name for n in load_driver_result(drv / "bin" / "run-todos").nodes] == ["client", "server"]


def test_among_several_programs_a_known_name_wins(store: nf.FakeStore) -> None:
    drv = nf.write_driver(
        store, era="json-config", name="todos", vms=_two_nodes(store), script=SCRIPT, program="run-nixos-test"
    )
    _decoy(drv, "helper")
    _decoy(drv, "aaa")
    assert [n.name for n in load_driver_result(drv).nodes] == ["client", "server"]


def test_main_program_names_the_wrapper(store: nf.FakeStore) -> None:
    # bin/nixos-test-driver is there but is not the wrapper: only meta.mainProgram says so.
    drv = nf.write_driver(
        store, era="json-config", name="todos", vms=_two_nodes(store), script=SCRIPT, program="run-nixos-test"
    )
    _decoy(drv, "nixos-test-driver")
    with pytest.raises(ConfigError, match="bin/nixos-test-driver: no exec line"):
        read_driver_result(drv)
    invocation = read_driver_result(drv, main_program="run-nixos-test")
    assert [n.name for n in invocation.config.nodes] == ["client", "server"]
    with pytest.raises(ConfigError, match="meta.mainProgram is 'run-tests', but it has no bin/run-tests"):
        read_driver_result(drv, main_program="run-tests")


def test_a_package_that_is_not_a_driver_is_named_as_such(tmp_path: Path) -> None:
    drv = tmp_path / "hello"
    (drv / "bin").mkdir(parents=True)
    _decoy(drv, "hello")
    (drv / "bin" / ".hello-wrapped").symlink_to(drv / "bin" / "hello")
    with pytest.raises(ConfigError, match=r"no bin/nixos-test-driver or bin/run-nixos-test \(its bin/ holds hello\)"):
        load_driver_result(drv)


# -- vmtui as the driver program (drop-in) ------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for host in ("client", "server"):
        p = tmp_path / f"vm-{host}" / "bin" / f"run-{host}-vm"
        p.parent.mkdir(parents=True)
        p.write_text("#!/bin/sh\n")
        paths[host] = str(p)
    script = tmp_path / "test-script"
    script.write_text(SCRIPT)
    paths["script"] = str(script)
    return paths


def test_drop_in_env_var_era_without_vlans(files: dict[str, str]) -> None:
    # The NixOS driver crashes when `vlans` is unset; vmtui accepts it.
    env = {"startScripts": f"{files['client']} {files['server']}", "testScript": files["script"]}
    config = config_from_driver_args(["--interactive"], env)
    assert config is not None
    assert [n.name for n in config.nodes] == ["client", "server"] and config.vlans == []
    assert config.global_timeout is None


def test_drop_in_flags_of_each_era(files: dict[str, str], tmp_path: Path) -> None:
    config = config_from_driver_args(
        [
            "--start-scripts",
            files["client"],
            files["server"],
            "--vlans",
            "1",
            "1",
            "--global-timeout",
            "60",
            "--",
            files["script"],
        ],
        {},
    )
    assert config is not None and [n.name for n in config.nodes] == ["client", "server"]
    assert config.vlans == [1] and config.global_timeout == 60 and str(config.script_path) == files["script"]

    invocation = parse_driver_args(
        [
            "--vm-names",
            "c",
            "s",
            "--vm-start-scripts",
            files["client"],
            files["server"],
            "-K",
            "-o",
            str(tmp_path),
            "--junit-xml",
            "j.xml",
            files["script"],
        ],
        {},
    )
    assert invocation is not None and invocation.era == "nspawn"
    assert [n.name for n in invocation.config.nodes] == ["c", "s"]
    assert (
        invocation.keep_state and invocation.output_dir == tmp_path and invocation.junit_xml == Path("j.xml")
    )

    config_file = tmp_path / "driverConfiguration.json"
    config_file.write_text(json.dumps({
        "vms": {"server": {"name": "server", "start_script": files["server"]}},
        "containers": {}, "vlans": [1], "global_timeout": 3600,
        "enable_ssh_backdoor": False, "test_script": files["script"],
    }))  # fmt: skip
    invocation = parse_driver_args(["-c", str(config_file), "--keep-vm-state", "--debug-hook", "/attach"], {})
    assert invocation is not None and invocation.era == "json-config" and invocation.keep_state
    assert invocation.debug_hook_attach == "/attach"  # argparse prefix matching, as upstream
    assert [n.name for n in invocation.config.nodes] == ["server"]


def test_drop_in_flags_override_env(files: dict[str, str]) -> None:
    env = {"startScripts": files["client"], "testScript": "/nowhere", "vlans": "5", "globalTimeout": "10"}
    config = config_from_driver_args(["--vlans", "2", "--global-timeout", "20", files["script"]], env)
    assert config is not None and config.vlans == [2] and config.global_timeout == 20
    assert [n.name for n in config.nodes] == ["client"]


def test_drop_in_without_any_test_returns_none() -> None:
    assert config_from_driver_args([], {"PATH": "/bin"}) is None
    assert config_from_driver_args(["--interactive", "-K"], {}) is None


def test_drop_in_errors(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="test script /missing does not exist"):
        config_from_driver_args([], {"startScripts": files["client"], "testScript": "/missing"})
    with pytest.raises(ConfigError, match="log level 'loud'"):
        config_from_driver_args(["--log-level", "loud", files["script"]], {})
    with pytest.raises(ConfigError, match="container nodes.*box"):
        config_from_driver_args([files["script"]], {"containerNames": "box", "containerStartScripts": "/x"})


def test_driver_program_names() -> None:
    assert is_driver_program_name("/nix/store/x-nixos-test-driver-t/bin/nixos-test-driver")
    assert is_driver_program_name(".nixos-test-driver-wrapped")
    assert is_driver_program_name("/nix/store/x-vm-test-run-t/bin/run-nixos-test")
    assert is_driver_program_name(".run-nixos-test-wrapped")
    assert not is_driver_program_name("/usr/bin/vmtui")
