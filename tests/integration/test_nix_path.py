"""The Nix path end to end, through the `vmtui` command.

A fake `nix-build`/`nix` on PATH "builds" a driver output in a real wrapper
format whose start scripts are real tiny-guest start scripts; vmtui builds,
parses, boots the guests, runs the script and exits with the test's status.
The same with the real Nix of Debian's `nix-bin` when it can be fetched, and
vmtui as the drop-in driver program that a test's own wrapper execs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nixfixtures as nf  # noqa: E402

from driver.events import EventBus  # noqa: E402
from driver.guest.startscript import write_start_script  # noqa: E402
from driver.guest.tiny import TinyGuestImage  # noqa: E402
from driver.logger import Logger  # noqa: E402
from driver.machine import Machine  # noqa: E402
from driver.vlan import VLan  # noqa: E402
from vmtui.nix import resolve_nix_target  # noqa: E402

# Boots under TCG on a shared, loaded machine: be generous.
CONNECT_TIMEOUT = 600.0

VMTUI = str(Path(sys.executable).parent / "vmtui")

TODOS_JSON = b'[{"id": 1, "task": "boot the nodes", "done": true}, {"id": 2, "task": "fetch the list", "done": false}]\n'
HOSTS = [("client", 1, 1), ("server", 2, 1)]

PASSING_SCRIPT = """\
start_all()
server.wait_for_open_port(3000)
listing = client.succeed("wget -qO- http://server:3000/todos.json")
assert '"fetch the list"' in listing, listing
"""

FAILING_SCRIPT = """\
start_all()
server.wait_for_open_port(3000)
client.succeed("wget -qO- http://server:3000/missing.json")
"""


def run_vmtui(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the vmtui command; its whole process group dies if the test is interrupted."""
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def tiny_vms(store: nf.FakeStore, image: TinyGuestImage) -> dict[str, Path]:
    """The todos nodes as NixOS-style start scripts in `nixos-vm` store paths."""
    server = write_start_script(
        store.path("nixos-vm", salt="server"), name="server", node_number=2, vlans=[1], hosts=HOSTS, image=image,
        files={"/srv/www/todos.json": TODOS_JSON}, boot_script="httpd -p 3000 -h /srv/www\n",
    )  # fmt: skip
    client = write_start_script(
        store.path("nixos-vm", salt="client"),
        name="client",
        node_number=1,
        vlans=[1],
        hosts=HOSTS,
        image=image,
    )
    return {"client": client, "server": server}


@pytest.fixture
def fake_nix_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, nf.FakeStore]]:
    store = nf.FakeStore(tmp_path / "store")
    env = dict(os.environ, PATH=nf.path_with(tmp_path / "bin"))
    yield env, tmp_path, store


def _test_file(directory: Path) -> Path:
    test = directory / "todos.nix"
    test.write_text(
        "{ pkgs ? import <nixpkgs> { } }: pkgs.testers.runNixOSTest (import ./todos-module.nix)\n"
    )
    return test


# -- the Nix path's config boots, machine by machine ----------------------------------


