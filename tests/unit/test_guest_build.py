"""Building the tiny guest: cache key, concurrent builders, archive contents.

Uses the real apt and dpkg-deb (no guest is booted).  Packages already in the
user's vmtui cache are linked into the temporary cache to spare downloads.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driver.guest import tiny
from driver.guest.debs import cache_dir

from test_guest_cpio import parse_newc  # same directory: on sys.path under pytest

pytestmark = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt and dpkg"
)

BUILD = "from driver.guest import build_tiny_guest; print('KEY', build_tiny_guest(progress=print).key)"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two processes build into one empty cache at the same time."""
    cache = tmp_path_factory.mktemp("cache")
    shared_debs = cache_dir() / "debs"
    if shared_debs.is_dir():
        (cache / "debs").mkdir()
        for deb in shared_debs.glob("*.deb"):
            os.link(deb, cache / "debs" / deb.name)
    env = dict(os.environ, VMTUI_CACHE_DIR=str(cache))
    repo = Path(__file__).resolve().parents[2]
    builders = [
        subprocess.Popen([sys.executable, "-c", BUILD], env=env, cwd=repo, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [builder.communicate()[0] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], outputs
    return cache, outputs


def test_concurrent_builders_build_once_and_agree(built: tuple[Path, list[str]]) -> None:
    cache, outputs = built
    keys = {line for output in outputs for line in output.splitlines() if line.startswith("KEY ")}
    assert len(keys) == 1
    assert sum("assembling the initramfs" in output for output in outputs) == 1
    (image_dir,) = [p for p in (cache / "tiny").iterdir() if p.is_dir()]
    assert image_dir.name == keys.pop().split()[1]
    assert not list((cache / "tiny").glob(".build-*"))


def test_a_cached_build_asks_apt_nothing(built: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    cache, _ = built
    monkeypatch.setattr(tiny.debs, "kernel_package", lambda: pytest.fail("apt was asked again"))
    first = tiny.build_tiny_guest(cache=cache)
    assert tiny.build_tiny_guest(cache=cache) == first


def test_archive_holds_what_the_guest_needs(built: tuple[Path, list[str]]) -> None:
    cache, _ = built
    image = tiny.build_tiny_guest(cache=cache)
    assert image.kernel.name == "vmlinux"  # decompressed once, booted through PVH
    entries = {e["name"]: e for e in parse_newc(gzip.decompress(image.initrd.read_bytes()))}
    for path in (
        "init", "bin/busybox", "bin/bash", "bin/nc", "usr/bin/timeout", "etc/passwd", "etc/profile",
        "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib/x86_64-linux-gnu/libbsd.so.0", "usr/lib/x86_64-linux-gnu/libmd.so.0", "dev/console",
    ):
        assert path in entries, path
    assert entries["bin/sh"]["data"] == b"/bin/busybox"
    assert entries["bin/bash"]["data"].startswith(b"\x7fELF")
    modules = entries["etc/vmtui/modules"]["data"].decode().split()
    names = [Path(m).name for m in modules]
    assert names.index("virtio_ring.ko") < names.index("virtio.ko") < names.index("virtio_pci.ko")
    assert names.index("9pnet.ko") < names.index("9pnet_virtio.ko") and "9p.ko" in names
    for module in modules:
        assert not entries[module.lstrip("/")]["data"].endswith(b"~Module signature appended~\n")


def test_stale_images_and_broken_builds_are_removed(tmp_path: Path) -> None:
    for name in ("current", "recent", "old", ".build-crashed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    long_ago = time.time() - tiny.STALE_IMAGE_SECONDS - 60
    os.utime(tmp_path / "old" / "manifest.json", (long_ago, long_ago))
    os.utime(tmp_path / "current" / "manifest.json", (long_ago, long_ago))
    tiny._remove_stale(tmp_path, keep="current")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "recent"]
