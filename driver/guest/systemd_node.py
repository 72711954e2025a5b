"""Per-node start scripts (`bin/run-<name>-vm`) for the systemd guest.

The conventions shared with the tiny guest and a NixOS `startVM` script
live in `startvm.py`; this module adds the root disk and the node directory.

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

import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from driver.errors import ConfigError
from driver.guest.startscript import FAST_BOOT_PARAMS
from driver.guest.startvm import HostEntry, checked_node, qemu_exec, script_head
from driver.guest.systemd_image import SystemdImage

# A Debian userland with systemd, journald and a database wants more than
# the tiny guest's default.
DEFAULT_MEMORY_MB = 1024
MINIMUM_MEMORY_MB = 256


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
    entries = checked_node(name, node_number, vlans, hosts)
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

    head = script_head(name, f"vmtui systemd guest, Debian {image.kernel_version}", vlans)
    return f"""{head}
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
""" + qemu_exec(
        name=name,
        node_number=node_number,
        vlans=vlans,
        memory_mb=memory_mb,
        kernel=image.kernel,
        initrd=image.initrd,
        kernel_params=kernel_params,
        devices_first=[
            '-drive if=virtio,format=qcow2,file="$disk",discard=unmap',
            f"-virtfs local,path={q(str(node_dir))},security_model=none,readonly=on,mount_tag=vmtui-node",
        ],
    )


def _guest_relative(guest_path: str) -> Path:
    if not guest_path.startswith("/"):
        raise ConfigError(f"guest file path must be absolute: {guest_path!r}")
    parts = [part for part in guest_path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ConfigError(f"not a usable guest file path: {guest_path!r}")
    return Path(*parts)
