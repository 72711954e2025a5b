"""Build and cache the Debian 12 disk image of the systemd guest.

`mmdebstrap --variant=minbase` installs systemd, the standard kernel and the
packages a spec asks for into a directory; the instrumentation of
`systemd_instrumentation` is copied over it; the tree becomes an ext4 file
system in a qcow2 file.  The kernel and initrd are copied out next to it, so
QEMU boots them directly (no boot loader: faster, and nothing to install).

Images are cached below `<cache>/systemd-<key>/`, the key being a hash of the
package set and the image's generation (`BUILDER_VERSION`, the base packages
and the instrumentation).  Images of other generations are deleted once
unused for a day.  A file lock serializes builders of the
same key; a build happens in a private directory that is renamed into place
only when complete, so a reader never sees half an image.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from driver import processes
from driver.errors import ConfigError, ImageBuildError
from driver.guest import systemd_instrumentation as instrumentation
from driver.guest.debs import cache_dir
from driver.guest.tiny import STALE_IMAGE_SECONDS

Progress = Callable[[str], None]

# Bump whenever the image's content would change for the same packages.
BUILDER_VERSION = "1"

DEBIAN_SUITE = "bookworm"

# What every systemd node has, besides the packages its spec asks for.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",  # logind needs the system bus; logind starts lingering users' managers
    "libpam-systemd",
    "bash",
    "coreutils",
    "util-linux",
    "procps",
    "ncurses-base",  # terminfo for the shell panes (xterm-256color)
    "iproute2",
    "iputils-ping",
    "netcat-openbsd",
    "kmod",
    "initramfs-tools",
    "zstd",  # the initrd compressor
    "linux-image-amd64",  # the standard flavour: the cloud kernel has no 9p
)

# Documentation, translations, and kernel modules for hardware a test VM
# never has (graphics, wireless, media, sound, HPC fabrics: about 210 MiB).
# Nobody misses them in a test node, and the build and the image get much
# smaller.
_MODULES = "/lib/modules/*/kernel"
DPKG_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
    *(
        f"{_MODULES}/{subtree}/*"
        for subtree in (
            "drivers/gpu",
            "drivers/net/wireless",
            "drivers/net/ethernet",
            "drivers/media",
            "drivers/infiniband",
            "drivers/staging",
            "drivers/bluetooth",
            "drivers/isdn",
            "drivers/comedi",
            "drivers/iio",
            "drivers/usb/gadget",
            "sound",
            "net/mac80211",
            "net/wireless",
            "net/bluetooth",
        )
    ),
)
# Re-included after the excludes above: QEMU's e1000 NIC, in case a test
# asks for that model instead of virtio.
DPKG_INCLUDES = (f"{_MODULES}/drivers/net/ethernet/intel/e1000/*",)

# Free space left in the guest's root file system (it grows into the
# per-run qcow2 overlay only as the guest writes).
FREE_SPACE_BYTES = 2 * 1024**3

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?$")



@dataclass(frozen=True)
class SystemdImage:
    """A built, cached systemd guest: direct-boot kernel, initrd, root disk."""

    directory: Path
    kernel: Path
    initrd: Path
    disk: Path  # qcow2 holding an ext4 root file system; never written to
    packages: tuple[str, ...]
    kernel_version: str


def normalize_packages(packages: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated extra packages; a bad name is a ConfigError."""
    if isinstance(packages, (str, bytes)):
        raise ConfigError(f"packages must be a list of Debian package names, not {packages!r}")
    wanted = set()
    for name in packages:
        if not isinstance(name, str) or not _PACKAGE_NAME.match(name):
            raise ConfigError(f"not a Debian package name: {name!r}")
        wanted.add(name)
    return tuple(sorted(wanted - set(BASE_PACKAGES)))


