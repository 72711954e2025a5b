"""Kernel module dependency resolution and the ELF reading behind it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from driver.guest.elf import ElfError, interpreter, modinfo, needed_libraries
from driver.guest.kmod import load_order, module_name, resolve_modules


def fake_module(info: dict[str, str]) -> bytes:
    """A minimal ELF64 relocatable file whose only content is a .modinfo section."""
    modinfo_blob = b"".join(f"{k}={v}".encode() + b"\0" for k, v in info.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    header_size, section_header_size = 64, 64
    modinfo_offset = header_size
    shstrtab_offset = modinfo_offset + len(modinfo_blob)
    sections_offset = shstrtab_offset + len(shstrtab)
    header = (
        b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
        + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, sections_offset, 0, 64, 0, 0, 64, 3, 2)
    )
    assert len(header) == header_size

    def section(name: int, sh_type: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, sh_type, 0, 0, offset, size, 0, 0, 1, 0)

    sections = (
        section(0, 0, 0, 0)
        + section(1, 1, modinfo_offset, len(modinfo_blob))
        + section(10, 3, shstrtab_offset, len(shstrtab))
    )
    assert len(sections) == 3 * section_header_size
    return header + modinfo_blob + shstrtab + sections


def test_modinfo_reads_depends_and_repeated_keys() -> None:
    data = fake_module({"alias": "a1", "depends": "virtio,virtio_ring", "name": "virtio_net"})
    info = modinfo(data)
    assert info["depends"] == ["virtio,virtio_ring"]
    assert info["name"] == ["virtio_net"]


def test_modinfo_rejects_non_modules() -> None:
    with pytest.raises(ElfError):
        modinfo(b"#!/bin/sh\n" + b"\0" * 64)


def test_module_names_follow_the_kernel() -> None:
    assert module_name("drivers/char/hw_random/virtio-rng.ko") == "virtio_rng"
    assert module_name("net/9p/9pnet_virtio.ko.xz") == "9pnet_virtio"


def test_dependencies_come_first_and_once() -> None:
    deps = {
        "virtio_ring": [],
        "virtio": ["virtio_ring"],
        "virtio_pci": ["virtio_ring", "virtio_pci_modern_dev", "virtio"],
        "virtio_pci_modern_dev": [],
        "9p": ["9pnet", "netfs", "fscache"],
        "9pnet": [],
        "netfs": [],
        "fscache": ["netfs"],
    }
    order = load_order(["virtio", "virtio_pci", "9p"], deps)
    assert sorted(order) == sorted(deps)
    for module, needs in deps.items():
        assert all(order.index(need) < order.index(module) for need in needs)
    assert order.index("virtio_ring") < order.index("virtio")


def test_cycles_and_unknown_modules_are_errors() -> None:
    with pytest.raises(ValueError, match="a -> b -> a"):
        load_order(["a"], {"a": ["b"], "b": ["a"]})
    with pytest.raises(KeyError):
        load_order(["missing"], {})


def test_resolve_modules_reads_a_module_tree(tmp_path: Path) -> None:
    (tmp_path / "drivers/virtio").mkdir(parents=True)
    (tmp_path / "drivers/char/hw_random").mkdir(parents=True)
    (tmp_path / "drivers/virtio/virtio_ring.ko").write_bytes(fake_module({"depends": ""}))
    (tmp_path / "drivers/virtio/virtio.ko").write_bytes(fake_module({"depends": "virtio_ring"}))
    rng = tmp_path / "drivers/char/hw_random/virtio-rng.ko"
    rng.write_bytes(fake_module({"depends": "virtio,virtio_ring"}))
    files = resolve_modules(tmp_path, ["virtio-rng"])
    assert [module_name(f) for f in files] == ["virtio_ring", "virtio", "virtio_rng"]
    with pytest.raises(KeyError, match="virtio_net"):
        resolve_modules(tmp_path, ["virtio_net"])


@pytest.mark.skipif(not Path("/usr/bin/timeout").exists(), reason="needs a dynamic host binary")
def test_needed_libraries_of_a_real_program() -> None:
    data = Path("/usr/bin/timeout").read_bytes()
    assert "libc.so.6" in needed_libraries(data)
    assert interpreter(data) == "/lib64/ld-linux-x86-64.so.2"


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs busybox-static on the host")
def test_static_program_needs_nothing() -> None:
    data = Path("/bin/busybox").read_bytes()
    assert needed_libraries(data) == []
    assert interpreter(data) is None
