"""Per-node start scripts (`bin/run-<name>-vm`) for the systemd guest.

Same conventions as the tiny guest's start scripts (`startscript.py`) and a
NixOS `startVM` script: `TMPDIR` honoured only with `USE_TMPDIR`,
`$TMPDIR/xchg` and `${SHARED_DIR:-$TMPDIR/xchg}` shared over 9p as `xchg`
and `shared`, VLAN NICs `52:54:00:12:<vlan>:<node>`, `$VMTUI_ACCEL`
(default tcg), `$QEMU_OPTS` then `"$@"` last, and `exec` so that no shell
stays between the driver and QEMU.

The root disk is a qcow2 overlay `$TMPDIR/<name>.qcow2` backed by the cached
image, created when missing.  Under the driver `TMPDIR` is the machine's
state directory: deleted at the start of a run (writes are discarded) unless
the state is kept (`--keep-vm-state`), and then the overlay, with all the
guest wrote, is reused.  `NIX_DISK_IMAGE` overrides the path, as in NixOS.

What differs per node and is not known when the image is built (hosts,
files, the boot script) lives in a small directory next to the script,
shared read-only over 9p as `vmtui-node`; the guest's setup unit applies it
early in the boot.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from driver.errors import ConfigError
from driver.guest.startscript import FAST_BOOT_PARAMS, HostEntry, vlan_mac
from driver.guest.systemd_image import SystemdImage

# A Debian userland with systemd, journald and a database wants more than
# the tiny guest's default.
DEFAULT_MEMORY_MB = 1024
MINIMUM_MEMORY_MB = 256

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def write_systemd_start_script(
    out_dir: Path,
    *,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    hosts: Sequence[HostEntry | tuple[str, int, int]],
    image: SystemdImage,
    memory_mb: int = DEFAULT_MEMORY_MB,
    extra_kernel_params: str = "",
    files: Mapping[str, bytes] | None = None,
    boot_script: str | None = None,
) -> Path:
    """Write `<out_dir>/bin/run-<name>-vm` (and `<out_dir>/<name>-node/`).

    `files` (guest path -> content) are copied into the guest's root file
    system before `sysinit.target`, so they can configure services that
    start later; `boot_script` runs with bash as the oneshot unit
    `vmtui-boot.service` once the network is up.  Raises ConfigError for
    bad input.
    """
    _check_name(name, "node name")
    _check_number(node_number, "node number")
    for vlan in vlans:
        _check_number(vlan, "VLAN")
    entries = [HostEntry(*entry) for entry in hosts]
    for entry in entries:
        _check_name(entry.name, "host name")
        _check_number(entry.node_number, "node number")
        _check_number(entry.vlan, "VLAN")
    if memory_mb < MINIMUM_MEMORY_MB:
        raise ConfigError(
            f"node {name}: memory {memory_mb} MiB is too small for the systemd guest "
            f"(at least {MINIMUM_MEMORY_MB})"
        )

    node_dir = out_dir / f"{name}-node"
    write_node_dir(node_dir, hostname=name, hosts=entries, files=files or {}, boot_script=boot_script)
    bin_dir = out_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"run-{name}-vm"
    path.write_text(
        start_script_text(
            name=name,
            node_number=node_number,
            vlans=vlans,
            image=image,
            node_dir=node_dir,
            memory_mb=memory_mb,
            extra_kernel_params=extra_kernel_params,
        )
    )
    path.chmod(0o755)
    return path


def hosts_text(hostname: str, hosts: Sequence[HostEntry]) -> str:
    """`/etc/hosts` of a node: every node by its first VLAN address."""
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    for entry in hosts:
        lines.append(f"192.168.{entry.vlan}.{entry.node_number} {entry.name}")
        lines.append(f"2001:db8:{entry.vlan}::{entry.node_number} {entry.name}")
    if hostname not in {entry.name for entry in hosts}:
        lines.append(f"127.0.1.1 {hostname}")
    return "\n".join(lines) + "\n"


def write_node_dir(
    node_dir: Path,
    *,
    hostname: str,
    hosts: Sequence[HostEntry],
    files: Mapping[str, bytes],
    boot_script: str | None,
) -> None:
    """The directory the guest mounts as `vmtui-node` (replaced if present)."""
    if node_dir.exists():
        shutil.rmtree(node_dir)
    files_dir = node_dir / "files"
    files_dir.mkdir(parents=True)
    (node_dir / "hosts").write_text(hosts_text(hostname, hosts))
    for guest_path, content in sorted(files.items()):
        relative = _guest_relative(guest_path)
        target = files_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o644)
    if boot_script is not None:
        boot = node_dir / "boot.sh"
        boot.write_text(boot_script)
        boot.chmod(0o755)


def start_script_text(
    *,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    image: SystemdImage,
    node_dir: Path,
    memory_mb: int = DEFAULT_MEMORY_MB,
    extra_kernel_params: str = "",
) -> str:
    """The bash text of a start script (see write_systemd_start_script)."""
    q = shlex.quote
    kernel_params = [
        "console=ttyS0",
        "root=/dev/vda",
        "rw",
        "net.ifnames=0",  # eth0 = user-mode NIC, eth1.. = VLANs, as on NixOS
        "panic=1",
        *FAST_BOOT_PARAMS,
        f"systemd.hostname={name}",
    ]
    if extra_kernel_params.strip():
        kernel_params.append(extra_kernel_params.strip())
    disk = f'"${{NIX_DISK_IMAGE:-$TMPDIR/{name}.qcow2}}"'

    vlan_args = "".join(
        f"    -device virtio-net-pci,netdev=vlan{index},mac={vlan_mac(vlan, node_number)} \\\n"
        f'    -netdev vde,id=vlan{index},sock="$QEMU_VDE_SOCKET_{vlan}" \\\n'
        for index, vlan in enumerate(vlans, start=1)
    )
    vlan_checks = "".join(
        f'if [ -z "${{QEMU_VDE_SOCKET_{vlan}:-}}" ]; then\n'
        f'    echo "run-{name}-vm: QEMU_VDE_SOCKET_{vlan} is not set (no switch for VLAN {vlan})" >&2\n'
        f"    exit 1\n"
        f"fi\n"
        for vlan in vlans
    )

    return f"""#!/usr/bin/env bash
