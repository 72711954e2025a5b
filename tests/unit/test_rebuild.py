"""`vmtui.rebuild`: sorting a rebuild's changes, and finding the target to rebuild."""

from __future__ import annotations

from pathlib import Path

from driver.config import NodeConfig
from driver.config import TestConfig as Config  # not "Test*": pytest would collect it
from vmtui.nix import NixTarget, diff_configs
from vmtui.rebuild import SourceRebuilder, _nix_target, sort_change


def _config(tmp_path: Path, nodes: dict[str, str], *, script: str = "s.py", vlans: list[int] | None = None) -> Config:
    path = tmp_path / script
    if not path.exists():
        path.write_text("pass\n")
    return Config(nodes=[NodeConfig(n, c) for n, c in nodes.items()], vlans=vlans or [1], script_path=path,
                  source_path=tmp_path / "test.nix")


def test_running_nodes_with_a_new_command_are_restartable_the_rest_needs_a_new_session(tmp_path: Path) -> None:
    old = _config(tmp_path, {"a": "run-a-1", "b": "run-b-1", "gone": "run-gone"})
    new = _config(tmp_path, {"a": "run-a-2", "b": "run-b-1", "fresh": "run-fresh"}, vlans=[1, 2])
    result = sort_change(old, diff_configs(old, new))
    assert result.restartable == {"a": "run-a-2"}
    assert result.needs_new_session == ["node fresh is new", "node gone was removed", "the VLANs are now [1, 2]"]
    assert not result.script_moved and not result.change.script_changed


def test_a_script_in_another_file_moved_and_changed_only_if_its_text_did(tmp_path: Path) -> None:
    old = _config(tmp_path, {"a": "run-a"})
    same_text = _config(tmp_path, {"a": "run-a"}, script="copy.py")
    result = sort_change(old, diff_configs(old, same_text))
    assert result.script_moved and not result.change.script_changed and result.restartable == {}


def test_the_target_of_a_file_keeps_its_attribute_and_a_flake_its_reference(tmp_path: Path) -> None:
    file_config = _config(tmp_path, {})
    file_config.notes.append(f"built /nix/store/x-driver from {tmp_path / 'test.nix'} -A todos")
    expected = NixTarget(file=tmp_path / "test.nix", attr="todos")
    assert _nix_target(file_config, tmp_path / "test.nix", "todos") == expected
    flake_config = _config(tmp_path, {})
    flake_config.notes.append("built /nix/store/x-driver from .#checks.x86_64-linux.todos")
    assert _nix_target(flake_config, tmp_path / "flake.nix", None) == NixTarget(flake_ref=".#checks.x86_64-linux.todos")


def test_only_a_nix_or_toml_source_besides_the_script_is_rebuilt(tmp_path: Path) -> None:
    config = _config(tmp_path, {})
    assert SourceRebuilder.for_config(config) is not None
    config.source_path = tmp_path / "nixos-test-driver-t"  # a built driver: nothing to rebuild
    assert SourceRebuilder.for_config(config) is None
    config.source_path = None
    assert SourceRebuilder.for_config(config) is None
