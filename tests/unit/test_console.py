"""The serial console reader: line splitting, bounded log, text waits."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from driver.console import ConsoleReader
from driver.errors import MachineDied, RequestedAssertionFailed, ScriptCancelled
from driver.events import ConsoleOutput, Event, EventBus


class Pipe:
    """A console fed through a real pipe, read by the real reader thread."""

    def __init__(self, max_lines: int = 1000) -> None:
        self.events: list[Event] = []
        self.eof = threading.Event()
        bus = EventBus()
        bus.subscribe(self.events.append)
        read_fd, self.write_fd = os.pipe()
        self.read_fd = read_fd
        self.reader = ConsoleReader("node1", read_fd, bus=bus, max_lines=max_lines, on_eof=self.eof.set)
        self.reader.start()

    def write(self, data: bytes) -> None:
        os.write(self.write_fd, data)

    def close(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        self.reader.join(5)
        os.close(self.read_fd)

    def console_lines(self) -> list[str]:
        return [line for event in self.events if isinstance(event, ConsoleOutput) for line in event.lines]


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    console = Pipe()
    yield console
    console.close()


def test_lines_split_across_chunks_and_carriage_returns(pipe: Pipe) -> None:
    pipe.reader.feed(b"first li")
    pipe.reader.feed(b"ne\r\nsecond\nthi")
    pipe.reader.feed(b"rd\r\n")
    assert pipe.reader.lines() == ["first line", "second", "third"]
    # One event per chunk that completed lines, none for the partial one.
    chunks = [event.lines for event in pipe.events if isinstance(event, ConsoleOutput)]
    assert chunks == [("first line", "second"), ("third",)]


def test_utf8_split_across_chunks_and_ansi_kept(pipe: Pipe) -> None:
    encoded = "\x1b[1mcafé\x1b[0m\n".encode()
    split = encoded.index(b"\xa9")
    pipe.reader.feed(encoded[:split])
    pipe.reader.feed(encoded[split:])
    pipe.reader.feed(b"bad \xff byte\n")
    assert pipe.reader.lines() == ["\x1b[1mcafé\x1b[0m", "bad \ufffd byte"]


def test_partial_line_is_flushed_at_eof() -> None:
    console = Pipe()
    console.write(b"complete\nno newline at the end")
    console.close()
    assert console.eof.is_set()
    assert console.reader.lines() == ["complete", "no newline at the end"]
    assert console.console_lines() == ["complete", "no newline at the end"]


def test_log_is_bounded() -> None:
    console = Pipe(max_lines=10)
    try:
        console.reader.feed(b"".join(f"line {n}\n".encode() for n in range(25)))
        assert console.reader.lines() == [f"line {n}" for n in range(15, 25)]
        assert console.reader.text().startswith("line 15\nline 16")
    finally:
        console.close()


def test_wait_matches_output_printed_before_the_call(pipe: Pipe) -> None:
    pipe.reader.feed(b"Welcome to the guest\nlogin: \n")
    assert pipe.reader.wait_for_text("Welcome", timeout=5) == "Welcome"


def test_wait_consumes_lines(pipe: Pipe) -> None:
    pipe.reader.feed(b"ready 1\n")
    pipe.reader.wait_for_text("ready", timeout=5)
    # The line was consumed by the first wait: a second one needs new output.
    with pytest.raises(RequestedAssertionFailed, match="node1.*'ready'.*0.3 seconds"):
        pipe.reader.wait_for_text("ready", timeout=0.3)


def test_wait_sees_output_that_arrives_later(pipe: Pipe) -> None:
    threading.Timer(0.2, pipe.write, args=(b"service started\n",)).start()
    assert pipe.reader.wait_for_text(r"service \w+", timeout=30) == "service started"


def test_wait_matches_across_lines(pipe: Pipe) -> None:
    pipe.reader.feed(b"alpha\nbeta\n")
    # Joined by newlines, and (as NixOS does) without separators.
    assert pipe.reader.wait_for_text("alpha\nbeta", timeout=5) == "alpha\nbeta"
    pipe.reader.feed(b"gamma\ndelta\n")
    assert pipe.reader.wait_for_text("gammadelta", timeout=5) == "gammadelta"


def test_wait_timeout_holds_even_when_the_console_floods(pipe: Pipe) -> None:
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            pipe.reader.feed(b"noise\n" * 50)
            time.sleep(0.001)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        with pytest.raises(RequestedAssertionFailed):
            pipe.reader.wait_for_text("never printed", timeout=0.5)
    finally:
        stop.set()
        flooder.join()


def test_wait_ends_when_qemu_exits() -> None:
    console = Pipe()
    threading.Timer(0.2, console.close).start()
    with pytest.raises(MachineDied, match="node1: QEMU exited"):
        console.reader.wait_for_text("never printed")


def test_wait_honours_cancel(pipe: Pipe) -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(ScriptCancelled):
        pipe.reader.wait_for_text("never printed", cancel=cancel)


def test_a_wait_under_a_flood_does_linear_work_not_quadratic(pipe: Pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each search covers all consumed text; searching after every line made
    a long flood quadratic.  Count the characters searched (a frozen clock,
    so only the text's growth decides when a search is due)."""
    import types

    import driver.console as console_module

    searched = [0]
    real_search = console_module._search

    def counting(pattern: object, text: str) -> object:
        searched[0] += len(text)
        return real_search(pattern, text)  # type: ignore[arg-type]

    clock = [1000.0]
    monkeypatch.setattr(console_module, "_search", counting)
    monkeypatch.setattr(console_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    result: list[str] = []
    waiter = threading.Thread(target=lambda: result.append(pipe.reader.wait_for_text("needle")), daemon=True)
    waiter.start()
    total = 0
    for index in range(2000):
        line = f"flood line {index:05d}"
        total += len(line) + 1
        pipe.reader.feed(line.encode() + b"\n")
        # One line per wake-up of the waiter: the worst case for it.
        give_up = time.monotonic() + 10
        while pipe.reader._unconsumed and time.monotonic() < give_up:  # noqa: SLF001 - pacing the flood
            time.sleep(0.0002)
    pipe.reader.feed(b"the needle\n")
    clock[0] += 1.0  # the search interval passed: the last line is searched
    waiter.join(30)
    assert result == ["needle"]
    # Two joins of the text per search; a few dozen searches, not 2000.
    assert searched[0] < 2 * 40 * total, f"searched {searched[0]} characters for {total} of output"
