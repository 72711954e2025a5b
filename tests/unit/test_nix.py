"""vmtui.nix: building a test's driver with (a fake) Nix, and the errors a Nix user meets."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nixfixtures as nf  # noqa: E402

from driver.config import TestConfig as Config  # noqa: E402  (not collected as a test class)
from driver.errors import ConfigError  # noqa: E402
from driver.wrapper import load_driver_result  # noqa: E402
from vmtui.nix import (  # noqa: E402
    NixBuildCancelled,
    NixBuildFailed,
    NixError,
    NixEvalError,
    NixNotFound,
    NixTarget,
    NotANixOSTest,
    diff_configs,
    looks_like_nix_target,
    parse_nix_target,
    rebuild_and_diff,
    resolve_nix_target,
    trim_nix_error,
)

SCRIPT = "start_all()\nclient.succeed('true')\n"


class FakeNix:
    """A fake `nix-build`/`nix` on PATH, and a store for it to "build" into."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = nf.FakeStore(tmp_path / "store")
        self.bin = tmp_path / "bin"
        self.log = tmp_path / "nix-calls.jsonl"
        self.table: dict[str, dict[str, object]] = {}
        self.test_file = tmp_path / "todos.nix"
        self.test_file.write_text("{ pkgs ? import <nixpkgs> { } }: pkgs.testers.runNixOSTest { }\n")
        monkeypatch.setenv("PATH", nf.path_with(self.bin))

    def driver(
        self, *, era: str = "json-config", script: str = SCRIPT, server_salt: str = "", **kw: object
    ) -> Path:
        vms = {
            "client": self.store.write_start_stub("client"),
            "server": self.store.write_start_stub("server", salt=server_salt),
        }
        return nf.write_driver(
            self.store, era=era, name="todos", vms=vms, script=script, salt=server_salt, **kw
        )  # type: ignore[arg-type]

    def answer(self, key: str, entry: dict[str, object]) -> None:
        self.table[key] = entry
        nf.write_fake_nix(self.bin, self.table, self.log)

    def calls(self, kind: str | None = "build") -> list[dict[str, object]]:
        return nf.nix_calls(self.log, kind)

    def driver_named(self, program: str) -> Path:
        """A driver whose wrapper is bin/<program>, beside a bin/nixos-test-driver that is not one."""
        drv = self.driver(program=program, server_salt=program)
        decoy = drv / "bin" / "nixos-test-driver"
        decoy.write_text("#!/bin/sh\necho a helper, not the driver\n")
        decoy.chmod(0o755)
        return drv


@pytest.fixture
def nix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNix:
    return FakeNix(tmp_path, monkeypatch)


# -- targets --------------------------------------------------------------------


