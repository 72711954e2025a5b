"""Test instrumentation baked into the systemd guest image.

The files here make a plain Debian system behave like a NixOS test node
(reference §3.3): a root shell on hvc0 that prints the ready marker, no getty
on the serial line or on hvc0, the journal forwarded to ttyS0, static VLAN
addresses derived from the NIC's MAC, the per-node data and the shared
directories over 9p or virtiofs, and a user whose `systemd --user` runs from boot.

Everything is described as data (`staged_files`, `SYMLINKS`) and written
into a staging tree that the image builder copies over the root file system;
`FINISH_SCRIPT` then runs inside the chroot for what needs the guest's own
tools (passwords, users, the initramfs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The unprivileged user whose `systemd --user` instance starts at boot
# (lingering), for `systemctl(..., user="alice")`.
TEST_USER = "alice"

# Where the start script's per-node share is mounted in the guest: the
# node's /etc/hosts, files and boot script (see systemd_node.py).  The host
# name comes from the kernel command line (systemd.hostname=).
NODE_DIR = "/run/vmtui/node"

LIBEXEC = "/usr/local/libexec/vmtui"


@dataclass(frozen=True)
class StagedFile:
    path: str  # absolute path in the guest
    content: str
    mode: int = 0o644


BACKDOOR_SCRIPT = """\
#!/bin/bash
# The test driver's root shell on hvc0 (NixOS test-instrumentation compatible).
export USER=root HOME=/root DISPLAY=:0.0 PAGER=
set +u
. /etc/profile
cd /tmp
exec < /dev/hvc0 > /dev/hvc0
# The serial device can be briefly unavailable while udev settles it.
while ! exec 2> /dev/ttyS0; do sleep 0.1; done
echo "connecting to host..." >&2
stty -F /dev/hvc0 raw -echo
echo "Spawning backdoor root shell..."
# The commands come from /dev/hvc0 given as a script file, so bash is not
# interactive (no prompt, no job control) even though hvc0 is a tty.
PS1= exec /bin/bash --norc /dev/hvc0
"""

BACKDOOR_UNIT = f"""\
[Unit]
Description=vmtui backdoor root shell on hvc0
Requires=dev-hvc0.device dev-ttyS0.device
After=dev-hvc0.device dev-ttyS0.device vmtui-setup.service

[Service]
ExecStart={LIBEXEC}/backdoor
KillSignal=SIGHUP

[Install]
WantedBy=multi-user.target
"""

# The spare virtio consoles hvc1..hvc3 get no getty: the driver's shell
# panes (driver/shell.py) start their login shells there through the backdoor.

SETUP_SCRIPT = f"""\
#!/bin/bash
# Early per-node setup: mounts the shares the start script offers and applies
# the per-node data (hosts, files).  Runs before sysinit.target, so units
# started later (databases, the boot hook) see the final /etc.
# Two layouts (systemd_node.py): the fast shape shares the node directory
# over 9p as "vmtui-node"; a NixOS shape shares it as the store ("nix-store",
# on /nix/.ro-store, bound to /nix/store), over 9p or virtiofs.  Both share
# "xchg" and "shared".
# Every process costs a good fraction of a second under TCG on a busy host:
# bash builtins where possible (the share modules come loaded from the initrd).
set -u

# Which 9p tags this QEMU offers: mounting an absent tag would only log errors.
declare -A tags=()
for tag_file in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do
    [ -e "$tag_file" ] || continue
    IFS= read -r -d '' tag < "$tag_file"
    tags[$tag]=1
