"""Per-node start scripts (`bin/run-<name>-vm`) for the systemd guest.

The conventions shared with the tiny guest and a NixOS `startVM` script
live in `startvm.py`; this module adds the root disk and the node directory.

In the fast shape, the root disk is a qcow2 overlay `$TMPDIR/<name>.qcow2`
backed by the cached image, created when missing.  Under the driver `TMPDIR` is the machine's
state directory: deleted at the start of a run (writes are discarded) unless
the state is kept (`--keep-vm-state`), and then the overlay, with all the
guest wrote, is reused.  `NIX_DISK_IMAGE` overrides the path, as in NixOS.

What differs per node and is not known when the image is built (hosts,
files, the boot script) lives in a small directory next to the script,
shared read-only (in the fast shape over 9p as `vmtui-node`); the guest's
setup unit applies it early in the boot.

The NixOS shapes ("nixos", "nixos-virtiofs") use the script layout of
`nixos_shape.py` (SeaBIOS, no -nodefaults, NIX_DISK_IMAGE, the three NixOS
shares over 9p or virtiofsd).  The system lives on a disk image here, as a
NixOS VM built with its system on the disk (`useBootLoader`/a system
image): `NIX_DISK_IMAGE` (default `./<name>.qcow2` in the working
directory, the driver's state directory) is created on first start as a
qcow2 overlay backed by the cached image, instead of an empty filesystem.
The node directory travels as the store share (`nix-store`, mounted on
/nix/.ro-store and bound to /nix/store), as a NixOS node finds its
configuration in its store: no fourth share, no fourth virtiofsd.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from driver.errors import ConfigError
from driver.guest.nixos_shape import FAST, RootDisk, check_shape, nixos_shaped_script
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
    shape: str = FAST,
) -> Path:
    """Write `<out_dir>/bin/run-<name>-vm` (and `<out_dir>/<name>-node/`).

    `shape` is "fast" (qboot, vmtui's own layout) or a NixOS shape, "nixos"
    (9p shares) or "nixos-virtiofs" (virtiofsd); see the module docstring.

    `files` (guest path -> content) are copied into the guest's root file
    system before `sysinit.target`, so they can configure services that
    start later; `boot_script` runs with bash as the oneshot unit
    `vmtui-boot.service` once the network is up.  Raises ConfigError for
    bad input.
    """
    entries = checked_node(name, node_number, vlans, hosts)
    check_shape(shape, f"node {name}")
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
    write_script = start_script_text if shape == FAST else _nixos_script_writer(shape)
    path.write_text(
        write_script(
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
        "panic=1",
        *system_kernel_params(name, node_number, vlans),
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


def system_kernel_params(name: str, node_number: int, vlans: Sequence[int]) -> list[str]:
    """The kernel parameters of the systemd guest's system, in every shape.

    `vmtui.node` and `vmtui.vlans` tell the guest which NICs are its VLAN
    NICs (their exact MACs), so that no other NIC is taken for one.
    """
    return [
        "root=/dev/vda",
        "rw",
        "net.ifnames=0",  # eth0 = user-mode NIC, eth1.. = VLANs, as on NixOS
        *FAST_BOOT_PARAMS,
        f"systemd.hostname={name}",
        f"vmtui.node={node_number}",
        f"vmtui.vlans={','.join(str(vlan) for vlan in vlans)}",
    ]


def _nixos_script_writer(shape: str) -> Callable[..., str]:
    def nixos_script_text(
        *,
        name: str,
        node_number: int,
        vlans: Sequence[int],
        image: SystemdImage,
        node_dir: Path,
        memory_mb: int,
        extra_kernel_params: str,
    ) -> str:
        return nixos_shaped_script(
            shape=shape,
            name=name,
            flavour=f"vmtui systemd guest, Debian {image.kernel_version}",
            node_number=node_number,
            vlans=vlans,
            kernel=image.kernel,
            initrd=image.initrd,
            system_params=system_kernel_params(name, node_number, vlans),
            extra_kernel_params=extra_kernel_params,
            store=node_dir,
            memory_mb=memory_mb,
            root_disk=system_overlay_disk(name, image),
        )

    return nixos_script_text


def system_overlay_disk(name: str, image: SystemdImage) -> RootDisk:
    """NIX_DISK_IMAGE as a qcow2 overlay of the cached system image."""
    base = shlex.quote(str(image.disk))
    return RootDisk(
        functions=f"""# The system lives on a disk image: the node's disk is a copy-on-write
# overlay of the cached one (which is never written to).
create_system_disk_image() {{
    local image=$1 base={base}
    if [ ! -r "$base" ]; then
        echo "run-{name}-vm: the guest image $base is missing; rebuild it (vmtui builds it on demand)" >&2
        exit 1
    fi
    qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$image"
}}
""",
        create='create_system_disk_image "$NIX_DISK_IMAGE"',
    )


def _guest_relative(guest_path: str) -> Path:
    if not guest_path.startswith("/"):
        raise ConfigError(f"guest file path must be absolute: {guest_path!r}")
    parts = [part for part in guest_path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ConfigError(f"not a usable guest file path: {guest_path!r}")
    return Path(*parts)