def test_targets(tmp_path: Path) -> None:
    test = tmp_path / "t.nix"
    test.write_text("{}")
    assert parse_nix_target(str(test)) == NixTarget(file=test)
    assert parse_nix_target(str(test), "tests.todos") == NixTarget(file=test, attr="tests.todos")
    assert parse_nix_target(".#checks.x86_64-linux.todos") == NixTarget(
        flake_ref=".#checks.x86_64-linux.todos"
    )
    assert (
        looks_like_nix_target(".#foo")
        and looks_like_nix_target("x.nix")
        and not looks_like_nix_target("./result")
    )
    for bad, message in [
        (str(tmp_path / "missing.nix"), "does not exist"),
        (".#", "name the test after '#'"),
        ("./result", "neither a .nix file nor a flake"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_nix_target(bad)
    with pytest.raises(ConfigError, match="-A applies to .nix files"):
        parse_nix_target(".#foo", "bar")


# -- successful builds ------------------------------------------------------------


def test_nix_file_builds_driver_interactive_and_streams_progress(nix: FakeNix) -> None:
    drv = nix.driver()
    progress = ["these 3 derivations will be built:", f"building '{nix.store.root}/x-vm.drv'..."]
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(drv, stderr="\n".join(progress)))
    seen: list[str] = []
    config = resolve_nix_target(str(nix.test_file), on_progress=seen.append)

    assert seen == progress
    assert [n.name for n in config.nodes] == ["client", "server"]
    assert config.script_path.read_text() == SCRIPT
    assert config.source_path == nix.test_file and config.name == "todos"
    [call] = nix.calls()
    assert call["argv"][:4] == [str(nix.test_file), "-A", "driverInteractive", "--out-link"]
    # The out-link is a GC root for the session: the driver cannot be
    # collected while vmtui runs.
    out_link = Path(call["argv"][4])
    assert out_link.parent.name.startswith("vmtui-gcroots-")
    assert out_link.is_symlink() and out_link.resolve() == drv.resolve()


def test_every_build_gets_its_own_gc_root(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(nix.driver()))
    resolve_nix_target(str(nix.test_file))
    resolve_nix_target(str(nix.test_file))  # a rebuild on save: the first root stays
    links = [Path(call["argv"][4]) for call in nix.calls()]
    assert len(set(links)) == 2 and all(link.is_symlink() for link in links)


@pytest.mark.parametrize(
    ("attr", "built"), [("tests.todos", "tests.todos.driverInteractive"), ("todos.driver", "todos.driver")]
)
def test_attribute_selection_like_nix_build(nix: FakeNix, attr: str, built: str) -> None:
    nix.answer(f"{nix.test_file}#{built}", nf.answer(nix.driver()))
    resolve_nix_target(str(nix.test_file), attr=attr)
    assert nix.calls()[0]["argv"][:3] == [str(nix.test_file), "-A", built]


def test_flake_reference(nix: FakeNix) -> None:
    ref = ".#checks.x86_64-linux.todos"
    nix.answer(f"{ref}.driverInteractive", nf.answer(nix.driver(era="env-var")))
    config = resolve_nix_target(ref)
    assert [n.name for n in config.nodes] == ["client", "server"]
    [call] = nix.calls()
    assert call["program"] == "nix"
    assert call["argv"] == [
        "--extra-experimental-features", "nix-command flakes",
        "build", f"{ref}.driverInteractive", "--out-link", call["argv"][5], "--json", "-L",
    ]  # fmt: skip
    assert Path(call["argv"][5]).is_symlink()


@pytest.mark.parametrize("nix_version", ["2.2x", "2.8"])
def test_test_module_is_wrapped_in_run_nixos_test(nix: FakeNix, nix_version: str) -> None:
    refusal = nf.NEEDS_ARGUMENTS if nix_version == "2.2x" else nf.needs_arguments_nix28(nix.test_file)
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=refusal))
    nix.answer("expr:driverInteractive", nf.answer(nix.driver()))
    seen: list[str] = []
    config = resolve_nix_target(str(nix.test_file), on_progress=seen.append)
    assert [n.name for n in config.nodes] == ["client", "server"]
    second = nix.calls()[1]["argv"]
    assert isinstance(second, list) and second[0] == "--out-link" and second[2:5] == ["-E", second[3], "-A"]
    assert f'(import (/. + "{nix.test_file}"))' in second[3] and "runNixOSTest" in second[3]
    assert any("test module" in line for line in seen)


# -- the driver's program: meta.mainProgram ----------------------------------------


def test_main_program_of_a_nix_file_picks_the_wrapper(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(nix.driver_named("run-nixos-test")))
    nix.answer(f"{nix.test_file}#driverInteractive.meta.mainProgram", nf.evaluation("run-nixos-test"))
    config = resolve_nix_target(str(nix.test_file))
    assert [n.name for n in config.nodes] == ["client", "server"]
    assert "its meta.mainProgram: run-nixos-test" in config.notes
    [build, evaluation] = nix.calls(kind=None)
    assert build["program"] == "nix-build"
    assert evaluation["program"] == "nix-instantiate"
    assert evaluation["argv"] == [
        "--eval", "--json", str(nix.test_file), "-A", "driverInteractive.meta.mainProgram",
    ]  # fmt: skip


