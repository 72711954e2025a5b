"""TerminalView against a real program: bash on a local pty (no VM needed)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import AsyncIterator, Callable

import re

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.app import App, ComposeResult
from textual.widgets import Input

from widgets.terminal_view import TerminalView, _ScrollbackScreen, key_to_bytes

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PYTE_FRAGMENTS = [
    b"\x1b[", b"\x1b[?", b"\x1b]", b"\x1bP", b"\x1b", b"\xc2\x9b", b"\x9b", b";", b"1", b"99999", b"0",
    b"m", b"r", b"A", b"G", b"H", b"J", b"K", b"h", b"l", b"\r", b"\n", b"\x08", b"\t", b"\x1b#8", b"\x1b(0", "漢".encode(),
]


class PtyBackend:
    """bash on a pseudo-terminal, wired to a TerminalView like a guest shell would be."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TERM": "xterm-256color",
            "PS1": "test$ ",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
        }
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"],
            stdin=slave, stdout=slave, stderr=slave, env=env,
            start_new_session=True,
            # Make the pty the controlling terminal so job control and Ctrl-C work.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.sizes: list[tuple[int, int]] = []
        self.view: TerminalView | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self, view: TerminalView) -> None:
        self.view = view
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                if self.view is not None:
                    self.view.mark_closed("shell exited")
                return
            assert self.view is not None
            self.view.feed(data)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def resize(self, columns: int, lines: int) -> None:
        self.sizes.append((columns, lines))
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        os.close(self.master)
        self._reader.join(timeout=10)


class TerminalApp(App[None]):
    def __init__(self, backend: PtyBackend) -> None:
        super().__init__()
        self.backend = backend

    def compose(self) -> ComposeResult:
        yield TerminalView(self.backend, id="term")
        yield Input(id="other")

    def on_mount(self) -> None:
        view = self.query_one(TerminalView)
        self.backend.start(view)
        view.focus()


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a condition; the deadline only guards against a hang, it is no speed check."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def term() -> AsyncIterator[tuple[TerminalApp, TerminalView, object]]:
    backend = PtyBackend()
    app = TerminalApp(backend)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(TerminalView)
            await wait_for(lambda: "test$" in view.screen_text, "the prompt")
            yield app, view, pilot
    finally:
        backend.close()


