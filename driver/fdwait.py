"""Waiting for file descriptors without select()'s limit.

`select.select` refuses descriptors numbered 1024 or above ("filedescriptor
out of range"), and a long session that opens many shells, sockets and
pipes, or a host process that already holds many files, reaches such
numbers.  `poll` has no such limit; these helpers keep select's shape.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from typing import Protocol, Union


class HasFileno(Protocol):
    def fileno(self) -> int: ...


# A descriptor number, or anything with `fileno()` (sockets, files).
Waitable = Union[int, HasFileno]

# What counts as "ready to read": data, and also the end of the stream or an
# error, which a read then reports (as select does).
_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITE_EVENTS = select.POLLOUT | select.POLLHUP | select.POLLERR


def _fd(item: int | HasFileno) -> int:
    return item if isinstance(item, int) else item.fileno()


def wait_ready(
    readable: Sequence[Waitable], writable: Sequence[Waitable], timeout: float | None
) -> tuple[list[Waitable], list[Waitable]]:
    """The items of `readable`/`writable` that are ready, waiting at most `timeout` seconds."""
    poller = select.poll()
    wanted: dict[int, int] = {}
    for item in readable:
        wanted[_fd(item)] = wanted.get(_fd(item), 0) | _READ_EVENTS
    for item in writable:
        wanted[_fd(item)] = wanted.get(_fd(item), 0) | _WRITE_EVENTS
    for fd, events in wanted.items():
        poller.register(fd, events)
    ready = dict(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
    return (
        [item for item in readable if ready.get(_fd(item), 0) & _READ_EVENTS],
        [item for item in writable if ready.get(_fd(item), 0) & _WRITE_EVENTS],
    )


def wait_readable(items: Sequence[Waitable], timeout: float | None) -> list[Waitable]:
    return wait_ready(items, (), timeout)[0]


def wait_writable(items: Sequence[Waitable], timeout: float | None) -> list[Waitable]:
    return wait_ready((), items, timeout)[1]