def test_main_program_of_a_flake(nix: FakeNix) -> None:
    ref = ".#checks.x86_64-linux.todos"
    nix.answer(f"{ref}.driverInteractive", nf.answer(nix.driver_named("run-nixos-test")))
    nix.answer(f"{ref}.driverInteractive.meta.mainProgram", nf.evaluation("run-nixos-test"))
    config = resolve_nix_target(ref)
    assert [n.name for n in config.nodes] == ["client", "server"]
    [evaluation] = nix.calls(kind="eval")
    assert evaluation["argv"] == [
        "--extra-experimental-features", "nix-command flakes",
        "eval", "--raw", f"{ref}.driverInteractive.meta.mainProgram",
    ]  # fmt: skip


def test_main_program_of_a_test_module_is_evaluated_the_way_it_was_built(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.NEEDS_ARGUMENTS))
    nix.answer("expr:driverInteractive", nf.answer(nix.driver_named("run-nixos-test")))
    nix.answer("expr:driverInteractive.meta.mainProgram", nf.evaluation("run-nixos-test"))
    config = resolve_nix_target(str(nix.test_file))
    assert [n.name for n in config.nodes] == ["client", "server"]
    [evaluation] = nix.calls(kind="eval")
    built = nix.calls()[1]["argv"]
    assert evaluation["argv"][:4] == ["--eval", "--json", "-E", built[3]]


def test_without_main_program_bin_is_scanned(nix: FakeNix) -> None:
    # An older driver derivation has no meta.mainProgram: Nix fails, vmtui scans bin/.
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(nix.driver(program="run-nixos-test")))
    config = resolve_nix_target(str(nix.test_file))
    assert [n.name for n in config.nodes] == ["client", "server"]
    assert len(nix.calls(kind="eval")) == 1
    assert not any("mainProgram" in note for note in config.notes)


@pytest.mark.parametrize("value", ["../../../bin/sh", "/bin/sh", "..", ""])
def test_a_main_program_that_is_not_a_name_in_bin_is_ignored(nix: FakeNix, value: str) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(nix.driver()))
    nix.answer(f"{nix.test_file}#driverInteractive.meta.mainProgram", nf.evaluation(value))
    config = resolve_nix_target(str(nix.test_file))
    assert [n.name for n in config.nodes] == ["client", "server"]


def test_a_main_program_the_driver_lacks_is_one_clear_error(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(nix.driver()))
    nix.answer(f"{nix.test_file}#driverInteractive.meta.mainProgram", nf.evaluation("run-nixos-test"))
    with pytest.raises(NixError, match="meta.mainProgram is 'run-nixos-test', but it has no bin/run-nixos-test"):
        resolve_nix_target(str(nix.test_file))


def test_a_flake_never_takes_the_test_module_retry(nix: FakeNix) -> None:
    nix.answer(".#t.driverInteractive", nf.answer(stderr=nf.NEEDS_ARGUMENTS))
    with pytest.raises(NixEvalError, match="cannot evaluate a function"):
        resolve_nix_target(".#t")


def test_a_function_called_without_arguments_elsewhere_is_an_eval_error(nix: FakeNix) -> None:
    # Only the file's own top-level function triggers the test-module retry.
    nix.answer(
        f"{nix.test_file}#driverInteractive",
        nf.answer(stderr=nf.needs_arguments_nix28(Path("/elsewhere.nix"))),
    )
    with pytest.raises(NixEvalError, match="anonymous function at /elsewhere.nix"):
        resolve_nix_target(str(nix.test_file))
    assert len(nix.calls()) == 1


# -- the errors a Nix user meets ------------------------------------------------------