@pytest.mark.vm
def test_nodes_of_a_nix_target_boot_and_talk(
    tmp_path_factory: pytest.TempPathFactory, tiny_image: TinyGuestImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below the CLI: what resolve_nix_target returns is what Machines boot.
    work = tmp_path_factory.mktemp("nixpath")
    store = nf.FakeStore(work / "store")
    drv = nf.write_driver(
        store, era="env-var", name="todos", vms=tiny_vms(store, tiny_image), script=PASSING_SCRIPT
    )
    test = _test_file(work)
    nf.write_fake_nix(work / "bin", {f"{test}#driverInteractive": nf.answer(drv)}, work / "calls.jsonl")
    monkeypatch.setenv("PATH", nf.path_with(work / "bin"))
    config = resolve_nix_target(str(test))
    assert [n.name for n in config.nodes] == ["client", "server"] and config.vlans == [1]

    bus = EventBus()
    logger = Logger(bus)
    run_dir = tmp_path_factory.mktemp("run")
    vlans = [VLan(nr, run_dir) for nr in config.vlans]
    machines = [
        Machine(
            node.name, node.start_command, bus=bus, logger=logger, tmp_dir=run_dir,
            out_dir=run_dir / "out", shared_dir=run_dir / "shared-xchg", connect_timeout=CONNECT_TIMEOUT,
        )
        for node in config.nodes
    ]  # fmt: skip
    client, server = machines
    try:
        for machine in machines:
            machine.start()
        server.wait_for_open_port(3000)
        assert '"fetch the list"' in client.succeed("wget -qO- http://server:3000/todos.json")
    finally:
        for machine in machines:
            machine.release()
        for vlan in vlans:
            vlan.stop()


# -- booting: build, parse, boot, run, exit status ---------------------------------


@pytest.mark.vm
def test_vmtui_headless_builds_a_nix_file_and_runs_it(fake_nix_env, tiny_image: TinyGuestImage) -> None:
    env, tmp, store = fake_nix_env
    drv = nf.write_driver(
        store, era="json-config", name="todos", vms=tiny_vms(store, tiny_image), script=PASSING_SCRIPT
    )
    test = _test_file(tmp)
    build_log = f"building '{store.root}/{nf.DRV_HASH}-nixos-test-driver-todos.drv'..."
    nf.write_fake_nix(
        tmp / "bin", {f"{test}#driverInteractive": nf.answer(drv, stderr=build_log)}, tmp / "calls.jsonl"
    )

    result = run_vmtui([VMTUI, "run", "--headless", str(test)], env=env)

    assert result.returncode == 0, result.stderr
    assert build_log in result.stderr  # Nix's progress reaches the terminal
    [call] = nf.nix_calls(tmp / "calls.jsonl")
    assert call["argv"][:4] == [str(test), "-A", "driverInteractive", "--out-link"]
    # The GC root lived as long as vmtui: it is gone once vmtui has exited.
    assert not Path(call["argv"][4]).parent.exists()


@pytest.mark.vm
def test_vmtui_as_the_drop_in_driver_of_a_built_test(fake_nix_env, tiny_image: TinyGuestImage) -> None:
    # The test's own wrapper (env-var era, the non-interactive `driver`) execs
    # its hidden program, which is vmtui's drop-in entry, as the overlay in
    # nix/test-driver.nix arranges: `vmtui driver "$@"`.
    env, tmp, store = fake_nix_env
    drv = nf.write_driver(
        store,
        era="env-var",
        name="todos",
        vms=tiny_vms(store, tiny_image),
        script=FAILING_SCRIPT,
        interactive=False,
    )
    hidden = drv / "bin" / ".nixos-test-driver-wrapped"
    hidden.unlink()
    hidden.write_text(f'#!/bin/sh\nexec "{VMTUI}" driver "$@"\n')
    hidden.chmod(0o755)
    out_dir = tmp / "out"
    out_dir.mkdir()

    result = run_vmtui(["bash", str(drv / "bin" / "nixos-test-driver"), "-o", str(out_dir)], env=env, cwd=tmp)

    assert result.returncode == 1, result.stderr  # the script failed: exit 1, as the NixOS driver
    assert "missing.json" in result.stderr


@pytest.mark.vm
def test_real_nix_builds_the_driver_and_vmtui_runs_it(tmp_path: Path, tiny_image: TinyGuestImage) -> None:
    nix_env = nf.debian_nix(tmp_path / "nix")
    if nix_env is None:
        pytest.skip("Debian's nix-bin could not be fetched (no apt lists or no network)")
    store = nf.FakeStore(tmp_path / "scripts")
    vms = tiny_vms(store, tiny_image)
    test = nf.write_real_nix_test(
        tmp_path,
        era="json-config",
        start_scripts={n: p.read_text() for n, p in vms.items()},
        script=PASSING_SCRIPT,
    )
    result = run_vmtui([VMTUI, "run", "--headless", str(test)], env=dict(os.environ, **nix_env))
    assert result.returncode == 0, result.stderr
    assert "building the driver of todos" in result.stderr


def test_real_nix_reads_the_drivers_main_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wrapper is bin/run-nixos-test, named only by meta.mainProgram; the
    # bin/nixos-test-driver beside it is not a driver.
    nix_env = nf.debian_nix(tmp_path / "nix")
    if nix_env is None:
        pytest.skip("Debian's nix-bin could not be fetched (no apt lists or no network)")
    for name, value in nix_env.items():
        monkeypatch.setenv(name, value)
    test = nf.write_real_nix_test(
        tmp_path,
        era="json-config",
        start_scripts={"server": "#!/bin/sh\n"},
        script=PASSING_SCRIPT,
        program="run-nixos-test",
    )
    config = resolve_nix_target(str(test))
    assert [n.name for n in config.nodes] == ["server"]
    assert "its meta.mainProgram: run-nixos-test" in config.notes


# -- the errors a Nix user meets, through the command ----------------------------------


def _expect_clear_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_no_nix_on_path(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert not any((Path(d) / "nix-build").exists() for d in env["PATH"].split(":"))
    result = run_vmtui([VMTUI, "run", "--headless", str(_test_file(tmp_path))], env=env)
    _expect_clear_error(result, "needs `nix-build`", "Install Nix", "vmtui ./result")


@pytest.mark.parametrize(
    ("stderr", "fragments"),
    [
        (nf.EVAL_ERROR, ["Nix could not evaluate", "error: undefined variable 'pkgs'", "todos.nix:9:36"]),
        (nf.BUILD_FAILURE, ["Nix could not build", 'Name "clinet" is not defined', "nix log /nix/store/"]),
        (nf.NOT_A_TEST, ["is not a NixOS test", "driverInteractive"]),
    ],
    ids=["evaluation-error", "build-failure", "not-a-test"],
)
def test_nix_failures(fake_nix_env, stderr: str, fragments: list[str]) -> None:
    env, tmp, _store = fake_nix_env
    test = _test_file(tmp)
    nf.write_fake_nix(
        tmp / "bin", {f"{test}#driverInteractive": nf.answer(stderr=stderr)}, tmp / "calls.jsonl"
    )
    _expect_clear_error(run_vmtui([VMTUI, "run", "--headless", str(test)], env=env), *fragments)


def test_container_nodes(fake_nix_env) -> None:
    env, tmp, store = fake_nix_env
    vms = {"client": store.write_start_stub("client")}
    containers = {"webcache": store.write_start_stub("webcache", salt="nspawn")}
    drv = nf.write_driver(
        store, era="nspawn", name="todos", vms=vms, script=PASSING_SCRIPT, containers=containers
    )
    test = _test_file(tmp)
    nf.write_fake_nix(tmp / "bin", {f"{test}#driverInteractive": nf.answer(drv)}, tmp / "calls.jsonl")
    _expect_clear_error(
        run_vmtui([VMTUI, "run", "--headless", str(test)], env=env), "container nodes", "webcache"
    )


def test_flake_reference_through_the_command(fake_nix_env) -> None:
    env, tmp, store = fake_nix_env
    ref = ".#checks.x86_64-linux.todos"
    nf.write_fake_nix(
        tmp / "bin", {f"{ref}.driverInteractive": nf.answer(stderr=nf.NOT_A_TEST_FLAKE)}, tmp / "calls.jsonl"
    )
    _expect_clear_error(run_vmtui([VMTUI, "run", "--headless", ref], env=env, cwd=tmp), "is not a NixOS test")
    [call] = nf.nix_calls(tmp / "calls.jsonl")
    assert call["program"] == "nix"


def test_real_nix_errors(tmp_path: Path) -> None:
    nix_env = nf.debian_nix(tmp_path / "nix")
    if nix_env is None:
        pytest.skip("Debian's nix-bin could not be fetched (no apt lists or no network)")
    env = dict(os.environ, **nix_env)
    broken = tmp_path / "broken"
    broken.mkdir()
    cases = {
        "eval": (tmp_path / "eval.nix", "{ }: let nodes = { }; in { driverInteractive = nodes.server; }\n"),
        "not-a-test": (tmp_path / "hello.nix", '{ }: { name = "hello"; }\n'),
        "module": (tmp_path / "module.nix", '{ pkgs, ... }: { nodes.server = { }; testScript = ""; }\n'),
    }
    for path, text in cases.values():
        path.write_text(text)
    build = nf.write_real_nix_test(
        broken, era="env-var", start_scripts={"server": "#!/bin/sh\n"}, script="", build_fails=True
    )

    def vmtui_on(path: Path) -> subprocess.CompletedProcess[str]:
        return run_vmtui([VMTUI, "run", "--headless", str(path)], env=env)

    _expect_clear_error(
        vmtui_on(cases["eval"][0]), "Nix could not evaluate", "attribute 'server' missing", "eval.nix:1:"
    )
    _expect_clear_error(vmtui_on(cases["not-a-test"][0]), "is not a NixOS test")
    _expect_clear_error(vmtui_on(cases["module"][0]), "is a test module", "<nixpkgs> is not in NIX_PATH")
    _expect_clear_error(
        vmtui_on(build), "Nix could not build", "nixos-test-driver-todos.drv", 'Name "clinet"', "nix log"
    )
