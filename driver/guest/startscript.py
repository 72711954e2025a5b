"""NixOS-style start scripts (`bin/run-<name>-vm`) for the tiny guest.

The script behaves like the `startVM` script of a NixOS VM (reference §3.2):
it honours `TMPDIR` only together with `USE_TMPDIR`, creates `$TMPDIR/xchg`,
shares `${SHARED_DIR:-$TMPDIR/xchg}` as `shared`, and `exec`s QEMU with
`$QEMU_OPTS` and then `"$@"` last, so the driver's own arguments win.
`exec` matters: no shell may stay between the driver and QEMU.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from driver.errors import ConfigError
from driver.guest.cpio import CpioWriter
from driver.guest.tiny import TinyGuestImage

# Size of the scratch qcow2 that holds QMP snapshots/checkpoints (the tiny
# guest has no disk of its own; qcow2 grows on demand).
VMSTATE_DISK_SIZE = "1G"

# Kernel parameters that shorten a boot under TCG (measured with
# benchmarks/bench_tiny_guest.py): no spectre mitigations (pure overhead
# in an emulator), trust the TSC instead of calibrating it, skip probing the
# PS/2 controller and the BIOS disk services, no crypto self-tests, and PCI
# interrupt routing from the BIOS table instead of ACPI links (enabling each
# ACPI link cost ~0.2 s per PCI device).  The kernel logs at its usual level
# (info and above, ~370 lines): a node's console pane shows a real boot, and
# the serial output costs no measurable boot time (median to the marker 2.64 s
# at loglevel=4, 2.55 s at loglevel=7).
FAST_BOOT_PARAMS = (
    "loglevel=7",
    "mitigations=off",
    "tsc=reliable",
    "no_timer_check",
    "i8042.noaux",
    "i8042.nokbd",
    "i8042.nopnp",
    "edd=off",
    "cryptomgr.notests",
    "pci=noacpi",
)

# Filesystems init mounts over the initramfs: files placed below them vanish.
_MOUNTED_AT_BOOT = ("/tmp", "/run", "/dev", "/proc", "/sys")
# Directories of the base image whose mode is not the default 0755.
_BASE_DIR_MODES = {"/root": 0o700}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class HostEntry(NamedTuple):
    """One node as `/etc/hosts` of every guest names it."""

    name: str
    node_number: int
    vlan: int  # the node's first VLAN: its name resolves to 192.168.<vlan>.<node_number>


def vlan_mac(vlan: int, node_number: int) -> str:
    """NixOS's MAC for a node's NIC on a VLAN: 52:54:00:12:<vlan>:<node>."""
    return f"52:54:00:12:{vlan:02x}:{node_number:02x}"


def write_start_script(
    out_dir: Path,
    *,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    hosts: Sequence[HostEntry | tuple[str, int, int]],
    image: TinyGuestImage,
    memory_mb: int = 256,
    extra_kernel_params: str = "",
    files: Mapping[str, bytes] | None = None,
    boot_script: str | None = None,
) -> Path:
    """Write `<out_dir>/bin/run-<name>-vm` and return its path.

    `files` (guest path -> content) and `boot_script` (run by bash at boot,
    as /etc/vmtui/boot.sh) travel in a small per-node cpio archive appended
    to the shared initramfs, written next to the script; the cached base
    image is never rebuilt per node.  Raises ConfigError for bad input.
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
    if memory_mb < 64:
        raise ConfigError(f"node {name}: memory {memory_mb} MiB is too small (at least 64)")

    bin_dir = out_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    initrd = image.initrd
    if files or boot_script is not None:
        initrd = out_dir / f"{name}-initrd.img"
        extra = node_archive(files or {}, boot_script)
        with open(initrd, "wb") as out:
            base = image.initrd.read_bytes()
            out.write(base)
            # The kernel only looks for a cpio header at a 4-byte aligned
            # offset after a compressed archive; zeros in between are skipped.
            out.write(b"\0" * (-len(base) % 4))
            out.write(extra)

    script = start_script_text(
        name=name,
        node_number=node_number,
        vlans=vlans,
        hosts=entries,
        kernel=image.kernel,
        initrd=initrd,
        memory_mb=memory_mb,
        extra_kernel_params=extra_kernel_params,
    )
    path = bin_dir / f"run-{name}-vm"
    path.write_text(script)
    path.chmod(0o755)
    return path


