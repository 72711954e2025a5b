"""Unit tests of the systemd guest builder's pure parts (no mmdebstrap, no QEMU)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from driver.errors import ConfigError
from driver.guest import systemd_image, systemd_instrumentation
from driver.guest.startscript import HostEntry
from driver.guest.systemd_image import SystemdImage, image_key, normalize_packages
from driver.guest.systemd_node import hosts_text, start_script_text, write_systemd_start_script


def fake_image(tmp_path: Path) -> SystemdImage:
    directory = tmp_path / "image"
    directory.mkdir()
    for name in ("vmlinuz", "initrd.img", "root.qcow2"):
        (directory / name).write_bytes(b"")
    return SystemdImage(
        directory=directory,
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        disk=directory / "root.qcow2",
        packages=(),
        kernel_version="6.1.0-test-amd64",
    )


def test_packages_are_sorted_deduplicated_and_base_packages_dropped() -> None:
    assert normalize_packages(["postgresql", "curl", "postgresql", "systemd"]) == ("curl", "postgresql")


@pytest.mark.parametrize("bad", ["", "Postgres", "foo bar", "-rf", "a;b", "../x", 3])
def test_bad_package_names_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError):
        normalize_packages([bad])  # type: ignore[list-item]


def test_a_single_string_is_not_a_package_list() -> None:
    with pytest.raises(ConfigError, match="must be a list"):
        normalize_packages("postgresql")


def test_image_key_ignores_order_and_duplicates_but_not_content() -> None:
    assert image_key(["b", "a"]) == image_key(["a", "b", "a"])
    assert image_key([]) == image_key(["systemd"])  # a base package adds nothing
    assert image_key(["a"]) != image_key(["b"])


def test_image_key_follows_the_instrumentation(monkeypatch: pytest.MonkeyPatch) -> None:
    before = image_key([])
    monkeypatch.setattr(systemd_instrumentation, "JOURNALD_CONF", "changed")
    original = systemd_instrumentation.staged_files

    def changed_files() -> list[systemd_instrumentation.StagedFile]:
        return [*original(), systemd_instrumentation.StagedFile("/etc/extra", "x")]

    monkeypatch.setattr(systemd_instrumentation, "staged_files", changed_files)
    assert image_key([]) != before


def test_cached_image_is_none_for_an_incomplete_directory(tmp_path: Path) -> None:
    directory = tmp_path / f"systemd-{image_key([])}"
    directory.mkdir()
    (directory / "manifest.json").write_text('{"kernel_version": "6.1"}')
    (directory / "vmlinuz").write_bytes(b"k")
    assert systemd_image.cached_image([], cache_root=tmp_path) is None
    (directory / "initrd.img").write_bytes(b"i")
    (directory / "root.qcow2").write_bytes(b"d")
    image = systemd_image.cached_image([], cache_root=tmp_path)
    assert image is not None and image.kernel_version == "6.1"


def test_safe_rmtree_removes_a_plain_tree(tmp_path: Path) -> None:
    tree = tmp_path / "build"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "file").write_text("x")
    systemd_image._safe_rmtree(tree)
    assert not tree.exists()


def test_instrumentation_tree_has_the_backdoor_and_masks(tmp_path: Path) -> None:
    systemd_instrumentation.write_tree(
        tmp_path, systemd_instrumentation.staged_files(), systemd_instrumentation.SYMLINKS
    )
    backdoor = tmp_path / "usr/local/libexec/vmtui/backdoor"
    assert backdoor.stat().st_mode & 0o111
    assert "Spawning backdoor root shell..." in backdoor.read_text()
    unit = (tmp_path / "etc/systemd/system/backdoor.service").read_text()
    assert "dev-hvc0.device" in unit
    for getty in ("serial-getty@ttyS0.service", "serial-getty@hvc0.service", "getty@tty1.service"):
        assert (tmp_path / "etc/systemd/system" / getty).readlink() == Path("/dev/null")
    enabled = tmp_path / "etc/systemd/system/multi-user.target.wants/backdoor.service"
    assert enabled.readlink() == Path("/etc/systemd/system/backdoor.service")
    journald = (tmp_path / "etc/systemd/journald.conf.d/vmtui.conf").read_text()
    assert "ForwardToConsole=yes" in journald and "TTYPath=/dev/ttyS0" in journald


def test_guest_shell_scripts_parse(tmp_path: Path) -> None:
    for staged in systemd_instrumentation.staged_files() + systemd_instrumentation.initramfs_files():
        if staged.content.startswith("#!"):
            shell = "bash" if "bash" in staged.content.splitlines()[0] else "sh"
            script = tmp_path / "script"
            script.write_text(staged.content)
            done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
            assert done.returncode == 0, f"{staged.path}: {done.stderr}"


def run_vlan_address(tmp_path: Path, mac: str, cmdline: str) -> list[str]:
    """Run the udev helper for eth1 with `cat` and `ip` replaced; the `ip` calls it makes."""
    script = tmp_path / "vlan-address"
    script.write_text(systemd_instrumentation.VLAN_ADDRESS_SCRIPT)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "cat").write_text(
        '#!/bin/sh\nif [ "$1" = /proc/cmdline ]; then echo "$FAKE_CMDLINE"; else echo "$FAKE_MAC"; fi\n'
    )
    (bin_dir / "ip").write_text('#!/bin/sh\necho "ip $*"\n')
    for tool in ("cat", "ip"):
        (bin_dir / tool).chmod(0o755)
    done = subprocess.run(
        ["sh", str(script), "eth1"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_MAC": mac, "FAKE_CMDLINE": cmdline},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_vlan_address_script_derives_nixos_addresses(tmp_path: Path) -> None:
    """A VLAN NIC of the node and the SLiRP NIC (the fast shape's "VLAN 0" MAC)."""
    cmdline = "root=/dev/vda vmtui.node=10 vmtui.vlans=2,7"
    assert run_vlan_address(tmp_path, "52:54:00:12:02:0a", cmdline) == [
        "ip link set eth1 up",
        "ip address add 192.168.2.10/24 dev eth1",
        "ip address add 2001:db8:2::10/64 dev eth1 nodad",
    ]
    slirp = ["ip link set eth1 up", "ip address add 10.0.2.15/24 dev eth1"]
    assert run_vlan_address(tmp_path, "52:54:00:12:00:0a", cmdline) == slirp
    assert run_vlan_address(tmp_path, "52:54:00:12:07:0a", cmdline)[1] == "ip address add 192.168.7.10/24 dev eth1"


def test_qemus_default_mac_is_not_taken_for_a_vlan_nic(tmp_path: Path) -> None:
    """A NixOS-shaped script leaves the user NIC QEMU's default MAC 52:54:00:12:34:56,
    which reads as VLAN 52, node 86: only the node's own VLAN MACs count."""

    def addresses(mac: str, cmdline: str) -> list[str]:
        calls = run_vlan_address(tmp_path, mac, cmdline)
        return [call.split()[3] for call in calls if call.startswith("ip address add")]

    node_86 = "console=ttyS0 vmtui.node=86 vmtui.vlans=1 console=tty0"
    assert addresses("52:54:00:12:34:56", node_86) == ["10.0.2.15/24"]
    assert addresses("52:54:00:12:34:56", "vmtui.node=2 vmtui.vlans=1,52") == ["10.0.2.15/24"]
    assert addresses("52:54:00:12:01:56", node_86) == ["192.168.1.86/24", "2001:db8:1::86/64"]
    # A node on no VLAN: every NIC is the user NIC.
    assert addresses("52:54:00:12:01:02", "vmtui.node=2 vmtui.vlans=") == ["10.0.2.15/24"]


def test_hosts_text_names_every_node_by_its_first_vlan() -> None:
    text = hosts_text("server", [HostEntry("client", 1, 1), HostEntry("server", 2, 3)])
    assert "192.168.1.1 client" in text
    assert "192.168.3.2 server" in text
    assert "127.0.1.1" not in text
    assert "127.0.1.1 lonely" in hosts_text("lonely", [])


def test_start_script_is_nixos_style(tmp_path: Path) -> None:
    text = start_script_text(
        name="server",
        node_number=2,
        vlans=[1, 5],
        image=fake_image(tmp_path),
        node_dir=tmp_path / "server-node",
        memory_mb=768,
    )
    assert text.rstrip().endswith('${QEMU_OPTS:-} \\\n    "$@"')
    assert "exec qemu-system-x86_64" in text
    assert "mac=52:54:00:12:01:02" in text and "mac=52:54:00:12:05:02" in text
    assert 'sock="$QEMU_VDE_SOCKET_5"' in text
    assert "mount_tag=vmtui-node" in text and "mount_tag=shared" in text and "mount_tag=xchg" in text
    assert "systemd.hostname=server" in text
    assert "-m 768" in text
    assert "${NIX_DISK_IMAGE:-$TMPDIR/server.qcow2}" in text
    script = tmp_path / "run"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_write_start_script_places_node_files(tmp_path: Path) -> None:
    path = write_systemd_start_script(
        tmp_path / "out",
        name="server",
        node_number=1,
        vlans=[1],
        hosts=[("server", 1, 1)],
        image=fake_image(tmp_path),
        files={"/etc/postgresql/15/main/conf.d/listen.conf": b"listen_addresses = '*'\n"},
        boot_script="echo hi\n",
    )
    assert path == tmp_path / "out/bin/run-server-vm"
    assert path.stat().st_mode & 0o111
    node_dir = tmp_path / "out/server-node"
    placed = node_dir / "files/etc/postgresql/15/main/conf.d/listen.conf"
    assert placed.read_bytes() == b"listen_addresses = '*'\n"
    assert (node_dir / "boot.sh").read_text() == "echo hi\n"
    assert "192.168.1.1 server" in (node_dir / "hosts").read_text()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "bad name"},
        {"node_number": 0},
        {"vlans": [255]},
        {"memory_mb": 64},
        {"files": {"relative/path": b""}},
        {"files": {"/etc/../x": b""}},
    ],
)
def test_bad_node_input_is_a_config_error(tmp_path: Path, kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "name": "server",
        "node_number": 1,
        "vlans": [1],
        "hosts": [],
        "image": fake_image(tmp_path),
        **kwargs,
    }
    with pytest.raises(ConfigError):
        write_systemd_start_script(tmp_path / "out", **arguments)  # type: ignore[arg-type]


