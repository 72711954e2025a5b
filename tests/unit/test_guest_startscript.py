"""The NixOS-style start script: its text, and the QEMU command line it execs.

QEMU itself is replaced by a recorder on PATH here (the argument assembly is
what is tested); the integration test boots the real thing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from driver.errors import ConfigError
from driver.guest.startscript import HostEntry, node_archive, vlan_mac, write_start_script
from driver.guest.tiny import TinyGuestImage

from test_guest_cpio import parse_newc  # same directory: on sys.path under pytest

RECORDER = """#!/bin/bash
# Stands in for QEMU: records its pid and arguments, one per NUL-terminated field.
printf '%s\\0' "$$" "$@" > "$RECORD"
"""


@pytest.fixture
def image(tmp_path: Path) -> TinyGuestImage:
    kernel, initrd = tmp_path / "vmlinux", tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"\x1f\x8b base archive")  # 15 bytes: not 4-byte aligned
    return TinyGuestImage(kernel, initrd, "6.1.0-test", "key")


def write(tmp_path: Path, image: TinyGuestImage, **overrides) -> Path:
    args = dict(
        name="server",
        node_number=2,
        vlans=[1, 3],
        hosts=[HostEntry("client", 1, 1), ("server", 2, 1)],
        image=image,
    )
    args.update(overrides)
    return write_start_script(tmp_path / "out", **args)


def run(script: Path, tmp_path: Path, *args: str, **env: str) -> tuple[int, list[str], subprocess.CompletedProcess]:
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir(exist_ok=True)
    recorder = fake_bin / "qemu-system-x86_64"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    record = tmp_path / "record"
    record.unlink(missing_ok=True)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    full_env = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "RECORD": str(record),
        "TMPDIR": str(state),
        "USE_TMPDIR": "1",
        "QEMU_VDE_SOCKET_1": "/vde1.ctl",
        "QEMU_VDE_SOCKET_3": "/vde3.ctl",
    }
    full_env.update(env)
    proc = subprocess.Popen([str(script), *args], env=full_env, cwd=state, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    if not record.exists():
        return proc.pid, [], done
    fields = record.read_bytes().decode().split("\0")[:-1]
    assert int(fields[0]) == proc.pid, "the script must exec QEMU, not leave a shell in between"
    return proc.pid, fields[1:], done


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def test_script_is_valid_bash_and_executable(tmp_path: Path, image: TinyGuestImage) -> None:
    script = write(tmp_path, image)
    assert script == tmp_path / "out/bin/run-server-vm"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "exec qemu-system-x86_64" in script.read_text()


def test_qemu_command_line(tmp_path: Path, image: TinyGuestImage) -> None:
    script = write(tmp_path, image, memory_mb=384, extra_kernel_params='quote"me $HOME')
    _, argv, done = run(
        script, tmp_path, "-serial", "stdio",
        QEMU_OPTS="-smp 1  -snapshot", QEMU_KERNEL_PARAMS="debug", SHARED_DIR=str(tmp_path / "shared"),
    )
    assert done.returncode == 0, done.stderr
    state = tmp_path / "state"
    assert option_values(argv, "-name") == ["server"]
    assert option_values(argv, "-m") == ["384"]
    assert option_values(argv, "-machine") == ["pc,accel=tcg"]
    assert "host" not in option_values(argv, "-cpu")
    assert option_values(argv, "-netdev")[0] == "user,id=user.0"
    assert f"mac={vlan_mac(1, 2)}" in " ".join(option_values(argv, "-device"))
    assert "virtio-net-pci,netdev=vlan2,mac=52:54:00:12:03:02" in option_values(argv, "-device")
    assert option_values(argv, "-netdev")[1:] == ["vde,id=vlan1,sock=/vde1.ctl", "vde,id=vlan2,sock=/vde3.ctl"]
    assert option_values(argv, "-virtfs") == [
        f"local,path={tmp_path / 'shared'},security_model=none,mount_tag=shared",
        f"local,path={state}/xchg,security_model=none,mount_tag=xchg",
    ]
    assert (state / "xchg").is_dir()
    assert option_values(argv, "-drive") == [
        f"if=none,id=vmstate,format=qcow2,file={state}/server-vmstate.qcow2"
    ]
    assert (state / "server-vmstate.qcow2").read_bytes()[:4] == b"QFI\xfb"
    assert option_values(argv, "-kernel") == [str(image.kernel)]
    assert option_values(argv, "-initrd") == [str(image.initrd)]
    (append,) = option_values(argv, "-append")
    assert append.startswith("console=ttyS0 panic=1 ")
    assert "vmtui.hostname=server" in append
    assert "vmtui.hosts=client:1:1,server:2:1" in append
    assert append.endswith('quote"me $HOME debug')
    # QEMU_OPTS word-split before the driver's arguments, which come last.
    assert argv[-5:] == ["-smp", "1", "-snapshot", "-serial", "stdio"]


def test_user_network_options_and_accelerator(tmp_path: Path, image: TinyGuestImage) -> None:
    script = write(tmp_path, image, vlans=[])
    _, argv, done = run(script, tmp_path, QEMU_NET_OPTS="hostfwd=tcp::2222-:22", VMTUI_ACCEL="kvm")
    assert done.returncode == 0, done.stderr
    assert option_values(argv, "-netdev") == ["user,id=user.0,hostfwd=tcp::2222-:22"]
    assert option_values(argv, "-machine") == ["pc,accel=kvm"]

    _, argv, done = run(script, tmp_path, VMTUI_ACCEL="hvf")
    assert done.returncode == 2 and argv == []
    assert "VMTUI_ACCEL" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_tmpdir_is_ignored_without_use_tmpdir(tmp_path: Path, image: TinyGuestImage) -> None:
    script = write(tmp_path, image, vlans=[])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, argv, done = run(script, tmp_path, USE_TMPDIR="", TMPDIR=str(elsewhere))
    assert done.returncode == 0, done.stderr
    (created,) = elsewhere.iterdir()  # mktemp's own directory, not TMPDIR itself
    assert created.name.startswith("nix-vm.")
    assert (created / "xchg").is_dir()


def test_missing_vde_socket_is_one_clear_line(tmp_path: Path, image: TinyGuestImage) -> None:
    script = write(tmp_path, image)
    _, argv, done = run(script, tmp_path, QEMU_VDE_SOCKET_3="")
    assert done.returncode == 1 and argv == []
    assert done.stderr.strip() == "run-server-vm: QEMU_VDE_SOCKET_3 is not set (no switch for VLAN 3)"


def test_node_files_and_boot_hook_travel_in_an_appended_archive(tmp_path: Path, image: TinyGuestImage) -> None:
    script = write(tmp_path, image, files={"/srv/www/index.html": b"hi\n"}, boot_script="httpd -p 80\n")
    initrd = tmp_path / "out/server-initrd.img"
    assert f"-initrd {initrd}" in script.read_text()
    data = initrd.read_bytes()
    base = image.initrd.read_bytes()
    assert data.startswith(base)
    offset = len(base) + (-len(base) % 4)
    assert data[len(base) : offset] == b"\0" * (offset - len(base))
    entries = {e["name"]: e for e in parse_newc(data[offset:])}
    assert entries["srv/www/index.html"]["data"] == b"hi\n"
    assert entries["etc/vmtui/boot.sh"]["data"] == b"httpd -p 80\n"
    assert "srv" in entries and "etc/vmtui" in entries


def test_node_archive_rejects_unusable_paths() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        node_archive({"srv/x": b""}, None)
    with pytest.raises(ConfigError, match="boot script"):
        node_archive({"/etc/vmtui/boot.sh": b""}, "true")
    with pytest.raises(ConfigError, match="hidden"):
        node_archive({"/tmp/x": b""}, None)
    with pytest.raises(ConfigError):
        node_archive({"/srv/../../x": b""}, None)


def test_node_archive_keeps_the_mode_of_root_home() -> None:
    entries = {e["name"]: e for e in parse_newc(node_archive({"/root/.bashrc": b"x"}, None))}
    assert entries["root"]["mode"] & 0o7777 == 0o700


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "bad name"},
        {"name": "a:b"},
        {"node_number": 0},
        {"node_number": 255},
        {"vlans": [0]},
        {"hosts": [("x,y", 1, 1)]},
        {"memory_mb": 16},
    ],
)
def test_bad_input_is_a_config_error(tmp_path: Path, image: TinyGuestImage, overrides: dict) -> None:
    with pytest.raises(ConfigError):
        write(tmp_path, image, **overrides)


def test_a_graphical_node_gets_a_vga_screen_and_its_keyboard(tmp_path: Path, image: TinyGuestImage) -> None:
    plain = write(tmp_path / "plain", image)
    _, argv, done = run(plain, tmp_path)
    assert done.returncode == 0, done.stderr
    assert option_values(argv, "-vga") == ["none"]
    (append,) = option_values(argv, "-append")
    assert "i8042.nokbd" in append and "vmtui.graphics" not in append

    graphical = write(tmp_path / "graphical", image, graphics=True)
    _, argv, done = run(graphical, tmp_path)
    assert done.returncode == 0, done.stderr
    # A VGA card, never a QEMU window: vmtui shows the screen itself.
    assert option_values(argv, "-vga") == ["std"]
    assert option_values(argv, "-display") == ["none"]
    (append,) = option_values(argv, "-append")
    assert "vmtui.graphics" in append.split()
    # The keyboard is probed, and ACPI places the framebuffer's PCI window.
    assert "i8042.nokbd" not in append and "pci=noacpi" not in append
