"""NixOS-style start scripts (`bin/run-<name>-vm`) for the tiny guest.

The script behaves like the `startVM` script of a NixOS VM (reference §3.2;
the parts shared with the systemd guest are in `startvm.py`).  The tiny
guest boots from the cached initramfs plus a small per-node archive, and
keeps a scratch qcow2 for QMP snapshots.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from driver.errors import ConfigError
from driver.guest.cpio import CpioWriter
from driver.guest.startvm import HostEntry, checked_node, qemu_exec, script_head, vlan_mac
from driver.guest.tiny import TinyGuestImage

__all__ = ["FAST_BOOT_PARAMS", "HostEntry", "node_archive", "vlan_mac", "write_start_script"]

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

# Left out on a graphical node: the screen needs its keyboard (send_key, the
# screen pane), and without ACPI's view of the PCI windows the kernel finds
# no room for the VGA card's 16 MiB framebuffer.
_NOT_FOR_GRAPHICS = ("i8042.nokbd", "pci=noacpi")

# Filesystems init mounts over the initramfs: files placed below them vanish.
_MOUNTED_AT_BOOT = ("/tmp", "/run", "/dev", "/proc", "/sys")
# Directories of the base image whose mode is not the default 0755.
_BASE_DIR_MODES = {"/root": 0o700}

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
    shape: str = "fast",
    graphics: bool = False,
) -> Path:
    """Write `<out_dir>/bin/run-<name>-vm` and return its path.

    `shape` is "fast" (qboot, vmtui's own layout) or a NixOS shape,
    "nixos" (9p shares) or "nixos-virtiofs" (`nixos_shape.py`).
    `graphics` gives the node a VGA screen with its console and a root
    shell on it (tty1), and its keyboard (fast shape only, for now).

    `files` (guest path -> content) and `boot_script` (run by bash at boot,
    as /etc/vmtui/boot.sh) travel in a small per-node cpio archive appended
    to the shared initramfs, written next to the script; the cached base
    image is never rebuilt per node.  Raises ConfigError for bad input.
    """
    entries = checked_node(name, node_number, vlans, hosts)
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

    if shape != "fast":
        if graphics:
            raise ConfigError(f"node {name}: graphics = true works with shape = \"fast\" only")
        # Imported here: nixos_shape builds on this module's boot parameters.
        from driver.guest.nixos_shape import check_shape, nixos_start_script_text

        script = nixos_start_script_text(
            shape=check_shape(shape, f"node {name}"),
            name=name,
            node_number=node_number,
            vlans=vlans,
            hosts=entries,
            image=image,
            initrd=initrd,
            memory_mb=memory_mb,
            extra_kernel_params=extra_kernel_params,
        )
    else:
        script = start_script_text(
            name=name,
            node_number=node_number,
            vlans=vlans,
            hosts=entries,
            kernel=image.kernel,
            initrd=initrd,
            memory_mb=memory_mb,
            extra_kernel_params=extra_kernel_params,
            graphics=graphics,
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
    graphics: bool = False,
) -> str:
    """The bash text of a start script (see write_start_script)."""
    q = shlex.quote
    hosts_param = ",".join(f"{h.name}:{h.node_number}:{h.vlan}" for h in hosts)
    boot_params: tuple[str, ...] = FAST_BOOT_PARAMS
    if graphics:
        boot_params = tuple(p for p in FAST_BOOT_PARAMS if p not in _NOT_FOR_GRAPHICS)
    kernel_params = [
        "console=ttyS0",
        "panic=1",
        *boot_params,
        f"vmtui.hostname={name}",
    ]
    if graphics:
        kernel_params.append("vmtui.graphics")
    if hosts_param:
        kernel_params.append(f"vmtui.hosts={hosts_param}")
    if extra_kernel_params.strip():
        kernel_params.append(extra_kernel_params.strip())
    vmstate = f'"$TMPDIR"/{q(name + "-vmstate.qcow2")}'

    head = script_head(name, "vmtui tiny guest", vlans)
    return f"""{head}
# Scratch disk: no guest device uses it, it only stores QMP snapshots.
if [ ! -e {vmstate} ]; then
    qemu-img create -q -f qcow2 {vmstate} {VMSTATE_DISK_SIZE}
fi
""" + qemu_exec(
        name=name,
        node_number=node_number,
        vlans=vlans,
        memory_mb=memory_mb,
        kernel=kernel,
        initrd=initrd,
        kernel_params=kernel_params,
        devices_last=[f"-drive if=none,id=vmstate,format=qcow2,file={vmstate}"],
        graphics=graphics,
    )
