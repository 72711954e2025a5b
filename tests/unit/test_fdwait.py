"""Waits on descriptors numbered above select()'s 1024 limit (driver/fdwait.py)."""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator

import pytest

from driver.fdwait import wait_ready, wait_readable
from driver.guarded_socket import GuardedSocket

HIGH_FD = 1500


@pytest.fixture
def high_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair whose first end is descriptor HIGH_FD."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
        pytest.skip(f"the hard limit on open files ({hard}) is too low")
    if soft != resource.RLIM_INFINITY and soft <= HIGH_FD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH_FD + 1, hard))
    a, b = socket.socketpair()
    os.dup2(a.fileno(), HIGH_FD)
    a.close()
    high = socket.socket(fileno=HIGH_FD)
    try:
        yield high, b
    finally:
        high.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_guarded_socket_reads_on_a_high_descriptor(high_pair: tuple[socket.socket, socket.socket]) -> None:
    high, other = high_pair
    guarded = GuardedSocket(high, "node1", is_dead=lambda: None)
    other.sendall(b"hello\n")
    guarded._fill(deadline=None, what="reading a greeting")  # noqa: SLF001 - the wait under test
    assert bytes(guarded._buffer) == b"hello\n"  # noqa: SLF001
    guarded._send_all(b"back\n", deadline=None, what="answering")  # noqa: SLF001
    assert other.recv(16) == b"back\n"


def test_wait_ready_reports_like_select(high_pair: tuple[socket.socket, socket.socket]) -> None:
    high, other = high_pair
    assert wait_readable([high], 0.01) == []
    assert wait_ready([high], [high], 0.01) == ([], [high])
    other.sendall(b"x")
    assert wait_readable([high, other.fileno()], 1.0) == [high]
    other.close()
    high.recv(1)
    # The far end closed: readable, so that a read sees the end.
    assert wait_readable([high], 1.0) == [high]