def test_no_nix_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    test = tmp_path / "t.nix"
    test.write_text("{}")
    with pytest.raises(NixNotFound, match=r"needs `nix-build`.*not on PATH.*Install Nix.*vmtui ./result"):
        resolve_nix_target(str(test))
    with pytest.raises(NixNotFound, match=r"needs `nix` .*\.#t\.driverInteractive"):
        resolve_nix_target(".#t")


def test_evaluation_error_is_trimmed_to_the_error(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.EVAL_ERROR))
    with pytest.raises(NixEvalError) as info:
        resolve_nix_target(str(nix.test_file))
    message = str(info.value)
    assert message.startswith(f"Nix could not evaluate {nix.test_file}:\nerror: undefined variable 'pkgs'\n")
    assert "at /home/alice/todos/todos.nix:9:36:" in message and "pkgs.jq" in message
    assert "while evaluating" not in message and "show-trace" not in message


def test_evaluation_error_of_nix_2_8(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.EVAL_ERROR_NIX28))
    with pytest.raises(NixEvalError) as info:
        resolve_nix_target(str(nix.test_file))
    assert str(info.value) == (
        f"Nix could not evaluate {nix.test_file}:\n"
        "error: attribute 'cpus' missing\n\n"
        "       at /home/alice/todos/todos.nix:5:23:\n\n"
        "            4| in {\n"
        "            5|   driverInteractive = nodes.server.cpus + 1;\n"
        "             |                       ^\n"
        "            6| }"
    )


def test_build_failure_names_the_derivation_and_its_log(nix: FakeNix) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.BUILD_FAILURE))
    with pytest.raises(NixBuildFailed) as info:
        resolve_nix_target(str(nix.test_file))
    drv = f"/nix/store/{nf.DRV_HASH}-nixos-test-driver-todos.drv"
    assert info.value.drv == drv
    message = str(info.value)
    assert message.startswith(f"Nix could not build {drv}")
    assert '  testScriptWithTypes:52: error: Name "clinet" is not defined' in message
    assert '          clinet.succeed("curl' in message  # the log line's own indentation survives
    assert message.endswith(f"Full log: nix log {drv}")


@pytest.mark.parametrize("flake", [False, True])
def test_build_failure_of_nix_2_8_quotes_the_streamed_log(nix: FakeNix, flake: bool) -> None:
    if flake:
        nix.answer(
            ".#checks.x86_64-linux.todos.driverInteractive", nf.answer(stderr=nf.BUILD_FAILURE_FLAKE_NIX28)
        )
        target = ".#checks.x86_64-linux.todos"
    else:
        nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.BUILD_FAILURE_NIX28))
        target = str(nix.test_file)
    with pytest.raises(NixBuildFailed) as info:
        resolve_nix_target(target)
    drv = f"/nix/store/{nf.DRV_HASH}-nixos-test-driver-todos.drv"
    log = str(info.value).split("Last log lines:\n", 1)[1].rsplit("\nFull log", 1)[0]
    assert log.splitlines() == [
        "  Running type check",
        '  testScriptWithTypes:52: error: Name "clinet" is not defined  [name-defined]',
        "          clinet.succeed(1)",
    ]
    assert str(info.value).endswith(f"Full log: nix log {drv}")


@pytest.mark.parametrize("flake", [False, "2.2x", "2.8"])
def test_not_a_test(nix: FakeNix, flake: str | bool) -> None:
    if flake:
        wording = nf.NOT_A_TEST_FLAKE if flake == "2.2x" else nf.NOT_A_TEST_FLAKE_NIX28
        nix.answer(".#hello.driverInteractive", nf.answer(stderr=wording))
        target = ".#hello"
    else:
        nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.NOT_A_TEST))
        target = str(nix.test_file)
    with pytest.raises(
        NotANixOSTest, match=r"is not a NixOS test: (it|the flake) has no `(hello\.)?driverInteractive`"
    ):
        resolve_nix_target(target)


