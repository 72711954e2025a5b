"""Start scripts laid out like NixOS's `run-<name>-vm`, for the tiny guest.

The fast shape (`startscript.py`) boots through qboot with vmtui's own
choices.  This shape follows the `startVM` script of NixOS's
`qemu-vm.nix` (reference §3.2 and the 2026 supplement §1) so that every
layer of vmtui meets what a real NixOS VM does:

- the root disk `NIX_DISK_IMAGE` (default `./<name>.qcow2`, relative to the
  working directory, i.e. the driver's state dir) is created when missing
  as an empty ext4 filesystem labelled `nixos` converted to qcow2, before
  anything else, and attached as `virtio-blk-pci` with serial `root`;
- `TMPDIR` is honoured only with `USE_TMPDIR`, `$TMPDIR/xchg` is created
  and the script `cd`s into `$TMPDIR` before it starts QEMU;
- QEMU boots `-kernel`/`-initrd` through its default firmware (SeaBIOS:
  no `-bios`), with NixOS's console parameters and `$QEMU_KERNEL_PARAMS`;
- user networking with `$QEMU_NET_OPTS` appended, VLAN NICs, then
  `$QEMU_OPTS`, then `"$@"`, and QEMU is `exec`ed;
- three shared directories: the store (`nix-store`, read-only, mounted on
  /nix/.ro-store and bound to /nix/store), `xchg` and `shared`
  (`${SHARED_DIR:-$TMPDIR/xchg}`), over 9p (`-virtfs`) or, as NixOS since
  September 2026, over virtiofs: one `virtiofsd` per directory, started by
  the script, and QEMU with a shared memfd memory backend and
  `vhost-user-fs-pci` devices.  Those virtiofsd processes are children of
  the start script that outlive its `exec`: the driver ends them with QEMU.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driver.errors import ConfigError
from driver.guest.startscript import FAST_BOOT_PARAMS
from driver.guest.startvm import HostEntry, double_quoted, vlan_nic_arguments
from driver.guest.tiny import TinyGuestImage

# Start-script shapes a node of the built-in guests can have (the spec's `shape`).
FAST = "fast"
NIXOS_9P = "nixos"
NIXOS_VIRTIOFS = "nixos-virtiofs"
SHAPES = (FAST, NIXOS_9P, NIXOS_VIRTIOFS)

# NixOS's default root disk size (virtualisation.diskSize), in MiB.
DISK_SIZE_MB = 1024

# What NixOS's test instrumentation puts on the kernel command line
# (virtualisation.qemu.consoles, then test-instrumentation.nix).
NIXOS_CONSOLE_PARAMS = ("console=ttyS0,115200n8", "console=tty0")
NIXOS_TEST_PARAMS = ("panic=1", "boot.panic_on_fail", "clocksource=acpi_pm")

# The shared directories in NixOS's order: tag -> (host directory, read-only).
SHARE_TAGS = ("nix-store", "xchg", "shared")


def check_shape(shape: str, where: str) -> str:
    """`shape` if it is one of SHAPES; ConfigError naming `where` otherwise."""
    if shape not in SHAPES:
        raise ConfigError(f"{where}: shape must be one of {', '.join(repr(s) for s in SHAPES)}, not {shape!r}")
    return shape


def transport(shape: str) -> str:
    """How a NixOS-shaped node shares directories: "9p" or "virtiofs"."""
    return "virtiofs" if shape == NIXOS_VIRTIOFS else "9p"


@dataclass(frozen=True)
class RootDisk:
    """How a flavour's start script makes `NIX_DISK_IMAGE` when it is missing.

    `functions` defines bash functions (may be empty); `create` is the bash
    that makes "$NIX_DISK_IMAGE" (it may call those functions).
    """

    functions: str
    create: str


def empty_filesystem_disk() -> RootDisk:
    """NixOS's default: an empty ext4 filesystem labelled "nixos" in a qcow2."""
    return RootDisk(
        functions=f"""# An empty ext4 filesystem labelled "nixos", in a qcow2 image.
create_empty_filesystem_image() {{
    local image=$1 size=$2 raw
    raw=$(mktemp)
    qemu-img create -q -f raw "$raw" "$size"
    mkfs.ext4 -q -L nixos "$raw"
    qemu-img convert -f raw -O qcow2 "$raw" "$image"
    rm -f "$raw"
}}
""",
        create=f'create_empty_filesystem_image "$NIX_DISK_IMAGE" {DISK_SIZE_MB}M',
    )


