"""What every vmtui start script (`bin/run-<name>-vm`) shares.

Both guest flavours write NixOS-style `startVM` scripts (reference §3.2):
`TMPDIR` honoured only with `USE_TMPDIR`, `$TMPDIR/xchg` and
`${SHARED_DIR:-$TMPDIR/xchg}` shared over 9p as `xchg` and `shared`, VLAN
NICs `52:54:00:12:<vlan>:<node>` on `$QEMU_VDE_SOCKET_<vlan>`, `$VMTUI_ACCEL`
(default tcg), `$QEMU_OPTS` and then `"$@"` last so the driver's own
arguments win, and `exec` so that no shell stays between driver and QEMU.

A flavour supplies the part in the middle (its disks) and its own devices;
this module writes the head of the script and the QEMU command line around
them, so the two flavours cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from driver.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class HostEntry(NamedTuple):
    """One node as `/etc/hosts` of every guest names it."""

    name: str
    node_number: int
    vlan: int  # the node's first VLAN: its name resolves to 192.168.<vlan>.<node_number>


def vlan_mac(vlan: int, node_number: int) -> str:
    """NixOS's MAC for a node's NIC on a VLAN: 52:54:00:12:<vlan>:<node>."""
    return f"52:54:00:12:{vlan:02x}:{node_number:02x}"


def checked_node(
    name: str,
    node_number: int,
    vlans: Sequence[int],
    hosts: Sequence[HostEntry | tuple[str, int, int]],
) -> list[HostEntry]:
    """Validate a node's identity and peers; the hosts as HostEntry values.

    Raises ConfigError naming the bad value: names end up in file names,
    kernel parameters and `/etc/hosts`, numbers in MAC and IP addresses.
    """
    check_name(name, "node name")
    check_number(node_number, "node number")
    for vlan in vlans:
        check_number(vlan, "VLAN")
    entries = [HostEntry(*entry) for entry in hosts]
    for entry in entries:
        check_name(entry.name, "host name")
        check_number(entry.node_number, "node number")
        check_number(entry.vlan, "VLAN")
    return entries


def check_name(value: str, what: str) -> None:
    """A node or host name: letters, digits, '-' and '_' (ConfigError if not)."""
    if not _NAME.match(value):
        raise ConfigError(f"{what} {value!r} is not usable: letters, digits, '-' and '_' only")


def check_number(value: int, what: str) -> None:
    """A node number or VLAN: 1..254, one byte of an address (ConfigError if not)."""
    if not 1 <= value <= 254:
        raise ConfigError(f"{what} {value} is out of range (1..254)")


def script_head(name: str, flavour: str, vlans: Sequence[int]) -> str:
    """The script up to the flavour's own part: temp dirs, accelerator, VLAN sockets.

    `flavour` completes the header comment ("vmtui tiny guest", ...).
    """
    vlan_checks = "".join(
        f'if [ -z "${{QEMU_VDE_SOCKET_{vlan}:-}}" ]; then\n'
        f'    echo "run-{name}-vm: QEMU_VDE_SOCKET_{vlan} is not set (no switch for VLAN {vlan})" >&2\n'
        f"    exit 1\n"
        f"fi\n"
        for vlan in vlans
    )
    return f"""#!/usr/bin/env bash
# Start script of node "{name}" ({flavour}), NixOS style:
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

{vlan_checks}"""


def qemu_exec(
    *,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    memory_mb: int,
    kernel: Path,
    initrd: Path,
    kernel_params: Sequence[str],
    devices_first: Sequence[str] = (),
    devices_last: Sequence[str] = (),
    graphics: bool = False,
) -> str:
    """The script's tail: user-mode networking and the `exec` of QEMU.

    `graphics` gives the node QEMU's standard VGA card.  QEMU never opens a
    window for it (`-display none`): vmtui shows the screen itself, from
    QMP screendumps, in the TUI.

    `devices_first` and `devices_last` are the flavour's own QEMU arguments
    (one option and its value per item, shell-quoted by the caller), placed
    before the shared directories and after the VLAN NICs; the order fixes
    the PCI slots, which a saved VM state depends on.
    """
    q = shlex.quote
    lines = [
        f"-name {q(name)}",
        f"-m {memory_mb}",
        "-smp 1",
        '-machine pc,accel="$accel"',
        "-cpu max",
        "-nodefaults",
        "-vga std" if graphics else "-vga none",
        "-display none",
        "-bios qboot.rom",
        "-global virtio-net-pci.romfile=",
        "-device virtio-rng-pci",
        f"-net nic,netdev=user.0,model=virtio,macaddr={vlan_mac(0, node_number)}",
        '-netdev "$user_net"',
        *devices_first,
        '-virtfs local,path="$SHARED_DIR",security_model=none,mount_tag=shared',
        '-virtfs local,path="$TMPDIR/xchg",security_model=none,mount_tag=xchg',
    ]
    lines += vlan_nic_arguments(vlans, node_number)
    lines += [
        *devices_last,
        f"-kernel {q(str(kernel))}",
        f"-initrd {q(str(initrd))}",
        f'-append "{double_quoted(" ".join(kernel_params))} ${{QEMU_KERNEL_PARAMS:-}}"',
        "${QEMU_OPTS:-}",
        '"$@"',
    ]
    arguments = " \\\n".join(f"    {line}" for line in lines)
    return f"""
user_net=user,id=user.0
if [ -n "${{QEMU_NET_OPTS:-}}" ]; then
    user_net="$user_net,$QEMU_NET_OPTS"
fi

# qboot: a minimal firmware that boots the kernel faster than SeaBIOS and
# writes nothing to the serial console; no NIC option ROMs (no network boot).
# The SLiRP NIC's MAC says "VLAN 0" so the guest tells it from VLAN NICs.
# shellcheck disable=SC2086 # QEMU_OPTS is word-split on purpose, as in NixOS
exec qemu-system-x86_64 \\
{arguments}
"""


def vlan_nic_arguments(vlans: Sequence[int], node_number: int) -> list[str]:
    """QEMU arguments of a node's VLAN NICs, NixOS's way: the k-th NIC is
    `vlan<k>` on `$QEMU_VDE_SOCKET_<vlan>`, with MAC 52:54:00:12:<vlan>:<node>."""
    arguments: list[str] = []
    for index, vlan in enumerate(vlans, start=1):
        arguments.append(f"-device virtio-net-pci,netdev=vlan{index},mac={vlan_mac(vlan, node_number)}")
        arguments.append(f'-netdev vde,id=vlan{index},sock="$QEMU_VDE_SOCKET_{vlan}"')
    return arguments


def double_quoted(text: str) -> str:
    """Escape text for the inside of a bash double-quoted string."""
    return re.sub(r'([\\"$`])', r"\\\1", text)