def node_archive(files: Mapping[str, bytes], boot_script: str | None) -> bytes:
    """An uncompressed cpio of a node's own files and its boot hook."""
    buffer = io.BytesIO()
    with CpioWriter(buffer) as cpio:
        for guest_path, content in sorted(files.items()):
            if not guest_path.startswith("/"):
                raise ConfigError(f"guest file path must be absolute: {guest_path!r}")
            hidden_by = [m for m in _MOUNTED_AT_BOOT if guest_path.startswith(m + "/")]
            if hidden_by:
                raise ConfigError(
                    f"guest file {guest_path}: {hidden_by[0]} is mounted over at boot, the file would be hidden"
                )
            # The kernel applies a directory entry's mode to an existing
            # directory too: keep the base image's modes for the parents.
            for directory, mode in _BASE_DIR_MODES.items():
                if guest_path.startswith(directory + "/") and not cpio.has(directory):
                    cpio.add_dir(directory, mode)
            try:
                cpio.add_file(guest_path, content, 0o644)
            except ValueError as exc:
                raise ConfigError(f"guest file {guest_path}: {exc}") from exc
        if boot_script is not None:
            if cpio.has("/etc/vmtui/boot.sh"):
                raise ConfigError("/etc/vmtui/boot.sh is both a file and the boot script")
            cpio.add_file("/etc/vmtui/boot.sh", boot_script.encode(), 0o755)
    return buffer.getvalue()


def start_script_text(
    *,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    hosts: Sequence[HostEntry],
    kernel: Path,
    initrd: Path,
    memory_mb: int = 256,
    extra_kernel_params: str = "",
) -> str:
    """The bash text of a start script (see write_start_script)."""
    q = shlex.quote
    hosts_param = ",".join(f"{h.name}:{h.node_number}:{h.vlan}" for h in hosts)
    kernel_params = [
        "console=ttyS0",
        "panic=1",
        *FAST_BOOT_PARAMS,
        f"vmtui.hostname={name}",
    ]
    if hosts_param:
        kernel_params.append(f"vmtui.hosts={hosts_param}")
    if extra_kernel_params.strip():
        kernel_params.append(extra_kernel_params.strip())
    vmstate = f'"$TMPDIR"/{q(name + "-vmstate.qcow2")}'

    vlan_args = []
    for index, vlan in enumerate(vlans, start=1):
        vlan_args.append(
            f"    -device virtio-net-pci,netdev=vlan{index},mac={vlan_mac(vlan, node_number)} \\\n"
            f'    -netdev vde,id=vlan{index},sock="$QEMU_VDE_SOCKET_{vlan}" \\\n'
        )
    vlan_checks = "".join(
        f'if [ -z "${{QEMU_VDE_SOCKET_{vlan}:-}}" ]; then\n'
        f'    echo "run-{name}-vm: QEMU_VDE_SOCKET_{vlan} is not set (no switch for VLAN {vlan})" >&2\n'
        f"    exit 1\n"
        f"fi\n"
        for vlan in vlans
    )

    return f"""#!/usr/bin/env bash
# Start script of node "{name}" (vmtui tiny guest), NixOS style:
# the driver appends its own QEMU arguments ("$@"), QEMU_OPTS come before them.
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
# Scratch disk: no guest device uses it, it only stores QMP snapshots.
if [ ! -e {vmstate} ]; then
    qemu-img create -q -f qcow2 {vmstate} {VMSTATE_DISK_SIZE}
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
    -virtfs local,path="$SHARED_DIR",security_model=none,mount_tag=shared \\
    -virtfs local,path="$TMPDIR/xchg",security_model=none,mount_tag=xchg \\
{"".join(vlan_args)}    -drive if=none,id=vmstate,format=qcow2,file={vmstate} \\
    -kernel {q(str(kernel))} \\
    -initrd {q(str(initrd))} \\
    -append "{_double_quoted(" ".join(kernel_params))} ${{QEMU_KERNEL_PARAMS:-}}" \\
    ${{QEMU_OPTS:-}} \\
    "$@"
"""


def _double_quoted(text: str) -> str:
    """Escape text for the inside of a bash double-quoted string."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def _check_name(value: str, what: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(
            f"{what} {value!r} is not usable: letters, digits, '-' and '_' only"
        )


def _check_number(value: int, what: str) -> None:
    if not 1 <= value <= 254:
        raise ConfigError(f"{what} {value} is out of range (1..254)")
