"""Just enough ELF64 reading to pick the files a guest needs.

Two questions are answered: which key=value strings a kernel module carries in
its `.modinfo` section (its dependencies), and which shared libraries a
program needs (`DT_NEEDED`) plus its dynamic loader (`PT_INTERP`).  The host
may lack `modinfo`, `depmod` and a matching `ldd`, so we read the files
ourselves.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_PT_INTERP = 3
_SHT_DYNAMIC = 6
_DT_NULL = 0
_DT_NEEDED = 1


class ElfError(ValueError):
    """The bytes are not a little-endian ELF64 file we can read."""


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    offset: int
    size: int
    link: int


def _check_header(data: bytes) -> None:
    if data[:4] != _ELF_MAGIC or len(data) < 64:
        raise ElfError("not an ELF file")
    if data[4] != _ELFCLASS64 or data[5] != 1:
        raise ElfError("only little-endian ELF64 is supported")


def _sections(data: bytes) -> list[_Section]:
    _check_header(data)
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = [struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize) for i in range(shnum)]
    if not raw:
        return []
    names_offset = raw[shstrndx][4]
    sections = []
    for name_index, sh_type, _flags, _addr, offset, size, link, _info in raw:
        start = names_offset + name_index
        name = data[start : data.index(b"\0", start)].decode(errors="replace")
        sections.append(_Section(name, sh_type, offset, size, link))
    return sections


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The `.modinfo` strings of a kernel module, grouped by key.

    Keys may repeat (`alias=`), hence the lists.
    """
    for section in _sections(data):
        if section.name == ".modinfo":
            blob = data[section.offset : section.offset + section.size]
            info: dict[str, list[str]] = {}
            for item in blob.split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ElfError("no .modinfo section: not a kernel module")


def needed_libraries(data: bytes) -> list[str]:
    """The sonames a dynamically linked program or library asks for."""
    sections = _sections(data)
    for section in sections:
        if section.type != _SHT_DYNAMIC:
            continue
        strtab = sections[section.link]
        needed = []
        for pos in range(section.offset, section.offset + section.size, 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                start = strtab.offset + value
                needed.append(data[start : data.index(b"\0", start)].decode())
        return needed
    return []  # statically linked


def interpreter(data: bytes) -> str | None:
    """The dynamic loader path of a program (`PT_INTERP`), or None if static."""
    _check_header(data)
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == _PT_INTERP:
            return data[offset : offset + filesz].rstrip(b"\0").decode()
    return None


_PT_NOTE = 4
_XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_entry(data: bytes) -> bool:
    """Whether a kernel ELF has the PVH entry note QEMU needs to boot it directly."""
    _check_header(data)
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type != _PT_NOTE:
            continue
        pos, end = offset, offset + filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", data, pos)
            name = data[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False