def test_host_debian_sources_finds_the_debian_files() -> None:
    for path in systemd_image.host_debian_sources():
        assert "/debian" in path.read_text()


def test_images_of_other_generations_are_pruned(tmp_path: Path) -> None:
    def fake(name: str, generation: str) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "manifest.json").write_text(f'{{"generation": "{generation}"}}')
        return directory

    outdated = fake("systemd-0000000000000000", "an-older-builder")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(outdated / "manifest.json", (two_days_ago, two_days_ago))
    # Another checkout (or a run still going) loaded this one lately: it stays.
    in_use = fake("systemd-3333333333333333", "an-older-builder")
    current = fake("systemd-1111111111111111", systemd_image.image_generation())
    building = tmp_path / "systemd-2222222222222222.build-123"
    building.mkdir()
    messages: list[str] = []
    systemd_image._prune_other_generations(tmp_path, messages.append)
    assert not outdated.exists()
    assert current.exists() and building.exists() and in_use.exists()
    assert messages == ["removing outdated systemd guest image systemd-0000000000000000"]


def test_loading_an_image_marks_it_used(tmp_path: Path) -> None:
    image = fake_image(tmp_path)
    manifest = image.directory / "manifest.json"
    manifest.write_text('{"generation": "an-older-builder"}')
    os.utime(manifest, (1, 1))
    assert systemd_image._load(image.directory) is not None
    assert manifest.stat().st_mtime > time.time() - 60


def test_build_steps_stream_output_and_explain_failures() -> None:
    lines: list[str] = []
    systemd_image._run_streaming(["sh", "-c", "echo one; echo two >&2"], lines.append, "step")
    assert lines == ["one", "two"]
    with pytest.raises(ConfigError, match="unknown Debian package for the systemd guest: nosuchpkg"):
        systemd_image._run_streaming(
            ["sh", "-c", "echo 'E: Unable to locate package nosuchpkg'; exit 1"], lines.append, "mmdebstrap"
        )
    with pytest.raises(systemd_image.ImageBuildError, match=r"step failed \(exit status 3\): last words"):
        systemd_image._run_streaming(["sh", "-c", "echo last words; exit 3"], lines.append, "step")
    with pytest.raises(systemd_image.ImageBuildError, match="cannot run /nonexistent/tool"):
        systemd_image._run_streaming(["/nonexistent/tool"], lines.append, "step")
