"""The NixOS-shaped start scripts of the systemd guest.

The script layout is the tiny guest's (`nixos_shape.py`, tested in
test_guest_nixos_shape.py); what differs is tested here: the root disk is an
overlay of the cached system image, the node directory is the store share,
and the kernel command line carries the system's own parameters.  QEMU is
replaced by a recorder on PATH; qemu-img is the real one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from driver.errors import ConfigError
from driver.guest.systemd_image import SystemdImage
from driver.guest.systemd_node import write_systemd_start_script

from test_guest_startscript import option_values, run


@pytest.fixture
def image(tmp_path: Path) -> SystemdImage:
    directory = tmp_path / "image"
    directory.mkdir()
    (directory / "vmlinuz").write_bytes(b"kernel")
    (directory / "initrd.img").write_bytes(b"initrd")
    disk = directory / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    return SystemdImage(
        directory=directory,
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        disk=disk,
        packages=(),
        kernel_version="6.1.0-test-amd64",
    )


def write(tmp_path: Path, image: SystemdImage, shape: str) -> Path:
    return write_systemd_start_script(
        tmp_path / "out",
        name="server",
        node_number=2,
        vlans=[1, 3],
        hosts=[("client", 1, 1), ("server", 2, 1)],
        image=image,
        memory_mb=768,
        boot_script="echo hi\n",
        shape=shape,
    )


def test_the_9p_shape_boots_the_system_disk_like_a_nixos_vm(tmp_path: Path, image: SystemdImage) -> None:
    script = write(tmp_path, image, "nixos")
    _, argv, done = run(script, tmp_path, "-serial", "stdio", QEMU_KERNEL_PARAMS="debug")
    assert done.returncode == 0, done.stderr
    state = tmp_path / "state"
    assert "-bios" not in argv and "-nodefaults" not in argv
    # The node directory is the store share; no separate vmtui-node share.
    node_dir = tmp_path / "out/server-node"
    assert option_values(argv, "-virtfs")[0] == (
        f"local,path={node_dir},security_model=none,mount_tag=nix-store,readonly=on"
    )
    assert not any("vmtui-node" in value for value in option_values(argv, "-virtfs"))
    # NIX_DISK_IMAGE: ./server.qcow2 in the working directory, an overlay of
    # the cached image (which is never written to).
    disk = state / "server.qcow2"
    assert option_values(argv, "-drive") == [f"cache=writeback,file={disk},id=drive1,if=none,index=1,werror=report"]
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert info["format"] == "qcow2" and info["backing-filename"] == str(image.disk)
    assert info["backing-filename-format"] == "qcow2"
    (append,) = option_values(argv, "-append")
    assert append.startswith("root=/dev/vda rw net.ifnames=0 ")
    assert "systemd.hostname=server vmtui.node=2 vmtui.vlans=1,3 " in append
    assert append.endswith("console=ttyS0,115200n8 console=tty0 panic=1 boot.panic_on_fail clocksource=acpi_pm debug")
    assert option_values(argv, "-kernel") == [str(image.kernel)]
    assert option_values(argv, "-initrd") == [str(image.initrd)]


def test_an_existing_disk_image_is_kept(tmp_path: Path, image: SystemdImage) -> None:
    script = write(tmp_path, image, "nixos")
    assert run(script, tmp_path)[2].returncode == 0
    disk = tmp_path / "state/server.qcow2"
    disk.write_bytes(disk.read_bytes() + b"kept")
    assert run(script, tmp_path)[2].returncode == 0
    assert disk.read_bytes().endswith(b"kept")


def test_a_missing_system_image_is_one_clear_line(tmp_path: Path, image: SystemdImage) -> None:
    script = write(tmp_path, image, "nixos")
    image.disk.unlink()
    _, argv, done = run(script, tmp_path)
    assert done.returncode == 1 and argv == []
    assert "run-server-vm: the guest image" in done.stderr and "is missing" in done.stderr
    assert not (tmp_path / "state/server.qcow2").exists()


def test_the_virtiofs_shape_serves_the_node_directory_as_the_store(tmp_path: Path, image: SystemdImage) -> None:
    text = write(tmp_path, image, "nixos-virtiofs").read_text()
    node_dir = tmp_path / "out/server-node"
    assert f"start_virtiofsd nix-store {node_dir}\n" in text
    assert "-object memory-backend-memfd,id=mem,size=768M,share=on" in text
    assert text.count("-device vhost-user-fs-pci") == 3
    assert "-virtfs" not in text


def test_the_fast_shape_names_the_vlan_nics_too(tmp_path: Path, image: SystemdImage) -> None:
    text = write(tmp_path, image, "fast").read_text()
    assert "vmtui.node=2 vmtui.vlans=1,3" in text
    assert "-bios qboot.rom" in text


def test_an_unknown_shape_is_a_config_error(tmp_path: Path, image: SystemdImage) -> None:
    with pytest.raises(ConfigError, match="node server: shape must be one of 'fast', 'nixos', 'nixos-virtiofs'"):
        write(tmp_path, image, "nixos-9p")