done
# virtiofs devices (virtio device id 26); this kernel does not show their
# tags, but the NixOS shape always offers the same three.
virtiofs=
for id_file in /sys/bus/virtio/devices/*/device; do
    [ -e "$id_file" ] || continue
    IFS= read -r id < "$id_file"
    [ "$id" = 0x001a ] && virtiofs=1
done

mount_share() {{  # tag mountpoint ro|rw
    local options=""
    [ "$3" = ro ] && options=",ro"
    if [ -n "${{tags[$1]:-}}" ]; then
        mount --mkdir -t 9p -o "trans=virtio,version=9p2000.L,msize=262144$options" "$1" "$2"
    elif [ -n "$virtiofs" ]; then
        mount --mkdir -t virtiofs -o "${{3}}" "$1" "$2"
    else
        return 1
    fi
}}

node=
# (Only over 9p: asking virtiofs for an absent tag logs an error.)
if [ -n "${{tags[vmtui-node]:-}}" ] && mount_share vmtui-node {NODE_DIR} ro; then
    node=1
elif mount_share nix-store /nix/.ro-store ro; then
    mount --mkdir --bind /nix/.ro-store /nix/store
    mount --mkdir --bind /nix/.ro-store {NODE_DIR}
    node=1
fi
if [ -n "$node" ]; then
    if [ -s {NODE_DIR}/hosts ]; then
        IFS= read -r -d '' hosts < {NODE_DIR}/hosts
        printf '%s' "$hosts" > /etc/hosts
    fi
    files=({NODE_DIR}/files/*)
    if [ -e "${{files[0]}}" ]; then
        # Modes as the start-script writer set them; owned by root here.
        cp -r --preserve=mode {NODE_DIR}/files/. /
    fi
fi
mount_share shared /tmp/shared rw
mount_share xchg /tmp/xchg rw
exit 0
"""

SETUP_UNIT = f"""\
[Unit]
Description=vmtui per-node setup (shares, hosts, files)
DefaultDependencies=no
# After tmpfiles: its boot-time cleanup of /tmp must never reach into the
# shares mounted under /tmp (they are host directories).
After=local-fs.target systemd-tmpfiles-setup.service systemd-modules-load.service
Before=sysinit.target network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={LIBEXEC}/setup

[Install]
WantedBy=sysinit.target
"""

BOOT_UNIT = f"""\
[Unit]
Description=vmtui per-node boot script
After=network.target vmtui-setup.service
ConditionPathExists={NODE_DIR}/boot.sh

[Service]
# Oneshot with RemainAfterExit: daemons the script starts in the background
# stay alive in this unit's cgroup.
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/bash {NODE_DIR}/boot.sh

[Install]
WantedBy=multi-user.target
"""

# NixOS numbering: MAC 52:54:00:12:<vlan>:<node> -> 192.168.<vlan>.<node>.
# A MAC of that form is not enough to call a NIC a VLAN NIC: a start script
# without -nodefaults (the NixOS shapes) leaves the user-mode NIC QEMU's
# default MAC 52:54:00:12:34:56, which reads as VLAN 0x34, node 0x56.  As a
# NixOS node knows its own VLAN MACs from its configuration, the start script
# names the node and its VLANs on the kernel command line (vmtui.node=,
# vmtui.vlans=), and only those exact MACs get VLAN addresses.
VLAN_ADDRESS_SCRIPT = """\
#!/bin/sh
# Called by udev for each NIC with a 52:54:00:12: MAC: its static address.
iface="$1"
mac=$(cat "/sys/class/net/$iface/address")
vlan=$((0x$(echo "$mac" | cut -d: -f5)))
node=$((0x$(echo "$mac" | cut -d: -f6)))
this_node= these_vlans=
for word in $(cat /proc/cmdline); do
    case "$word" in
        vmtui.node=*) this_node=${word#vmtui.node=} ;;
        vmtui.vlans=*) these_vlans=$(echo "${word#vmtui.vlans=}" | tr , ' ') ;;
    esac
done
is_vlan_nic=
if [ -n "$this_node" ]; then
    if [ "$node" = "$this_node" ]; then
        for wanted in $these_vlans; do
            [ "$vlan" = "$wanted" ] && is_vlan_nic=1
        done
    fi
elif [ "$vlan" -ne 0 ]; then
    is_vlan_nic=1  # a start script that does not say: trust the MAC
fi
ip link set "$iface" up
if [ -z "$is_vlan_nic" ]; then
    # The user-mode (SLiRP) NIC: QEMU's fixed guest address, no default
    # route (a test node reaches only its VLANs).
    ip address add 10.0.2.15/24 dev "$iface"
    exit 0
fi
ip address add "192.168.$vlan.$node/24" dev "$iface"
# nodad: usable at once, no duplicate detection delay on a private network.
ip address add "2001:db8:$vlan::$node/64" dev "$iface" nodad
"""

VLAN_UDEV_RULE = f"""\
ACTION=="add", SUBSYSTEM=="net", ATTR{{address}}=="52:54:00:12:*", RUN+="{LIBEXEC}/vlan-address $name"
"""

JOURNALD_CONF = """\
[Journal]
# Unit logs belong in the node's console pane, as on a NixOS test node.
ForwardToConsole=yes
TTYPath=/dev/ttyS0
MaxLevelConsole=debug
# A test node's journal needs no disk: keep it in /run (faster under TCG).
Storage=volatile
"""

SYSTEM_CONF = """\
[Manager]
ShowStatus=no
DefaultTimeoutStartSec=300
DefaultDeviceTimeoutSec=300
"""

INITRAMFS_CONF = """\
# Only the listed modules: a small initrd unpacks fast under TCG.
MODULES=list
COMPRESS=zstd
"""

# initramfs-tools hook: modules loaded by the initrd, before the root file
# system.  The root disk needs virtio_blk and ext4 (Debian builds them as
# modules).  The console, NIC, 9p and virtiofs modules are loaded here
# too: later, in the real root, they would queue behind udev's coldplug of
# every device, and the backdoor (hvc0) and the share setup wait for them
# (seconds under TCG).
INITRAMFS_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "virtio_console",
    "virtio_net",
    "9pnet_virtio",
    "9p",
    "virtiofs",  # the NixOS shape's shares (systemd_node.py)
)
INITRAMFS_HOOK = f"""\
#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for module in {" ".join(INITRAMFS_MODULES)}; do
    force_load "$module"
done
"""

FSTAB = """\
/dev/vda / ext4 rw,relatime 0 0
"""

# Runs once inside the chroot at the end of the build.
FINISH_SCRIPT = f"""\
#!/bin/bash
set -euo pipefail
passwd --delete root >/dev/null
useradd --create-home --shell /bin/bash {TEST_USER}
mkdir -p /var/lib/systemd/linger
touch /var/lib/systemd/linger/{TEST_USER}
echo vmtui > /etc/hostname
# mmdebstrap copied the build host's hosts file; the setup unit replaces
# this with the test's own at boot.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
: > /etc/resolv.conf
# Let systemd make a fresh machine id on every boot (nodes must differ).
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
update-initramfs -u -k all
"""

# Units a test node never wants: gettys on the consoles the driver uses
# (their output would land in the backdoor's replies), periodic maintenance
# and anything that only slows the boot down.
MASKED_UNITS = (
    "serial-getty@ttyS0.service",
    "serial-getty@hvc0.service",
    "getty@tty1.service",
    "console-getty.service",
    "getty-static.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "logrotate.timer",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
    "systemd-timesyncd.service",
    "systemd-networkd-wait-online.service",
    # The image's users are all created at build time.
    "systemd-sysusers.service",
    # Kernel modules nothing in a test node needs early.
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@dm_mod.service",
    "modprobe@loop.service",
)

# Drivers udev would load for QEMU's PC hardware that no test uses; each
# costs boot time under TCG (the floppy probe in particular).
MODPROBE_BLACKLIST = """\
blacklist floppy
blacklist pcspkr
blacklist i2c_piix4
blacklist kvm_intel
blacklist kvm_amd
blacklist kvm
blacklist intel_rapl_msr
blacklist intel_rapl_common
""" 

# Enabled units: (symlink path, target).
ENABLED_UNITS = (
    ("/etc/systemd/system/multi-user.target.wants/backdoor.service", "/etc/systemd/system/backdoor.service"),
    ("/etc/systemd/system/sysinit.target.wants/vmtui-setup.service", "/etc/systemd/system/vmtui-setup.service"),
    ("/etc/systemd/system/multi-user.target.wants/vmtui-boot.service", "/etc/systemd/system/vmtui-boot.service"),
)

SYMLINKS: tuple[tuple[str, str], ...] = (
    *((f"/etc/systemd/system/{unit}", "/dev/null") for unit in MASKED_UNITS),
    *ENABLED_UNITS,
)


def staged_files() -> list[StagedFile]:
    """Every file the instrumentation adds to the guest, with its mode."""
    return [
        StagedFile(f"{LIBEXEC}/backdoor", BACKDOOR_SCRIPT, 0o755),
        StagedFile(f"{LIBEXEC}/setup", SETUP_SCRIPT, 0o755),
        StagedFile(f"{LIBEXEC}/vlan-address", VLAN_ADDRESS_SCRIPT, 0o755),
        StagedFile(f"{LIBEXEC}/finish-image", FINISH_SCRIPT, 0o755),
        StagedFile("/etc/systemd/system/backdoor.service", BACKDOOR_UNIT),
        StagedFile("/etc/systemd/system/vmtui-setup.service", SETUP_UNIT),
        StagedFile("/etc/systemd/system/vmtui-boot.service", BOOT_UNIT),
        StagedFile("/etc/udev/rules.d/80-vmtui-vlan.rules", VLAN_UDEV_RULE),
        StagedFile("/etc/systemd/journald.conf.d/vmtui.conf", JOURNALD_CONF),
        StagedFile("/etc/systemd/system.conf.d/vmtui.conf", SYSTEM_CONF),
        StagedFile("/etc/modprobe.d/vmtui-blacklist.conf", MODPROBE_BLACKLIST),
        StagedFile("/etc/fstab", FSTAB),
    ]


def initramfs_files() -> list[StagedFile]:
    """Files that must exist before the kernel package builds its initrd."""
    return [
        StagedFile("/etc/initramfs-tools/conf.d/vmtui.conf", INITRAMFS_CONF),
        StagedFile("/etc/initramfs-tools/hooks/vmtui", INITRAMFS_HOOK, 0o755),
    ]


def write_tree(root: Path, files: list[StagedFile], symlinks: tuple[tuple[str, str], ...] = ()) -> None:
    """Write `files` and `symlinks` below `root` (a staging tree or a rootfs)."""
    for staged in files:
        target = root / staged.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(staged.content)
        target.chmod(staged.mode)
    for link, points_to in symlinks:
        target = root / link.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        os.symlink(points_to, target)
