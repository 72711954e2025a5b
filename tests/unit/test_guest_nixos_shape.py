"""The NixOS-shaped start scripts of the tiny guest: layout and QEMU command line.

As in test_guest_startscript.py, QEMU is replaced by a recorder on PATH
(the argument assembly is what is tested); the disk image is made by the
real qemu-img and mkfs.ext4.  The integration tests boot the real thing,
virtiofsd included.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from driver.errors import ConfigError
from driver.guest.tiny import TinyGuestImage

from test_guest_startscript import image, option_values, run, write  # noqa: F401 (fixture)


def test_the_9p_shape_boots_like_a_nixos_vm(tmp_path: Path, image: TinyGuestImage) -> None:  # noqa: F811
    script = write(tmp_path, image, shape="nixos", memory_mb=384)
    _, argv, done = run(
        script, tmp_path, "-serial", "stdio",
        QEMU_OPTS="-smp 1  -snapshot", QEMU_KERNEL_PARAMS="debug", SHARED_DIR=str(tmp_path / "shared"),
        QEMU_NET_OPTS="hostfwd=tcp::2222-:22",
    )
    assert done.returncode == 0, done.stderr
    state = tmp_path / "state"
    # SeaBIOS, QEMU's default firmware: no -bios, no -nodefaults.
    assert "-bios" not in argv and "-nodefaults" not in argv
    assert argv[:6] == ["-name", "server", "-m", "384", "-smp", "1"]
    assert option_values(argv, "-netdev")[0] == "user,id=user.0,hostfwd=tcp::2222-:22"
    assert option_values(argv, "-virtfs") == [
        f"local,path={image.store},security_model=none,mount_tag=nix-store,readonly=on",
        f"local,path={state}/xchg,security_model=none,mount_tag=xchg",
        f"local,path={tmp_path / 'shared'},security_model=none,mount_tag=shared",
    ]
    # The root disk: ./<name>.qcow2 in the working directory, made on first start.
    disk = state / "server.qcow2"
    assert option_values(argv, "-drive") == [
        f"cache=writeback,file={disk},id=drive1,if=none,index=1,werror=report"
    ]
    assert "virtio-blk-pci,bootindex=1,drive=drive1,serial=root" in option_values(argv, "-device")
    assert disk.read_bytes()[:4] == b"QFI\xfb"
    info = subprocess.run(["qemu-img", "info", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "virtual size: 1 GiB" in info
    # VLAN NICs after the disk, then kernel, initrd and NixOS's console parameters.
    assert argv.index("-drive") < argv.index("-kernel")
    assert option_values(argv, "-netdev")[1:] == ["vde,id=vlan1,sock=/vde1.ctl", "vde,id=vlan2,sock=/vde3.ctl"]
    (append,) = option_values(argv, "-append")
    assert "vmtui.nixos=9p" in append and f"vmtui.system={image.system_path}" in append
    assert append.endswith("console=ttyS0,115200n8 console=tty0 panic=1 boot.panic_on_fail clocksource=acpi_pm debug")
    assert argv[-5:] == ["-smp", "1", "-snapshot", "-serial", "stdio"]
    assert not list(state.glob("tmp.*")), "the raw image made on the way is removed"


def test_the_disk_image_is_made_once_and_nix_disk_image_moves_it(
    tmp_path: Path, image: TinyGuestImage  # noqa: F811
) -> None:
    script = write(tmp_path, image, shape="nixos")
    _, _, done = run(script, tmp_path)
    assert done.returncode == 0, done.stderr
    disk = tmp_path / "state" / "server.qcow2"
    made = disk.stat().st_mtime_ns
    _, _, done = run(script, tmp_path)
    assert done.returncode == 0 and disk.stat().st_mtime_ns == made

    elsewhere = tmp_path / "disks" / "mine.qcow2"
    elsewhere.parent.mkdir()
    _, argv, done = run(script, tmp_path, NIX_DISK_IMAGE=str(elsewhere))
    assert done.returncode == 0, done.stderr
    assert elsewhere.read_bytes()[:4] == b"QFI\xfb"
    assert f"file={elsewhere}," in option_values(argv, "-drive")[0]


def test_tmpdir_without_use_tmpdir_gets_a_fresh_directory(tmp_path: Path, image: TinyGuestImage) -> None:  # noqa: F811
    script = write(tmp_path, image, shape="nixos")
    _, argv, done = run(script, tmp_path, USE_TMPDIR="")
    assert done.returncode == 0, done.stderr
    (xchg,) = [v for v in option_values(argv, "-virtfs") if "mount_tag=xchg" in v]
    assert "/nix-vm." in xchg


def test_the_virtiofs_shape_shares_memory_with_one_virtiofsd_per_directory(
    tmp_path: Path, image: TinyGuestImage  # noqa: F811
) -> None:
    text = write(tmp_path, image, shape="nixos-virtiofs", memory_mb=320).read_text()
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert "-virtfs" not in text and "-bios" not in text
    assert "-object memory-backend-memfd,id=mem,size=320M,share=on" in text
    assert "-numa node,memdev=mem" in text
    for tag in ("nix-store", "xchg", "shared"):
        assert f'-chardev socket,id=fs-{tag},path="$TMPDIR/fs-{tag}.sock"' in text
        assert f"-device vhost-user-fs-pci,chardev=fs-{tag},tag={tag}" in text
    # A standalone virtiofsd first, Debian's QEMU one second; started before
    # QEMU, which is exec'ed last.
    assert text.index("command -v virtiofsd") < text.index("/usr/lib/qemu/virtiofsd")
    assert text.index("start_virtiofsd nix-store") < text.index("exec qemu-system-x86_64")
    assert "vmtui.nixos=virtiofs" in text


def test_an_unknown_shape_is_a_config_error(tmp_path: Path, image: TinyGuestImage) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="shape must be one of 'fast', 'nixos', 'nixos-virtiofs'"):
        write(tmp_path, image, shape="nixos-9p")
