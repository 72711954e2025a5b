#!/bin/sh
# /init of the vmtui tiny guest (PID 1, run by busybox ash).
#
# Gives the instrumentation a NixOS test guest has: logs on ttyS0, hostname,
# static addresses on VLAN NICs, /etc/hosts naming every node, the shared 9p
# directories, and the root backdoor shell on /dev/hvc0 that the driver
# waits for.  It then stays alive as a reaper and turns busybox's
# poweroff/reboot signals into a real power-off, so QEMU exits.
#
# Kernel command line it reads:
#   vmtui.hostname=NAME            the node's host name
#   vmtui.hosts=NAME:N:V,...       every node: name, node number, first VLAN
#   vmtui.nobackdoor               never start the backdoor (tests of a guest
#                                  that never connects)
#   vmtui.nixos=9p|virtiofs        a NixOS-shaped node (the start script is
#                                  laid out like NixOS's run-<name>-vm): load
#                                  the extra modules, mount the root disk
#                                  (ext4 labelled "nixos") on /var, the store
#                                  share on /nix/.ro-store (bound to
#                                  /nix/store), shared/xchg over that transport
#   vmtui.system=/nix/store/...    with vmtui.nixos: the root shell runs from
#                                  this system in the store, as NixOS's does
#   vmtui.graphics                 a graphical node: load the VGA framebuffer
#                                  driver and run a root shell on tty1, the
#                                  console shown on the screen
# Helper installed next to it: /usr/bin/vmtui-shares mount|unmount (the 9p
# shares; unmount them before a QEMU snapshot, which 9p blocks).
# Files it honours:
#   /etc/vmtui/modules             kernel modules to load, in order (build time)
#   /etc/vmtui/modules-graphics    the same for a graphical node, loaded after
#   /etc/vmtui/boot.sh             run with bash in the background at boot,
#                                  output on ttyS0 (a node's `boot` hook)

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root USER=root LOGNAME=root
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run

# Everything this script says goes to the serial console the driver reads.
exec </dev/null >/dev/ttyS0 2>&1

# Each step says what it did: the node's console pane shows the boot as it
# happens (one echo is a builtin, free next to the step it describes).
say() { echo "vmtui-init: $*"; }

read -r kernel_release </proc/sys/kernel/osrelease
say "PID 1 on Linux $kernel_release: /proc /sys /dev /tmp /run mounted"

read -r CMDLINE </proc/cmdline
# The command line is split into words; `set -f` keeps a '*' in it literal.
cmdline_value() {
    set -f
    for word in $CMDLINE; do
        case $word in "$1="*) set +f; echo "${word#*=}"; return 0 ;; esac
    done
    set +f
    return 1
}
cmdline_flag() {
    set -f
    for word in $CMDLINE; do [ "$word" = "$1" ] && { set +f; return 0; }; done
    set +f
    return 1
}

# Addresses must be usable as soon as they are set: no duplicate address
# detection delay on a private test network.  Set before the NICs appear.
echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad
echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad

load_modules() {
    [ -f "$1" ] || return 0
    loaded=
    while read -r module; do
        [ -n "$module" ] || continue
        name=${module##*/}
        name=${name%.ko*}
        if insmod "$module"; then
            loaded="$loaded $name"
        else
            say "cannot load $module"
        fi
    done <"$1"
    say "modules loaded:$loaded"
}
load_modules /etc/vmtui/modules
NIXOS_SHARES=$(cmdline_value vmtui.nixos) || NIXOS_SHARES=
if [ -n "$NIXOS_SHARES" ]; then
    load_modules /etc/vmtui/modules.nixos
fi

HOSTNAME=$(cmdline_value vmtui.hostname) || HOSTNAME=machine
hostname "$HOSTNAME"
echo "$HOSTNAME" >/etc/hostname
say "hostname $HOSTNAME"

# --- network -----------------------------------------------------------------
ip link set lo up
slirp_done=
for dev in /sys/class/net/*; do
    iface=${dev##*/}
    [ "$iface" = lo ] && continue
    read -r mac <"$dev/address"
    case $mac in
    52:54:00:12:00:* | 52:54:00:12:34:56)
        # vmtui's fast start script gives the user-mode (SLiRP) NIC "VLAN 0";
        # a NixOS-shaped one leaves it QEMU's default MAC, as NixOS does.
        is_vlan= ;;
    52:54:00:12:??:??) is_vlan=1 ;;
    *) is_vlan= ;;
    esac
    ip link set "$iface" up
    if [ -n "$is_vlan" ]; then
        rest=${mac#52:54:00:12:}
        vlan=$((0x${rest%%:*}))
        node=$((0x${rest#*:}))
        ip addr add "192.168.$vlan.$node/24" dev "$iface"
        ip -6 addr add "2001:db8:$vlan::$node/64" dev "$iface"
        say "$iface: vlan $vlan, 192.168.$vlan.$node"
    elif [ -z "$slirp_done" ]; then
        # QEMU's user-mode network: fixed guest address, no default route
        # (as in NixOS tests, a guest reaches only its test network).
        ip addr add 10.0.2.15/24 dev "$iface"
        slirp_done=1
        say "$iface: user-mode network, 10.0.2.15"
    fi
done

{
    echo "127.0.0.1 localhost"
    echo "::1 localhost"
    self_listed=
    named=
    hosts=$(cmdline_value vmtui.hosts) || hosts=
    IFS=,
    for entry in $hosts; do
        IFS=:
        set -- $entry
        IFS=,
        [ $# -eq 3 ] || continue
        echo "192.168.$3.$2 $1"
        echo "2001:db8:$3::$2 $1"
        named="$named $1"
        [ "$1" = "$HOSTNAME" ] && self_listed=1
    done
    unset IFS
    [ -n "$self_listed" ] || echo "127.0.0.2 $HOSTNAME"
} >/etc/hosts
[ -n "$self_listed" ] || named="$named $HOSTNAME"
say "/etc/hosts: localhost$named"

# --- shared directories -----------------------------------------------------------
# /tmp/shared (tag "shared") and /tmp/xchg (tag "xchg"); the helper also
# unmounts them for snapshots, which QEMU refuses while they are mounted.
mount_share() { # tag where [ro]
    mkdir -p "$2"
    if [ "$NIXOS_SHARES" = virtiofs ]; then
        mount -t virtiofs ${3:+-o ro} "$1" "$2"
    else
        # NixOS's 9p options (virtualisation.msize defaults to 16384).
        mount -t 9p -o "trans=virtio,version=9p2000.L,msize=16384${3:+,ro}" "$1" "$2"
    fi
}

if [ -z "$NIXOS_SHARES" ]; then
    if vmtui-shares mount; then
        say "9p shares mounted on /tmp/shared and /tmp/xchg"
    else
        say "cannot mount the 9p shares /tmp/shared and /tmp/xchg"
    fi
else
    # The root disk: the start script creates it (an empty ext4 labelled
    # "nixos", as NixOS does) when it is missing; it appears asynchronously
    # once virtio_blk has probed it.
    tries=0
    while ! disk=$(findfs LABEL=nixos 2>/dev/null); do
        tries=$((tries + 1))
        [ "$tries" -gt 200 ] && break
        sleep 0.05
    done
    if [ -n "$disk" ] && mount -t ext4 "$disk" /var; then
        mkdir -p /var/log /var/lib
        say "root disk $disk (LABEL=nixos) mounted on /var"
    else
        say "no disk labelled nixos: /var stays in memory"
    fi
    if mount_share nix-store /nix/.ro-store ro && mkdir -p /nix/store && mount -o bind /nix/.ro-store /nix/store; then
        say "$NIXOS_SHARES: nix-store mounted on /nix/.ro-store, bound to /nix/store"
    else
        say "cannot mount the nix-store share ($NIXOS_SHARES)"
    fi
    if mount_share xchg /tmp/xchg && mount_share shared /tmp/shared; then
        say "$NIXOS_SHARES shares mounted on /tmp/xchg and /tmp/shared"
    else
        say "cannot mount the $NIXOS_SHARES shares /tmp/xchg and /tmp/shared"
    fi
fi
SYSTEM=$(cmdline_value vmtui.system) || SYSTEM=
BACKDOOR_BASH=bash
if [ -n "$SYSTEM" ] && [ -x "$SYSTEM/bin/bash" ]; then
    BACKDOOR_BASH=$SYSTEM/bin/bash
fi

# --- poweroff / reboot -----------------------------------------------------------
# busybox poweroff/halt/reboot signal PID 1 (USR2/USR1/TERM) and leave the
# rest to it.  A halted CPU would keep QEMU running, so halt powers off too.
shutdown_guest() {
    say "$1: stopping all processes"
    trap '' USR1 USR2 TERM INT
    kill -TERM -1 2>/dev/null
    sleep 0.2
    kill -KILL -1 2>/dev/null
    sync
    vmtui-shares unmount 2>/dev/null
    [ -n "$NIXOS_SHARES" ] && umount /var 2>/dev/null
    "$1" -f
}
trap 'shutdown_guest poweroff' USR1 USR2
trap 'shutdown_guest reboot' TERM
# Ctrl-Alt-Delete (Machine.reboot() sends it) reaches PID 1 as SIGINT.
trap 'shutdown_guest reboot' INT

# --- boot hook -------------------------------------------------------------------
if [ -f /etc/vmtui/boot.sh ]; then
    say "running /etc/vmtui/boot.sh"
    (cd / && exec setsid bash /etc/vmtui/boot.sh) &
fi

# --- screen --------------------------------------------------------------------------
# A graphical node shows its console on the VGA screen (the framebuffer
# console takes tty1 once the DRM driver is loaded) with a root shell on it,
# so tests can type into it (send_chars) and read it back (OCR).  The shell
# is started again whenever it exits.
if cmdline_flag vmtui.graphics; then
    load_modules /etc/vmtui/modules-graphics
    say "screen: root shell on /dev/tty1"
    (
        cd /root
        while :; do
            PS1="$HOSTNAME# " setsid -c bash --norc -i <>/dev/tty1 >&0 2>&1
            sleep 1
        done
    ) &
fi

# --- backdoor ----------------------------------------------------------------------
spawn_backdoor() {
    # /dev/hvc0..7 exist as soon as the hvc driver registers, but opening
    # one fails until virtio_console has added the port behind it, which
    # happens asynchronously after the module loads: so try opening it.
    tries=0
    while ! : </dev/hvc0 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ]; then
            say "no /dev/hvc0 after 30 s: no backdoor"
            return
        fi
        sleep 0.05
    done
    say "backdoor: root shell on /dev/hvc0"
    (
        cd /tmp
        [ -f /etc/profile ] && . /etc/profile
        export PAGER=
        exec </dev/hvc0 >/dev/hvc0 2>/dev/ttyS0
        echo "connecting to host..." >&2
        stty -F /dev/hvc0 raw -echo # no newline translation, no echo
        echo "Spawning backdoor root shell..."
        # A script path (not stdin) keeps bash non-interactive although
        # hvc0 is a terminal: no prompt, no job control.
        PS1= exec "$BACKDOOR_BASH" --norc /dev/hvc0
    ) &
}

if cmdline_flag vmtui.nobackdoor; then
    say "vmtui.nobackdoor: not starting the backdoor"
else
    spawn_backdoor
fi

# --- reaper ------------------------------------------------------------------------
# As PID 1 we inherit every orphan.  ash's `wait` reaps any child that exits
# (not only its own jobs) and returns early when a trapped signal arrives.
while :; do
    sleep 3600 &
    wait $!
done
