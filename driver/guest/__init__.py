"""Built-in guests: boot vmtui tests without Nix.

The tiny guest is a Debian kernel plus an initramfs (busybox, static bash, a
real netcat) with NixOS-like test instrumentation; `write_start_script`
writes a NixOS-style `bin/run-<name>-vm` that boots it.

    image = build_tiny_guest(progress=print)        # cached after the first build
    script = write_start_script(out_dir, name="server", node_number=1, vlans=[1],
                                hosts=[HostEntry("server", 1, 1)], image=image)
"""

from __future__ import annotations

from driver.errors import GuestBuildError
from driver.guest.startscript import HostEntry, vlan_mac, write_start_script
from driver.guest.tiny import TinyGuestImage, build_tiny_guest

__all__ = [
    "GuestBuildError",
    "HostEntry",
    "TinyGuestImage",
    "build_tiny_guest",
    "vlan_mac",
    "write_start_script",
]
