"""Fetching and unpacking Debian packages without installing them on the host.

`apt-get download` puts .deb files into a cache directory; `dpkg-deb -x`
unpacks them into a staging tree.  Nothing is installed into the host system.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from driver.errors import PackageError

Progress = Callable[[str], None]

# The kernel meta package: its versioned dependency is the real kernel.  The
# standard flavour, not "cloud-amd64": the cloud kernel has no 9p.
KERNEL_META_PACKAGE = "linux-image-amd64"



def cache_dir() -> Path:
    """Where vmtui keeps downloaded packages and built guests."""
    explicit = os.environ.get("VMTUI_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vmtui"


# What decides which package versions apt resolves to.
_APT_STATE_PATHS = (
    "/var/lib/apt/lists",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d",
    "/etc/apt/preferences.d",
)


def apt_state_stamp() -> list[int]:
    """Modification times of apt's lists and sources (0 where missing).

    `apt-get update` replaces files in the lists directory, which changes
    its mtime: an unchanged stamp means apt resolves packages as before.
    """
    stamp = []
    for path in _APT_STATE_PATHS:
        try:
            stamp.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamp.append(0)
    return stamp


def _run(args: Sequence[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            list(args), cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise PackageError(f"{args[0]} not found: the built-in guest needs apt and dpkg") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        last = detail[-1] if detail else f"exit status {done.returncode}"
        words = [args[0], *(arg for arg in args[1:] if not arg.startswith("-") and "::" not in arg)][:2]
        raise PackageError(f"{' '.join(words)} failed: {last}")
    return done.stdout


def _apt_options() -> list[str]:
    # As root, apt drops privileges to "_apt" for downloads, which cannot
    # write into a cache below /root and warns; downloading as root is fine
    # for a cache we own.
    return ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []


def kernel_package() -> str:
    """The versioned kernel package the meta package currently points to."""
    out = _run(["apt-cache", "depends", "--important", KERNEL_META_PACKAGE])
    for line in out.splitlines():
        match = re.match(r"\s*(?:\|)?Depends:\s*(linux-image-\S+)", line)
        if match:
            return match.group(1)
    raise PackageError(f"cannot find the kernel that {KERNEL_META_PACKAGE} depends on")


def _print_uris(packages: Sequence[str]) -> dict[str, str]:
    out = _run(["apt-get", *_apt_options(), "download", "--print-uris", *packages])
    # Lines look like: 'http://…/bash-static_5.2.15-2+b13_amd64.deb' bash-static_5.2.15-2+b13_amd64.deb 1079448 SHA256:…
    files = [line.split()[1] for line in out.splitlines() if line.startswith("'")]
    by_package = {name.split("_", 1)[0]: name for name in files}
    missing = [p for p in packages if p not in by_package]
    if missing:
        raise PackageError(f"apt has no download for: {', '.join(missing)}")
    return by_package


def resolve_deb_files(packages: Sequence[str], progress: Progress) -> dict[str, str]:
    """Package name -> the .deb file name apt would download (name_version_arch.deb).

    The file names carry the exact versions, so they key the guest cache.
    Runs `apt-get update` once if apt has no package lists yet.
    """
    try:
        return _print_uris(packages)
    except PackageError:
        progress("apt has no usable package lists; running apt-get update")
        _run(["apt-get", "update"])
        return _print_uris(packages)


def download(deb_files: dict[str, str], debs_dir: Path, progress: Progress) -> dict[str, Path]:
    """Make sure every .deb is in `debs_dir`; returns package -> path."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    missing = [pkg for pkg, name in deb_files.items() if not (debs_dir / name).is_file()]
    if missing:
        progress(f"downloading {', '.join(missing)}")
        _run(["apt-get", *_apt_options(), "download", *missing], cwd=debs_dir)
    paths = {pkg: debs_dir / name for pkg, name in deb_files.items()}
    absent = [str(path) for path in paths.values() if not path.is_file()]
    if absent:
        raise PackageError(f"apt-get download did not produce {', '.join(absent)}")
    return paths


def unpack(deb: Path, target: Path) -> None:
    """Unpack a .deb's file tree into `target` (no maintainer scripts run)."""
    target.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(target)])