async def type_line(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press(*[("space" if c == " " else c) for c in text], "enter")


async def test_typed_command_output_appears(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, "echo $((6*7))")
    await wait_for(lambda: "42" in view.screen_text.splitlines()[-2:][0], "the command's output")


async def test_ctrl_c_interrupts_the_foreground_job(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, "sleep 100; echo $((40+2))x")
    await pilot.press("ctrl+c")
    await type_line(pilot, "echo back=$?")
    await wait_for(lambda: "back=130" in view.screen_text, "the prompt after Ctrl-C")
    assert "42x" not in view.screen_text
    assert app.backend.process.poll() is None  # the shell itself survived


async def test_ctrl_z_suspends_with_job_control(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, "sleep 100")
    await pilot.press("ctrl+z")
    await wait_for(lambda: "Stopped" in view.screen_text, "the job to stop")
    await type_line(pilot, "kill %1; echo killed")
    await wait_for(lambda: "killed" in view.screen_text, "the job to be killed")


async def test_tab_goes_to_the_program_not_to_focus(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await pilot.press("e", "c", "h", "o", "space", "/", "u", "s", "tab")
    await wait_for(lambda: "/usr/" in view.screen_text, "completion of /us")
    assert app.focused is view


async def test_leave_key_moves_focus_on(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await pilot.press("ctrl+right_square_bracket")
    assert isinstance(app.focused, Input)


async def test_colours_and_attributes_are_rendered(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, r"clear; printf '\e[1;31mRED\e[0m \e[38;5;46mLIME\e[0m\n'")
    await wait_for(lambda: view.screen_text.startswith("RED LIME"), "coloured text")
    await pilot.pause()
    segments = list(view.render_line(0))
    red = next(s for s in segments if s.text.startswith("RED"))
    lime = next(s for s in segments if "LIME" in s.text)
    assert red.style is not None and red.style.bold and red.style.color.name == "red"
    assert lime.style is not None and lime.style.color.triplet.hex == "#00ff00"


async def test_resize_reaches_the_program(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await pilot.resize_terminal(100, 30)
    await wait_for(lambda: view.terminal_size[0] == 100, "the widget to resize")
    assert app.backend.sizes[-1] == view.terminal_size
    await type_line(pilot, "stty size")
    columns, lines = view.terminal_size
    await wait_for(lambda: f"{lines} {columns}" in view.screen_text, "stty to see the new size")


async def test_only_changed_rows_are_rendered_again(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, "clear")
    await wait_for(lambda: view.screen_text.strip() == "test$", "a cleared screen")
    await pilot.pause()
    rendered: list[int | None] = []
    original = view._render_row

    def counting(row, y):  # type: ignore[no-untyped-def]
        rendered.append(y)
        return original(row, y)

    view._render_row = counting  # type: ignore[method-assign]
    view.feed(b"one line\r\n")
    await wait_for(lambda: "one line" in view.screen_text, "the fed line")
    await pilot.pause()
    assert rendered and set(rendered) <= {0, 1}


async def test_a_program_writing_without_pause_costs_a_bounded_number_of_drains(term) -> None:  # type: ignore[no-untyped-def]
    """Output is parsed at most MAX_DRAINS_PER_SECOND times a second, and none of it is lost."""
    from widgets import terminal_view

    app, view, pilot = term
    drains: list[float] = []
    original = view.flush

    def counting() -> None:
        drains.append(loop.time())
        original()

    loop = asyncio.get_running_loop()
    view.flush = counting  # type: ignore[method-assign]
    # A line every few milliseconds: without the bound, about one drain per line.
    await type_line(pilot, "for i in $(seq 1 400); do echo line $i; sleep 0.002; done; echo finished")
    await wait_for(lambda: "finished" in view.screen_text.splitlines()[-2], "the end of the output")
    span = drains[-1] - drains[0]
    # A ceiling, not a speed check: a slower machine only gives more room.
    assert len(drains) <= span * terminal_view.MAX_DRAINS_PER_SECOND + 2, (len(drains), span)
    assert "line 399" in view.history_text + view.screen_text


async def test_scrollback_keeps_lines_that_left_the_screen(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, "seq 1 200")
    await wait_for(lambda: "200" in view.screen_text, "the end of seq")
    assert "\n1\n2\n3\n" in view.history_text
    await pilot.press("shift+pageup")
    await pilot.pause()
    assert view.display_lines[-1].strip() != "test$"  # we look at history now
    await pilot.press("shift+pagedown", "shift+pagedown", "shift+pagedown")


async def test_closing_shows_the_reason(term) -> None:  # type: ignore[no-untyped-def]
    app, view, pilot = term
    await type_line(pilot, "exit")
    await wait_for(lambda: view.closed_reason == "shell exited", "the closed mark")
    await wait_for(lambda: "[shell exited]" in view.screen_text, "the closed mark on screen")


@pytest.mark.parametrize(
    ("key", "character", "cursor_mode", "expected"),
    [
        ("a", "a", False, b"a"),
        ("enter", "\r", False, b"\r"),
        ("ctrl+c", "\x03", False, b"\x03"),
        ("ctrl+d", None, False, b"\x04"),
        ("up", None, False, b"\x1b[A"),
        ("up", None, True, b"\x1bOA"),
        ("ctrl+left", None, False, b"\x1b[1;5D"),
        ("delete", None, False, b"\x1b[3~"),
        ("f1", None, False, b"\x1bOP"),
        ("f5", None, False, b"\x1b[15~"),
        ("shift+tab", None, False, b"\x1b[Z"),
        ("backspace", "\x08", False, b"\x7f"),
        ("é", "é", False, "é".encode()),
        ("shift+f17", None, False, None),
    ],
)
def test_key_to_bytes(key: str, character: str | None, cursor_mode: bool, expected: bytes | None) -> None:
    assert key_to_bytes(key, character, application_cursor=cursor_mode) == expected


async def test_sequences_pyte_cannot_handle_do_not_end_the_app(term) -> None:  # type: ignore[no-untyped-def]
    # pyte 0.8 raised inside its parser on these (a private variant its handler
    # does not take, one parameter too many); the app died with a traceback.
    app, view, pilot = term
    await type_line(pilot, r"printf '\033[?1m\033[?5r\033[;A\033[1;2;3Gstill\n'; echo alive")
    await wait_for(lambda: "alive" in view.screen_text.splitlines()[-2:][0], "output after the sequences")
    assert "still" in view.screen_text


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.one_of(st.sampled_from(PYTE_FRAGMENTS), st.binary(max_size=4)), max_size=40).map(b"".join))
def test_any_output_leaves_the_shell_screen_parsing_and_free_of_controls(data: bytes) -> None:
    screen = _ScrollbackScreen(20, 5, history=10)
    stream = pyte.ByteStream(screen)
    stream.feed(data)
    # End any string, cancel any sequence, back to ASCII, then text at the top left.
    stream.feed(b"\x07\x1b\\\x18\x1b(B\x0f\x1b[0m\x1b[H\x1b[2Kok")
    assert screen.buffer[0][0].data + screen.buffer[0][1].data == "ok"
    for row in [*screen.buffer.values(), *screen.history]:
        assert not any(CONTROL.search(char.data) for char in row.values())
