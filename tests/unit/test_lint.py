"""vmtui/lint.py: the script's own globals, pyflakes' findings, errors versus warnings."""

from __future__ import annotations

from pathlib import Path

from driver.config import NodeConfig, TestConfig
from driver.driver import Driver
from driver.events import EventBus
from vmtui.lint import DRIVER_GLOBALS, Severity, complete, errors_in, first_sentence, lint_script, script_globals


def _config(tmp_path: Path, *names: str) -> TestConfig:
    script = tmp_path / "test.py"
    script.write_text("start_all()\n")
    nodes = [NodeConfig(name=name, start_command="true") for name in names]
    return TestConfig(nodes=nodes, vlans=[1] if nodes else [], script_path=script, name="t")


def test_driver_globals_are_the_names_the_driver_really_gives_a_script(tmp_path: Path) -> None:
    with Driver(_config(tmp_path), bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as driver:
        assert set(driver.test_symbols()) == DRIVER_GLOBALS


def test_node_names_vlans_and_the_single_machine_alias_are_known(tmp_path: Path) -> None:
    names = script_globals(_config(tmp_path, "web-server"))
    assert {"web_server", "machine", "vlan1", "start_all"} <= names
    assert "machine" not in script_globals(_config(tmp_path, "a", "b"))


def test_a_misspelt_node_is_an_error_at_its_line(tmp_path: Path) -> None:
    known = script_globals(_config(tmp_path, "server", "client"))
    source = 'start_all()\nserver.wait_for_unit("x")\n\nsever.succeed("true")\n'
    found = lint_script(source, known)
    assert [(d.line, d.severity) for d in found] == [(4, Severity.ERROR)]
    assert "undefined name 'sever'" in found[0].message


def test_a_syntax_error_is_one_error_with_its_line() -> None:
    found = lint_script("start_all()\nif True\n    pass\n", DRIVER_GLOBALS)
    assert len(found) == 1
    assert found[0].line == 2 and found[0].severity is Severity.ERROR
    assert found[0].message.startswith("SyntaxError")


def test_an_unused_import_warns_without_holding_a_run_back() -> None:
    found = lint_script("import json\nstart_all()\n", DRIVER_GLOBALS)
    assert [d.severity for d in found] == [Severity.WARNING]
    assert errors_in(found) == []


def test_a_clean_script_has_nothing_to_say() -> None:
    source = 'start_all()\nwith subtest("x"):\n    for m in machines:\n        m.succeed("true")\n'
    assert lint_script(source, DRIVER_GLOBALS) == []


def test_after_a_node_name_the_machine_methods_complete_with_signature_and_doc() -> None:
    typed, found = complete('    server.wait_for_u', ["server", "client"], DRIVER_GLOBALS)
    assert typed == "wait_for_u"
    names = [c.insert for c in found]
    assert "wait_for_unit" in names and all(n.startswith("wait_for_u") for n in names)
    unit = next(c for c in found if c.insert == "wait_for_unit")
    assert unit.detail.startswith("wait_for_unit(unit: str")
    # The doc's first sentence, from the driver's own docstring.
    from driver.machine import Machine
    assert first_sentence(Machine.wait_for_unit.__doc__ or "") in unit.detail


def test_a_bare_word_completes_node_names_first_then_driver_globals() -> None:
    typed, found = complete("x = se", ["server", "client"], DRIVER_GLOBALS | {"server", "client"})
    assert typed == "se"
    assert [c.insert for c in found][:2] == ["server", "serial_stdout_off"]
    assert found[0].detail == "node"