def nixos_start_script_text(
    *,
    shape: str,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    hosts: Sequence[HostEntry],
    image: TinyGuestImage,
    initrd: Path,
    memory_mb: int,
    extra_kernel_params: str = "",
) -> str:
    """The bash text of a NixOS-shaped start script for the tiny guest."""
    hosts_param = ",".join(f"{h.name}:{h.node_number}:{h.vlan}" for h in hosts)
    system_params = [
        *FAST_BOOT_PARAMS,  # the system's own kernel-params
        f"vmtui.nixos={transport(shape)}",
        f"vmtui.system={image.system_path}",
        f"vmtui.hostname={name}",
        *([f"vmtui.hosts={hosts_param}"] if hosts_param else []),
    ]
    return nixos_shaped_script(
        shape=shape,
        name=name,
        flavour="vmtui tiny guest",
        node_number=node_number,
        vlans=vlans,
        kernel=image.kernel,
        initrd=initrd,
        system_params=system_params,
        extra_kernel_params=extra_kernel_params,
        store=image.store,
        memory_mb=memory_mb,
        root_disk=empty_filesystem_disk(),
    )


def nixos_shaped_script(
    *,
    shape: str,
    name: str,
    flavour: str,
    node_number: int,
    vlans: Sequence[int],
    kernel: Path,
    initrd: Path,
    system_params: Sequence[str],
    extra_kernel_params: str,
    store: Path,
    memory_mb: int,
    root_disk: RootDisk,
) -> str:
    """A NixOS-shaped start script for any built-in guest flavour.

    `system_params` are the system's own kernel parameters (NixOS's
    `boot.kernelParams`); the console and test parameters follow them, then
    `extra_kernel_params` and `$QEMU_KERNEL_PARAMS`.  `store` is the host
    directory shared read-only as the `nix-store` tag.
    """
    if shape not in (NIXOS_9P, NIXOS_VIRTIOFS):
        raise ConfigError(f"node {name}: not a NixOS shape: {shape!r}")
    q = shlex.quote
    shares = transport(shape)
    kernel_params = [
        *system_params,
        *([extra_kernel_params.strip()] if extra_kernel_params.strip() else []),
        *NIXOS_CONSOLE_PARAMS,
        *NIXOS_TEST_PARAMS,
    ]
    sources = {
        "nix-store": q(str(store)),
        "xchg": '"$TMPDIR/xchg"',
        "shared": '"${SHARED_DIR:-$TMPDIR/xchg}"',
    }

    arguments = [
        f"-name {q(name)}",
        f"-m {memory_mb}",
        "-smp 1",
        '-machine accel="$accel"',
        "-cpu max",
        "-device virtio-rng-pci",
        "-net nic,netdev=user.0,model=virtio",
        '-netdev user,id=user.0,"${QEMU_NET_OPTS:-}"',
    ]
    if shares == "virtiofs":
        # vhost-user needs the guest's RAM shared with virtiofsd.
        arguments += [
            f"-object memory-backend-memfd,id=mem,size={memory_mb}M,share=on",
            "-numa node,memdev=mem",
        ]
        for tag in SHARE_TAGS:
            arguments += [
                f'-chardev socket,id=fs-{tag},path="$TMPDIR/fs-{tag}.sock"',
                f"-device vhost-user-fs-pci,chardev=fs-{tag},tag={tag}",
            ]
    else:
        for tag in SHARE_TAGS:
            readonly = ",readonly=on" if tag == "nix-store" else ""
            arguments.append(f"-virtfs local,path={sources[tag]},security_model=none,mount_tag={tag}{readonly}")
    arguments += [
        '-drive cache=writeback,file="$NIX_DISK_IMAGE",id=drive1,if=none,index=1,werror=report',
        "-device virtio-blk-pci,bootindex=1,drive=drive1,serial=root",
    ]
    arguments += vlan_nic_arguments(vlans, node_number)
    arguments += [
        f"-kernel {q(str(kernel))}",
        f"-initrd {q(str(initrd))}",
        f'-append "{double_quoted(" ".join(kernel_params))} ${{QEMU_KERNEL_PARAMS:-}}"',
        "$QEMU_OPTS",
        '"$@"',
    ]
    qemu_line = " \\\n".join(f"    {a}" for a in arguments)

    vlan_checks = "".join(
        f'if [ -z "${{QEMU_VDE_SOCKET_{vlan}:-}}" ]; then\n'
        f'    echo "run-{name}-vm: QEMU_VDE_SOCKET_{vlan} is not set (no switch for VLAN {vlan})" >&2\n'
        f"    exit 1\n"
        f"fi\n"
        for vlan in vlans
    )
    virtiofsd_part = _virtiofsd_part(name, sources) if shares == "virtiofs" else ""
    disk_default = q(f"./{name}.qcow2")
    return f"""#!/usr/bin/env bash
# Start script of node "{name}" ({flavour}), laid out like NixOS's
# run-<name>-vm; shared directories over {shares}.  The driver appends its own
# QEMU arguments ("$@"); QEMU_OPTS come before them.
set -e
PATH=$PATH:/usr/sbin:/sbin

{root_disk.functions}
NIX_DISK_IMAGE=$(readlink -f "${{NIX_DISK_IMAGE:-{disk_default}}}") || test -z "$NIX_DISK_IMAGE"
if test -n "$NIX_DISK_IMAGE" && ! test -e "$NIX_DISK_IMAGE"; then
    echo "run-{name}-vm: creating the disk image $NIX_DISK_IMAGE"
    {root_disk.create}
fi

if [ -z "${{TMPDIR:-}}" ] || [ -z "${{USE_TMPDIR:-}}" ]; then
    TMPDIR=$(mktemp -d nix-vm.XXXXXXXXXX --tmpdir)
fi
export TMPDIR
mkdir -p "$TMPDIR/xchg"
mkdir -p "${{SHARED_DIR:-$TMPDIR/xchg}}"

case "${{VMTUI_ACCEL:-tcg}}" in
    tcg|kvm) accel=${{VMTUI_ACCEL:-tcg}} ;;
    *) echo "run-{name}-vm: VMTUI_ACCEL must be tcg or kvm, not '$VMTUI_ACCEL'" >&2; exit 2 ;;
esac
{vlan_checks}{virtiofsd_part}
cd "$TMPDIR"

# shellcheck disable=SC2086 # QEMU_OPTS is word-split on purpose, as in NixOS
exec qemu-system-x86_64 \\
{qemu_line}
"""