# Start script of node "{name}" (vmtui systemd guest, Debian {image.kernel_version}), NixOS
# style: the driver appends its own QEMU arguments ("$@"), QEMU_OPTS come before them.
set -euo pipefail

if [ -z "${{TMPDIR:-}}" ] || [ -z "${{USE_TMPDIR:-}}" ]; then
    TMPDIR=$(mktemp -d nix-vm.XXXXXXXXXX --tmpdir)
fi
export TMPDIR
mkdir -p "$TMPDIR/xchg"
SHARED_DIR=${{SHARED_DIR:-$TMPDIR/xchg}}
mkdir -p "$SHARED_DIR"

case "${{VMTUI_ACCEL:-tcg}}" in
    tcg|kvm) accel=${{VMTUI_ACCEL:-tcg}} ;;
    *) echo "run-{name}-vm: VMTUI_ACCEL must be tcg or kvm, not '$VMTUI_ACCEL'" >&2; exit 2 ;;
esac

{vlan_checks}
base={q(str(image.disk))}
if [ ! -r "$base" ]; then
    echo "run-{name}-vm: the guest image $base is missing; rebuild it (vmtui builds it on demand)" >&2
    exit 1
fi
# The root disk: a copy-on-write overlay of the cached image.  Kept only as
# long as the state directory is (--keep-vm-state).
disk={disk}
if [ ! -e "$disk" ]; then
    qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$disk"
fi

user_net=user,id=user.0
if [ -n "${{QEMU_NET_OPTS:-}}" ]; then
    user_net="$user_net,$QEMU_NET_OPTS"
fi

# qboot: a minimal firmware that boots the kernel faster than SeaBIOS and
# writes nothing to the serial console; no NIC option ROMs (no network boot).
# The SLiRP NIC's MAC says "VLAN 0" so the guest tells it from VLAN NICs.
# shellcheck disable=SC2086 # QEMU_OPTS is word-split on purpose, as in NixOS
exec qemu-system-x86_64 \\
    -name {q(name)} \\
    -m {memory_mb} \\
    -smp 1 \\
    -machine pc,accel="$accel" \\
    -cpu max \\
    -nodefaults \\
    -vga none \\
    -display none \\
    -bios qboot.rom \\
    -global virtio-net-pci.romfile= \\
    -device virtio-rng-pci \\
    -net nic,netdev=user.0,model=virtio,macaddr={vlan_mac(0, node_number)} \\
    -netdev "$user_net" \\
    -drive if=virtio,format=qcow2,file="$disk",discard=unmap \\
    -virtfs local,path={q(str(node_dir))},security_model=none,readonly=on,mount_tag=vmtui-node \\
    -virtfs local,path="$SHARED_DIR",security_model=none,mount_tag=shared \\
    -virtfs local,path="$TMPDIR/xchg",security_model=none,mount_tag=xchg \\
{vlan_args}    -kernel {q(str(image.kernel))} \\
    -initrd {q(str(image.initrd))} \\
    -append "{_double_quoted(" ".join(kernel_params))} ${{QEMU_KERNEL_PARAMS:-}}" \\
    ${{QEMU_OPTS:-}} \\
    "$@"
"""


def _guest_relative(guest_path: str) -> Path:
    if not guest_path.startswith("/"):
        raise ConfigError(f"guest file path must be absolute: {guest_path!r}")
    parts = [part for part in guest_path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ConfigError(f"not a usable guest file path: {guest_path!r}")
    return Path(*parts)


def _double_quoted(text: str) -> str:
    """Escape text for the inside of a bash double-quoted string."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def _check_name(value: str, what: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(f"{what} {value!r} is not usable: letters, digits, '-' and '_' only")


def _check_number(value: int, what: str) -> None:
    if not 1 <= value <= 254:
        raise ConfigError(f"{what} {value} is out of range (1..254)")