def image_generation() -> str:
    """A digest of everything that shapes an image except its package set.

    Images of another generation were built by another version of this
    builder and will not be used again: `build_image` prunes them.
    """
    material = json.dumps(
        {
            "builder": BUILDER_VERSION,
            "base": BASE_PACKAGES,
            "excludes": [DPKG_EXCLUDES, DPKG_INCLUDES],
            "instrumentation": [
                [(f.path, f.content, f.mode) for f in instrumentation.staged_files()],
                [(f.path, f.content, f.mode) for f in instrumentation.initramfs_files()],
                instrumentation.SYMLINKS,
            ],
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def image_key(packages: Iterable[str]) -> str:
    """The cache key of an image: its generation and its package set."""
    material = json.dumps({"generation": image_generation(), "extra": normalize_packages(packages)})
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def cached_image(packages: Iterable[str], cache_root: Path | None = None) -> SystemdImage | None:
    """The image for `packages` if it is already built, else None."""
    directory = (cache_root or cache_dir()) / f"systemd-{image_key(packages)}"
    return _load(directory)


def build_image(
    packages: Iterable[str] = (),
    *,
    progress: Progress | None = None,
    cache_root: Path | None = None,
) -> SystemdImage:
    """The cached image for `packages`, built first if needed (minutes)."""
    extra = normalize_packages(packages)
    report = progress or (lambda line: None)
    root = cache_root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = image_key(extra)
    final = root / f"systemd-{key}"
    image = _load(final)
    if image is not None:
        return image
    with _locked(root / f"systemd-{key}.lock", report):
        image = _load(final)  # another process may have built it meanwhile
        if image is not None:
            return image
        _remove_stale_builds(root, key)
        work = root / f"systemd-{key}.build-{os.getpid()}"
        try:
            _safe_rmtree(work)
            work.mkdir()
            started = time.monotonic()
            output = _build(work, extra, report)
            manifest = json.loads((output / "manifest.json").read_text())
            manifest["build_seconds"] = round(time.monotonic() - started, 1)
            (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.rename(output, final)
        finally:
            _safe_rmtree(work)
    _prune_other_generations(root, report)
    image = _load(final)
    if image is None:
        raise ImageBuildError(f"built image is incomplete: {final}")
    report(f"systemd guest image ready: {final}")
    return image


def _load(directory: Path) -> SystemdImage | None:
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    image = SystemdImage(
        directory=directory,
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        disk=directory / "root.qcow2",
        packages=tuple(manifest.get("extra_packages", ())),
        kernel_version=str(manifest.get("kernel_version", "")),
    )
    if not all(path.is_file() for path in (image.kernel, image.initrd, image.disk)):
        return None
    try:
        os.utime(manifest_path)  # "last used", for _prune_other_generations
    except OSError:
        pass  # a read-only cache is fine
    return image


@contextmanager
def _locked(path: Path, report: Progress) -> Iterator[None]:
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report("waiting for another vmtui building the same systemd guest image")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(work: Path, extra: tuple[str, ...], report: Progress) -> Path:
    """Build everything below `work`; returns the finished output directory."""
    before_install = work / "before-install"
    overlay = work / "overlay"
    rootfs = work / "rootfs"
    output = work / "output"
    instrumentation.write_tree(before_install, instrumentation.initramfs_files())
    instrumentation.write_tree(overlay, instrumentation.staged_files(), instrumentation.SYMLINKS)
    output.mkdir()

    packages = (*BASE_PACKAGES, *extra)
    report(f"building the systemd guest image ({len(extra)} extra packages: {', '.join(extra) or 'none'})")
    command = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        f"--include={','.join(packages)}",
        "--aptopt=Acquire::Languages \"none\"",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
        *(f"--dpkgopt=path-include={pattern}" for pattern in DPKG_INCLUDES),
        # Files the kernel's postinst needs when it builds the initrd.
        f"--setup-hook=cp -a {shlex.quote(str(before_install))}/. \"$1\"/",
        f"--customize-hook=cp -a {shlex.quote(str(overlay))}/. \"$1\"/",
        f"--customize-hook=chroot \"$1\" {instrumentation.LIBEXEC}/finish-image",
        f"--customize-hook=rm -f \"$1\"{instrumentation.LIBEXEC}/finish-image",
        DEBIAN_SUITE,
        str(rootfs),
        *(str(path) for path in host_debian_sources()),
    ]
    _run_streaming(command, report, "mmdebstrap")

    kernel_version = _copy_boot_files(rootfs, output)
    report(f"packing the root file system (kernel {kernel_version})")
    raw = work / "root.ext4"
    size = _tree_size(rootfs) + FREE_SPACE_BYTES
    size_mib = -(-size // 1024**2)
    _run_streaming(
        ["mkfs.ext4", "-q", "-L", "vmtui-root", "-d", str(rootfs), str(raw), f"{size_mib}M"],
        report,
        "mkfs.ext4",
    )
    _run_streaming(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(output / "root.qcow2")],
        report,
        "qemu-img convert",
    )
    raw.unlink()
    manifest = {
        "builder": BUILDER_VERSION,
        "generation": image_generation(),
        "base_packages": list(BASE_PACKAGES),
        "extra_packages": list(extra),
        "kernel_version": kernel_version,
        "suite": DEBIAN_SUITE,
        "root_size_mib": size_mib,
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return output


def host_debian_sources() -> list[Path]:
    """The host's apt source files that point at Debian (the guest's mirror).

    The guest is built from what apt on this machine uses, so a mirror or a
    snapshot configured for the host applies to the guest too.  With none,
    mmdebstrap picks its default mirror.
    """
    candidates = [Path("/etc/apt/sources.list")]
    directory = Path("/etc/apt/sources.list.d")
    if directory.is_dir():
        candidates += sorted(directory.glob("*.list")) + sorted(directory.glob("*.sources"))
    found = []
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        active = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if any("/debian" in line for line in active):
            found.append(path)
    return found


def _copy_boot_files(rootfs: Path, output: Path) -> str:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageBuildError("the image has no kernel in /boot (linux-image-amd64 not installed?)")
    kernel = kernels[-1]
    version = kernel.name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise ImageBuildError(f"the image has no initrd for kernel {version}")
    shutil.copyfile(kernel, output / "vmlinuz")
    shutil.copyfile(initrd, output / "initrd.img")
    return version


def _tree_size(root: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    # Inodes, directories and ext4's own metadata: a generous margin.
    return int(total * 1.15)


def _run_streaming(command: Sequence[str], report: Progress, what: str) -> None:
    """Run `command`, passing its output lines to `report`; raise on failure.

    The child is spawned through `driver.processes`, so it cannot outlive
    vmtui: ended on every exit path, killed with vmtui's death.
    """
    tail: deque[str] = deque(maxlen=30)
    try:
        process = processes.spawn(
            command,
            env=dict(os.environ, LC_ALL="C.UTF-8"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        raise ImageBuildError(f"cannot run {command[0]} (the systemd guest needs it on the host): {exc}") from exc
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                tail.append(line)
                report(line)
        status = process.wait()
    finally:
        # Interrupted (or done): SIGTERM first, and time to act on it, because
        # mmdebstrap unmounts what it mounted in the chroot when it ends.
        processes.registry.terminate(process, grace=30.0)
    if status != 0:
        missing = [m.group(1) for line in tail for m in [re.search(r"Unable to locate package (\S+)", line)] if m]
        if missing:
            raise ConfigError(f"unknown Debian package for the systemd guest: {', '.join(missing)}")
        last = tail[-1] if tail else f"exit status {status}"
        raise ImageBuildError(f"{what} failed (exit status {status}): {last}")


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    mounts = []
    with open("/proc/self/mounts") as handle:
        for line in handle:
            mountpoint = line.split()[1].replace("\\040", " ")
            if mountpoint.startswith(prefix):
                mounts.append(mountpoint)
    return mounts


def _safe_rmtree(path: Path) -> None:
    """Remove a build directory, but never through a mount left in a chroot.

    An interrupted mmdebstrap can leave /proc, /sys or /dev mounted below its
    root; deleting through those would delete host files.
    """
    if not path.exists():
        return
    for mountpoint in sorted(_mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mountpoint], check=False, capture_output=True)
    if _mounts_below(path):
        raise ImageBuildError(f"cannot remove {path}: file systems are still mounted below it")
    shutil.rmtree(path)


def _prune_other_generations(root: Path, report: Progress) -> None:
    """Delete cached images made by other versions of this builder, once unused.

    Another vmtui (another checkout, a run still going) may be using an
    image of another generation: its start scripts create their disks as
    overlays of it, at every start and restart, and a kept state's overlay
    needs it for as long as it is kept.  So an image goes only when nothing
    has loaded it for STALE_IMAGE_SECONDS (loading refreshes the manifest's
    mtime), as the tiny guest's images do.  An image whose lock another
    process holds (being built or rebuilt) is left alone too.
    """
    current = image_generation()
    cutoff = time.time() - STALE_IMAGE_SECONDS
    for directory in sorted(root.glob("systemd-*")):
        if not directory.is_dir() or "." in directory.name:
            continue
        manifest_path = directory / "manifest.json"
        try:
            generation = json.loads(manifest_path.read_text()).get("generation")
            last_used = manifest_path.stat().st_mtime
        except (OSError, ValueError):
            continue  # not a finished image: not ours to judge
        if generation == current or last_used >= cutoff:
            continue
        lock_path = root / f"{directory.name}.lock"
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            report(f"removing outdated systemd guest image {directory.name}")
            _safe_rmtree(directory)
            lock_path.unlink(missing_ok=True)


def _remove_stale_builds(root: Path, key: str) -> None:
    """Delete build directories of builders that died (we hold the lock)."""
    for stale in root.glob(f"systemd-{key}.build-*"):
        _safe_rmtree(stale)
