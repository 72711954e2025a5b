"""VLAN switches: a real vde_switch per VLAN (traffic between guests is in
test_machine.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from driver.errors import MachineError
from driver.vlan import VLan


def test_switch_starts_exports_and_stops(tmp_path: Path) -> None:
    vlan = VLan(3, tmp_path)
    try:
        assert vlan.socket_dir == tmp_path / "vde3.ctl"
        assert stat.S_ISSOCK((vlan.socket_dir / "ctl").stat().st_mode)
        assert stat.S_IMODE(vlan.socket_dir.stat().st_mode) == 0o700
        assert os.environ["QEMU_VDE_SOCKET_3"] == str(vlan.socket_dir)
        assert vlan.env == {"QEMU_VDE_SOCKET_3": str(vlan.socket_dir)}
        pid = vlan.pid
        assert pid is not None
        assert Path(f"/proc/{pid}/exe").resolve().name == "vde_switch"
    finally:
        vlan.stop()
    assert vlan.process is None
    assert "QEMU_VDE_SOCKET_3" not in os.environ
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    vlan.stop()  # idempotent


def test_several_vlans_side_by_side(tmp_path: Path) -> None:
    vlans = [VLan(nr, tmp_path) for nr in (1, 2)]
    try:
        assert {v.socket_dir.name for v in vlans} == {"vde1.ctl", "vde2.ctl"}
        assert len({v.pid for v in vlans}) == 2
    finally:
        for vlan in vlans:
            vlan.stop()


def test_missing_vde_switch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MachineError, match="cannot start vde_switch for vlan 1"):
        VLan(1, tmp_path)


def test_switch_that_cannot_start_is_reported(tmp_path: Path) -> None:
    # The socket directory's parent does not exist: vde_switch exits.
    with pytest.raises(MachineError, match="vde_switch for vlan 4 exited with status"):
        VLan(4, tmp_path / "no" / "such" / "dir")
    assert "QEMU_VDE_SOCKET_4" not in os.environ
