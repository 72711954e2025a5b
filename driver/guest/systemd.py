"""The systemd guest flavour: Debian 12 with real systemd units, no Nix needed.

Where the tiny guest is an initramfs with busybox, this flavour boots a real
Debian system (systemd, udev, journald, logind, the packages a spec asks
for) from a cached disk image, instrumented like a NixOS test node.  It is
slower to boot but runs real services: `wait_for_unit`, `systemctl`,
`systemctl --user`, journald output in the console pane.

Pieces (one job each):

- `systemd_instrumentation`: the files that make Debian a test node
  (backdoor.service on hvc0, no gettys on the driver's consoles, journald
  to ttyS0, VLAN addresses, per-node setup over 9p or virtiofs, a lingering user);
- `systemd_image`: `mmdebstrap` -> ext4 in qcow2 plus kernel and initrd,
  cached per package set under `<cache>/systemd-<key>/`;
- `systemd_node`: per-node `run-<name>-vm` scripts (fast or NixOS shape) and
  the small per-node directory the guest applies at boot.

Typical use (what the spec loader does for a `guest = "systemd"` node)::

    script = prepare_systemd_node(
        build_dir / "server",
        name="server", node_number=2, vlans=[1],
        hosts=[("client", 1, 1), ("server", 2, 1)],
        packages=["postgresql"],
        files={"/etc/postgresql/15/main/conf.d/listen.conf": b"listen_addresses = '*'\\n"},
        progress=print,
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from driver.errors import ImageBuildError
from driver.guest.startscript import HostEntry
from driver.guest.systemd_image import (
    BASE_PACKAGES,
    BUILDER_VERSION,
    Progress,
    SystemdImage,
    build_image,
    cached_image,
    image_key,
    normalize_packages,
)
from driver.guest.systemd_instrumentation import TEST_USER
from driver.guest.systemd_node import DEFAULT_MEMORY_MB, write_systemd_start_script

__all__ = [
    "BASE_PACKAGES",
    "BUILDER_VERSION",
    "DEFAULT_MEMORY_MB",
    "FLAVOUR",
    "ImageBuildError",
    "SystemdImage",
    "TEST_USER",
    "build_image",
    "cached_image",
    "image_key",
    "normalize_packages",
    "prepare_systemd_node",
    "write_systemd_start_script",
]

# The value of `guest = ...` in a spec that selects this flavour.
FLAVOUR = "systemd"


def prepare_systemd_node(
    out_dir: Path,
    *,
    name: str,
    node_number: int,
    vlans: Sequence[int],
    hosts: Sequence[HostEntry | tuple[str, int, int]],
    packages: Iterable[str] = (),
    memory_mb: int | None = None,
    extra_kernel_params: str = "",
    files: Mapping[str, bytes] | None = None,
    boot_script: str | None = None,
    progress: Progress | None = None,
    cache_root: Path | None = None,
    shape: str = "fast",
) -> Path:
    """Build (or reuse) the image for `packages`, write the node's start script.

    Returns the path of `<out_dir>/bin/run-<name>-vm`.  Building a new image
    takes a minute or more; `progress` receives its output line by line.
    Raises ConfigError for bad input (names, numbers, package names, unknown
    packages) and ImageBuildError when the build itself fails.
    """
    image = build_image(packages, progress=progress, cache_root=cache_root)
    return write_systemd_start_script(
        out_dir,
        name=name,
        node_number=node_number,
        vlans=vlans,
        hosts=hosts,
        image=image,
        memory_mb=memory_mb if memory_mb is not None else DEFAULT_MEMORY_MB,
        extra_kernel_params=extra_kernel_params,
        files=files,
        boot_script=boot_script,
        shape=shape,
    )