def _virtiofsd_part(name: str, sources: dict[str, str]) -> str:
    """Start one virtiofsd per shared directory and wait for its socket.

    A standalone virtiofsd (the Rust one NixOS ships) is preferred; Debian
    12 has QEMU's older C virtiofsd in /usr/lib/qemu, with other flags.
    Each runs in the background of this script, so it stays in the
    script's process group after the `exec`: that is how the driver finds
    and ends it.
    """
    starts = "\n".join(f"start_virtiofsd {tag} {sources[tag]}" for tag in SHARE_TAGS)
    return f"""
virtiofsd=$(command -v virtiofsd || true)
if [ -z "$virtiofsd" ] && [ -x /usr/lib/qemu/virtiofsd ]; then
    virtiofsd=/usr/lib/qemu/virtiofsd
fi
if [ -z "$virtiofsd" ]; then
    echo "run-{name}-vm: no virtiofsd (neither on PATH nor /usr/lib/qemu/virtiofsd)" >&2
    exit 1
fi

start_virtiofsd() {{ # tag directory
    local socket="$TMPDIR/fs-$1.sock" pid tries=0
    rm -f "$socket"
    if [ "$virtiofsd" = /usr/lib/qemu/virtiofsd ]; then
        "$virtiofsd" --socket-path="$socket" -o source="$2" -o cache=auto </dev/null &
    else
        "$virtiofsd" --socket-path="$socket" --shared-dir="$2" --cache=auto </dev/null &
    fi
    pid=$!
    until [ -S "$socket" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run-{name}-vm: virtiofsd for '$1' ($2) exited before it listened" >&2
            exit 1
        fi
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ]; then
            echo "run-{name}-vm: virtiofsd for '$1' did not listen on $socket within 30 s" >&2
            exit 1
        fi
        sleep 0.05
    done
}}
# A script that fails half-way ends the virtiofsd processes it started
# (after the exec, the driver ends them with QEMU).
trap 'kill $(jobs -p) 2>/dev/null' EXIT
{starts}
trap - EXIT
"""
