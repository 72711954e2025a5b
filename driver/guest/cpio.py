"""A writer for "newc" cpio archives, the format the Linux kernel unpacks as an initramfs.

Written in Python rather than driving the `cpio` tool so that an archive can
hold device nodes and root-owned files without root privileges, and so that
the output is byte-for-byte reproducible (fixed mtimes, fixed inode numbers).
"""

from __future__ import annotations

import stat
from pathlib import PurePosixPath
from typing import BinaryIO

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    """Appends entries to a newc archive; `close()` writes the trailer.

    Paths are absolute guest paths ("/bin/sh"); they are stored without the
    leading slash, as the kernel expects.  Parent directories are added
    automatically the first time a path below them appears, because the
    kernel's unpacker does not create missing parents.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._next_inode = 1
        self._seen: set[str] = set()
        self._closed = False

    # -- public entry points -------------------------------------------------

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._add(path, stat.S_IFDIR | mode, b"")

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(path, stat.S_IFREG | mode, data)

    def add_symlink(self, path: str, target: str) -> None:
        self._add(path, stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(path, stat.S_IFCHR | mode, b"", rdev=(major, minor))

    def has(self, path: str) -> bool:
        return _normalize(path) in self._seen

    def close(self) -> None:
        """Write the trailer entry (the archive is unusable without it)."""
        if not self._closed:
            self._write_entry(_TRAILER, 0, b"", nlink=1, inode=0)
            self._closed = True

    def __enter__(self) -> CpioWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _add(self, path: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        if self._closed:
            raise ValueError("archive already closed")
        name = _normalize(path)
        if name in self._seen:
            raise ValueError(f"duplicate cpio entry: /{name}")
        self._add_parents(name)
        self._seen.add(name)
        nlink = 2 if stat.S_ISDIR(mode) else 1
        self._write_entry(name, mode, data, nlink=nlink, inode=self._next_inode, rdev=rdev)
        self._next_inode += 1

    def _add_parents(self, name: str) -> None:
        missing = []
        for parent in PurePosixPath(name).parents:
            parent_name = str(parent)
            if parent_name == "." or parent_name in self._seen:
                break
            missing.append(parent_name)
        for parent_name in reversed(missing):
            self._seen.add(parent_name)
            self._write_entry(parent_name, stat.S_IFDIR | 0o755, b"", nlink=2, inode=self._next_inode)
            self._next_inode += 1

    def _write_entry(
        self,
        name: str,
        mode: int,
        data: bytes,
        *,
        nlink: int,
        inode: int,
        rdev: tuple[int, int] = (0, 0),
    ) -> None:
        encoded_name = name.encode() + b"\0"
        fields = (
            inode,
            mode,
            0,  # uid: everything in the guest belongs to root
            0,  # gid
            nlink,
            0,  # mtime: fixed, so archives are reproducible
            len(data),
            0,  # dev major
            0,  # dev minor
            rdev[0],
            rdev[1],
            len(encoded_name),
            0,  # check: unused by the newc format
        )
        header = _MAGIC + b"".join(b"%08X" % value for value in fields)
        self._out.write(header)
        self._out.write(encoded_name)
        self._out.write(_pad4(len(header) + len(encoded_name)))
        self._out.write(data)
        self._out.write(_pad4(len(data)))


def _normalize(path: str) -> str:
    """'/usr/bin/x' -> 'usr/bin/x'; rejects paths that escape the root."""
    pure = PurePosixPath("/") / path
    parts = [part for part in pure.parts[1:] if part not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad path for a cpio entry: {path!r}")
    return "/".join(parts)
