"""The newc writer: entries read back by a small parser and by the real `cpio` tool."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess

import pytest

from driver.guest.cpio import CpioWriter


def parse_newc(data: bytes) -> list[dict]:
    """Decode a newc archive (the kernel's view: 4-byte alignment everywhere)."""
    entries, pos = [], 0
    while True:
        assert data[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        assert data[name_start + namesize - 1] == 0
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        body = data[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            assert pos == len(data)
            return entries
        entries.append(
            {"name": name, "mode": fields[1], "uid": fields[2], "data": body, "rdev": (fields[9], fields[10])}
        )


def build(fill) -> bytes:
    buffer = io.BytesIO()
    with CpioWriter(buffer) as cpio:
        fill(cpio)
    return buffer.getvalue()


def test_entries_round_trip_with_parents_first() -> None:
    data = build(
        lambda c: (
            c.add_file("/usr/lib/x/libfoo.so.1", b"abc", 0o755),
            c.add_symlink("/bin/sh", "/bin/busybox"),
            c.add_char_device("/dev/console", 5, 1),
            c.add_dir("/tmp", 0o1777),
        )
    )
    entries = {e["name"]: e for e in parse_newc(data)}
    names = [e["name"] for e in parse_newc(data)]
    assert names[:4] == ["usr", "usr/lib", "usr/lib/x", "usr/lib/x/libfoo.so.1"]
    assert entries["usr/lib/x/libfoo.so.1"]["data"] == b"abc"
    assert stat.S_IMODE(entries["usr/lib/x/libfoo.so.1"]["mode"]) == 0o755
    assert stat.S_ISLNK(entries["bin/sh"]["mode"]) and entries["bin/sh"]["data"] == b"/bin/busybox"
    assert stat.S_ISCHR(entries["dev/console"]["mode"]) and entries["dev/console"]["rdev"] == (5, 1)
    assert stat.S_IMODE(entries["tmp"]["mode"]) == 0o1777
    assert all(e["uid"] == 0 for e in entries.values())


def test_output_is_reproducible() -> None:
    def fill(c: CpioWriter) -> None:
        c.add_file("/a/b", b"x" * 5)
        c.add_file("/a/c", b"")

    assert build(fill) == build(fill)


@pytest.mark.parametrize("bad", ["/", "../etc/passwd", "/a/../../b", ""])
def test_paths_escaping_the_root_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        build(lambda c: c.add_file(bad, b""))


def test_duplicates_and_writes_after_close_are_rejected() -> None:
    buffer = io.BytesIO()
    cpio = CpioWriter(buffer)
    cpio.add_file("/etc/x", b"1")
    with pytest.raises(ValueError, match="duplicate"):
        cpio.add_file("etc/x", b"2")
    assert cpio.has("/etc") and cpio.has("/etc/x")
    cpio.close()
    with pytest.raises(ValueError):
        cpio.add_file("/etc/y", b"")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs the cpio tool")
def test_the_cpio_tool_reads_the_archive(tmp_path) -> None:
    data = build(
        lambda c: (
            c.add_file("/etc/hello.txt", b"hello\n"),
            c.add_symlink("/etc/link", "hello.txt"),
            c.add_file("/odd-size", b"12345"),
        )
    )
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=data, capture_output=True, check=True
    ).stdout.decode().split()
    assert listing == ["etc", "etc/hello.txt", "etc/link", "odd-size"]
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=tmp_path, check=True)
    assert (tmp_path / "etc/hello.txt").read_text() == "hello\n"
    assert (tmp_path / "odd-size").read_bytes() == b"12345"
    assert (tmp_path / "etc/link").readlink().as_posix() == "hello.txt"