def test_container_nodes_are_named(nix: FakeNix) -> None:
    containers = {"box": nix.store.write_start_stub("box", salt="nspawn")}
    nix.answer(
        f"{nix.test_file}#driverInteractive", nf.answer(nix.driver(era="nspawn", containers=containers))
    )
    with pytest.raises(NixError, match=r"container nodes, which vmtui does not run: box"):
        resolve_nix_target(str(nix.test_file))


@pytest.mark.parametrize("wording", [nf.NO_NIXPKGS, nf.NO_NIXPKGS_NIX28])
def test_test_module_without_nixpkgs_in_nix_path(nix: FakeNix, wording: str) -> None:
    nix.answer(f"{nix.test_file}#driverInteractive", nf.answer(stderr=nf.NEEDS_ARGUMENTS))
    nix.answer("expr:driverInteractive", nf.answer(stderr=wording))
    with pytest.raises(NixEvalError, match=r"is a test module.*<nixpkgs> is not in NIX_PATH"):
        resolve_nix_target(str(nix.test_file))


def test_cancel_kills_nix(nix: FakeNix) -> None:
    nix.answer(
        f"{nix.test_file}#driverInteractive", nf.answer(stderr="building '/nix/store/x.drv'...", hang=True)
    )
    cancel = threading.Event()
    with pytest.raises(NixBuildCancelled):
        # Cancel as soon as Nix is seen to be running.
        resolve_nix_target(str(nix.test_file), on_progress=lambda _line: cancel.set(), cancel=cancel)
    pid = nix.calls()[0]["pid"]
    assert isinstance(pid, int)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_trim_of_old_one_line_errors() -> None:
    old = [
        "error: undefined variable 'pkgs' at /home/alice/t.nix:3:5",
        "(use '--show-trace' to show detailed location information)",
    ]
    assert trim_nix_error(old) == "error: undefined variable 'pkgs' at /home/alice/t.nix:3:5"
    assert trim_nix_error(["warning: something", "it broke"]) == "warning: something\nit broke"


# -- watch support ---------------------------------------------------------------------


def test_diff_script_only_and_node_changes(nix: FakeNix) -> None:
    base = load_driver_result(nix.driver())
    script_only = load_driver_result(nix.driver(script=SCRIPT + "server.succeed('true')\n"))
    change = diff_configs(base, script_only)
    assert change.script_changed and change.changed_nodes == [] and not change.vlans_changed

    server_changed = load_driver_result(nix.driver(server_salt="new-config"))
    change = diff_configs(base, server_changed)
    assert not change.script_changed and change.changed_nodes == ["server"] and change.anything_changed
    assert not diff_configs(base, load_driver_result(nix.driver())).anything_changed


def test_rebuild_and_diff_builds_again(nix: FakeNix) -> None:
    key = f"{nix.test_file}#driverInteractive"
    nix.answer(key, nf.answer(nix.driver()))
    old = resolve_nix_target(str(nix.test_file))
    nix.answer(key, nf.answer(nix.driver(server_salt="edited", script=SCRIPT + "# edited\n")))
    change = rebuild_and_diff(old, parse_nix_target(str(nix.test_file)))
    assert change.script_changed and change.changed_nodes == ["server"]
    assert change.new_config.source_path == nix.test_file
    assert len(nix.calls()) == 2


def test_rebuild_and_diff_rereads_a_result_link(nix: FakeNix, tmp_path: Path) -> None:
    result = tmp_path / "result"
    result.symlink_to(nix.driver())
    old = rebuild_and_diff(_empty_config(), result).new_config
    result.unlink()
    result.symlink_to(nix.driver(server_salt="rebuilt"))
    change = rebuild_and_diff(old, result)
    assert change.changed_nodes == ["server"] and not change.script_changed
    assert nix.calls() == []


def _empty_config() -> Config:
    return Config(nodes=[], vlans=[], script_path=Path("/nonexistent"))
