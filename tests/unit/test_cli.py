"""Bad input at the command line: one line on stderr, exit 2, no traceback.

Nothing here boots a VM: every case fails before the first machine starts.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import tempfile
from pathlib import Path

import pytest

from vmtui import cli


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vmtui: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(autouse=True)
def no_driver_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI installs process-wide signal handlers; not in the test runner.
    monkeypatch.setattr("driver.processes.install_exit_handlers", lambda: None)
    for name in ("startScripts", "vmNames", "vmStartScripts", "testScript", "vlans", "globalTimeout", "logLevel"):
        monkeypatch.delenv(name, raising=False)


def spec_dir(tmp_path: Path, script: str, extra_nodes: str = "") -> Path:
    """A spec whose nodes use a start script of their own (no guest build)."""
    runner = tmp_path / "run-machine-vm"
    runner.write_text("#!/bin/sh\nexit 1\n")
    runner.chmod(0o755)
    (tmp_path / "test.py").write_text(script)
    spec = tmp_path / "test.toml"
    spec.write_text(
        'script = "test.py"\n[nodes.machine]\nstart_command = "./run-machine-vm"\n' + extra_nodes
    )
    return spec


def test_missing_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run([], capsys)
    assert code == 2
    assert_one_line(err, "no test given")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["run", "--headless", str(tmp_path / "absent.toml")], capsys)
    assert code == 2
    assert_one_line(err, "absent.toml", "no such file")


def test_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["--frobnicate", "demo"], capsys)
    assert code == 2
    assert_one_line(err, "--frobnicate")


def test_a_script_alone_is_not_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "test.py"
    script.write_text("start_all()\n")
    code, err = run([str(script)], capsys)
    assert code == 2
    assert_one_line(err, "not a test")


def test_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "test.toml"
    spec.write_text('script = "test.py"\n')
    code, err = run(["run", "--headless", str(spec)], capsys)
    assert code == 2
    assert_one_line(err, str(spec))


def test_syntax_error_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_dir(tmp_path, "machine.start()\nif True\n    pass\n")
    code, err = run(["run", "--headless", str(spec)], capsys)
    assert code == 2
    assert_one_line(err, f"{tmp_path / 'test.py'}:2:", "syntax error")


def test_unknown_node_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_dir(tmp_path, "start_all()\nmachine.succeed('true')\nmachien.succeed('true')\n")
    code, err = run(["run", "--headless", str(spec)], capsys)
    assert code == 2
    assert_one_line(err, "test.py:3", "'machien'", "nodes: machine")


def test_missing_vde_switch(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_dir(tmp_path, "start_all()\n")
    spec.write_text(spec.read_text() + "vlans = [1]\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, err = run(["run", "--headless", str(spec)], capsys)
    assert code == 2
    assert_one_line(err, "vde_switch not found")


def test_missing_qemu_for_built_in_guests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from driver import spec as spec_module
    from driver.spec import GuestFlavour, NodeBuild

    def build(node: NodeBuild, image: object) -> Path:
        script = node.out_dir / "bin" / f"run-{node.name}-vm"
        script.parent.mkdir(parents=True)
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
        return script

    monkeypatch.setitem(spec_module.GUEST_FLAVOURS, "tiny", GuestFlavour("tiny", lambda node: ("k", None), build))
    monkeypatch.setenv("VMTUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "test.py").write_text("start_all()\n")
    spec = tmp_path / "test.toml"
    spec.write_text('script = "test.py"\n[nodes.machine]\n')
    code, err = run(["run", "--headless", str(spec)], capsys)
    assert code == 2
    assert_one_line(err, "qemu-system-x86_64 not found")


def test_output_directory_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_dir(tmp_path, "start_all()\n")
    code, err = run(["run", "--headless", "-o", str(tmp_path / "absent"), str(spec)], capsys)
    assert code == 2
    assert_one_line(err, "output directory")


def test_global_timeout_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_dir(tmp_path, "start_all()\n")
    code, err = run(["run", "--headless", "--global-timeout", "0", str(spec)], capsys)
    assert code == 2
    assert_one_line(err, "--global-timeout")


def test_driver_contract_without_a_test(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["driver"], capsys)
    assert code == 2
    assert_one_line(err, "no test given")


def test_driver_contract_with_a_missing_start_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "test-script"
    script.write_text("start_all()\n")
    monkeypatch.setenv("startScripts", str(tmp_path / "run-gone-vm"))
    monkeypatch.setenv("testScript", str(script))
    code, err = run([], capsys)
    assert code == 2
    assert "Traceback" not in err and "run-gone-vm" in err


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--config", "x.json"], {}, True),
        (["--start-scripts=a"], {}, True),
        (["-I"], {"startScripts": "/x/run-a-vm"}, True),
        ([], {"testScript": "/x/t.py"}, True),
        (["demo"], {"startScripts": "/x/run-a-vm"}, False),
        (["demo"], {}, False),
        ([], {}, False),
    ],
)
def test_what_counts_as_the_driver_contract(
    args: list[str], env: dict[str, str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli._looks_like_driver_contract(args) is expected


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    assert "vmtui [run] TARGET" in capsys.readouterr().out


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"vmtui {importlib.metadata.version('vmtui')}"


def test_replay_bad_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    from vmtui.cli import main

    assert main(["replay", str(tmp_path / "missing.log")]) == 2
    assert main(["replay"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such file" in err[0]
    assert err[1].startswith("vmtui: ") and "path" in err[1]
    assert not list(Path(tempfile.gettempdir()).glob("vmtui-replay-*"))


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.log", b""), ("blank.log", b"\n  \n"), ("empty.xml.gz", gzip.compress(b""))],
)
def test_replay_of_an_empty_log_is_an_error_not_a_blank_screen(tmp_path, capsys, name: str, content: bytes) -> None:
    from vmtui.cli import main

    log = tmp_path / name
    log.write_bytes(content)
    assert main(["replay", str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vmtui: {log}: empty, nothing to replay"]
