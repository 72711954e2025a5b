"""Guest text reaches the user's terminal as text and SGR colours only (driver/terminal_text.py).

Hypothesis keeps no example database (`database=None`): a test run leaves no files behind.
"""

from __future__ import annotations

import io
import re

import pyte
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.style import Style

from driver.console import ConsoleReader
from driver.events import ConsoleOutput, EventBus, LogLevel, LogMessage
from driver.terminal_text import PLAIN, decode_line, plain_line, plain_text, terminal_line, terminal_text
from vmtui.headless import JUnitReport, TerminalLog
from widgets.ansi import AnsiLineDecoder, guest_text

# What SeaBIOS writes to the serial console at every boot (captured from
# QEMU 7.2's bios-256k.bin), before the kernel's first line.
SEABIOS = b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\nBooting from ROM..\r\n"

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A terminal-bound line: text, and SGR sequences we wrote ourselves.
TERMINAL_SAFE = re.compile(r"(?:[^\x00-\x1f\x7f-\x9f]|\x1b\[[0-9;]*m)*")

# Pieces that make hostile lines likelier than uniform random text does.
FRAGMENTS = [
    "\x1b", "\x1b[", "\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1b\\", "\x1bc", "\x1b[?7l", "\x1b[2J",
    "\x1b[31m", "\x1b[0m", "\x1b[38;5;200m", "\x1b[48;2;1;2;3m", "\x1b[1;4;7m", "\x1b[>4;2m", "\x1b[1;2r",
    "\x1b]0;title\x07", "\x1b]52;c;aGk=\x07", "\x1b]8;;http://x/\x1b\\", "\x1bP1$r\x1b\\", "\x1b(B", "\x1b#8",
    "\x9b", "\x9b31m", "\x9d", "\x90", "\x9c", "\x85", "\x07", "\x08", "\t", "\r", "\x0b", "\x0c", "\x18", "\x1a",
    "\x7f", "\x00", "\x1b[K", "\x1b[1K", "\x1b[2K", "\x1b[3D", "\x1b[4C", "\x1b[5G", ";", "m", "[", "0", "é", "漢",
]
hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=40).map("".join)
guest_bytes = st.binary(max_size=300)


def _lines_of(data: bytes) -> list[str]:
    """What the console reader publishes for these bytes (each line raw)."""
    bus = EventBus()
    published: list[str] = []
    bus.subscribe(lambda event: published.extend(event.lines) if isinstance(event, ConsoleOutput) else None)
    reader = ConsoleReader("m", -1, bus=bus)
    reader.feed(data)
    reader._finish()
    return published


# -- properties ----------------------------------------------------------------


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(hostile_text, guest_bytes.map(lambda data: data.decode("utf-8", "replace"))))
def test_decoded_runs_are_text_with_sgr_states_only(line: str) -> None:
    runs = decode_line(line)
    for text, state in runs:
        assert text and not CONTROL.search(text)
        foreground, background, bits = state
        for colour in (foreground, background):
            assert colour is None or (isinstance(colour, int) and 0 <= colour <= 255) or (
                isinstance(colour, tuple) and all(0 <= value <= 255 for value in colour)
            )
        assert 0 <= bits < 256
    # Styles come from SGR only: no CSI introducer, no style.
    if "\x1b[" not in line and "\x9b" not in line:
        assert all(state == PLAIN for _, state in runs)
    assert plain_line(line) == "".join(text for text, _ in runs)


@settings(max_examples=300, deadline=None, database=None)
@given(guest_bytes, st.sampled_from(["", "2", "33"]))
def test_terminal_output_holds_no_escape_but_our_sgr(data: bytes, base: str) -> None:
    for line in _lines_of(data):
        assert TERMINAL_SAFE.fullmatch(terminal_line(line, base))
        assert not CONTROL.search(plain_line(line))
    text = data.decode("utf-8", "replace")
    assert all(TERMINAL_SAFE.fullmatch(line) for line in terminal_text(text, base).split("\n"))
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", plain_text(text))


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(hostile_text, guest_bytes.map(lambda data: data.decode("utf-8", "replace"))))
def test_rich_side_is_text_and_sgr_styles(line: str) -> None:
    base = Style(color="white", bgcolor="black")
    decoder = AnsiLineDecoder(base)
    segments, width = decoder.decode(line)
    for segment in segments:
        assert segment.control is None and not CONTROL.search(segment.text)
        assert segment.style is not None and segment.style.link is None and not segment.style.meta
    assert width == sum(len(segment.text) for segment in segments) or not line.isascii()
    text = guest_text(line + "\n" + line, style="red")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text.plain)
    assert all(span.style.link is None for span in text.spans if isinstance(span.style, Style))
    highlighted = decoder.text(line)
    assert not CONTROL.search(highlighted.plain)


@settings(max_examples=200, deadline=None, database=None)
@given(guest_bytes)
def test_headless_log_and_junit_stay_safe(data: bytes) -> None:
    lines = tuple(_lines_of(data))
    message = data.decode("utf-8", "replace")
    terminal, plain = io.StringIO(), io.StringIO()
    for stream, colour in ((terminal, True), (plain, False)):
        log = TerminalLog(stream, color=colour)
        log(ConsoleOutput("m", lines))
        log(LogMessage(f"command failed:\n{message}", machine="m", level=LogLevel.ERROR))
        log(LogMessage(message, level=LogLevel.WARNING))
    assert all(TERMINAL_SAFE.fullmatch(line) for line in terminal.getvalue().split("\n"))
    # Not a terminal: the NixOS log format, plain (no escape at all).
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", plain.getvalue())
    junit = JUnitReport()
    junit(ConsoleOutput("m", lines))
    junit(LogMessage(message, level=LogLevel.ERROR))
    assert not any(CONTROL.search(line) for line in junit.main.stdout)
    # Messages keep their line breaks (XML allows those, no other control).
    assert not any(re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", line) for line in junit.main.stderr)


@settings(max_examples=300, deadline=None, database=None)
@given(hostile_text)
@example("\t")  # a line that ends in a tab (found by this test once)
def test_a_carriage_return_at_the_end_changes_nothing(line: str) -> None:
    # The trailing `\r` of a `\r\r\n` line end sends the line down the cell
    # model: both ways of decoding must agree.
    assert decode_line(line + "\r") == decode_line(line)


# Lines a real terminal emulator can be asked about: printable ASCII, the
# cursor controls the decoder plays out, SGR, and strings it must drop.
EMULATED = [
    "\r", "\b", "\t", "\x1b[K", "\x1b[0K", "\x1b[1K", "\x1b[2K", "\x1b[2D", "\x1b[D", "\x1b[3C", "\x1b[C",
    "\x1b[4G", "\x1b[G", "\x1b[31m", "\x1b[0m", "\x1b]0;title\x07", "\x1b]8;;http://x/\x1b\\",
]
emulated_line = st.lists(st.one_of(st.sampled_from(EMULATED), st.text("abcxyz 0123%.", min_size=1, max_size=5)), max_size=25).map("".join)


@settings(max_examples=400, deadline=None, database=None)
@given(emulated_line)
def test_text_matches_what_a_terminal_emulator_leaves_on_the_line(line: str) -> None:
    screen = pyte.Screen(400, 3)
    pyte.Stream(screen).feed(line)
    shown = "".join(screen.buffer[0][x].data for x in range(screen.columns)).rstrip()
    assert plain_line(line).rstrip() == shown


# -- known sequences --------------------------------------------------------------


def test_seabios_boot_preamble_leaves_only_its_text() -> None:
    lines = _lines_of(SEABIOS)
    assert lines[0].startswith("\x1bc\x1b[?7l\x1b[2J")  # the raw line, escapes and all
    assert [plain_line(line) for line in lines] == ["SeaBIOS (version 1.16.2-debian-1.16.2-1)", "Booting from ROM.."]
    assert terminal_line(lines[0], "2") == "SeaBIOS (version 1.16.2-debian-1.16.2-1)"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("\x1b]52;c;ZWNobyBwd25lZAo=\x07after", "after"),  # clipboard write, BEL-terminated
        ("\x1b]52;c;ZWNobyBwd25lZAo=\x1b\\after", "after"),  # ST-terminated
        ("see \x1b]8;;https://example.invalid/\x1b\\the docs\x1b]8;;\x1b\\ now", "see the docs now"),  # hyperlink
        ("\x1b]0;owned\x07\x1b]2;owned\x1b\\title", "title"),  # window and icon titles
        ("\x1bP+q544e\x1b\\dcs", "dcs"),  # DCS (a terminfo query)
        ("\x1b_apc string\x1b\\\x1b^pm string\x1b\\\x1bXsos\x1b\\x", "x"),
        ("\x9d0;eight-bit title\x9cok", "ok"),
        ("\x1b[?1049h\x1b[?25l\x1b[H\x1b[3J\x1b[5;10r\x1b7\x1b8\x1b=screen", "screen"),
        ("bell\x07\x07", "bell"),
        ("\x1b(0qqq\x1b(B", "qqq"),  # charset switches are dropped, the text stays
        ("cut \x1b]0;unterminated title", "cut "),
        ("cut \x1b[12", "cut "),
        ("50%\r100%", "100%"),
        ("abc\bd", "abd"),
        ("\b\bx", "x"),
        ("100%\r50%", "50%%"),  # a terminal leaves the longer line's tail
        ("100%\r\x1b[K50%", "50%"),
        ("[  OK  ] done\r", "[  OK  ] done"),  # `\r\r\n` from a guest that adds its own \r
        ("a\tb", "a       b"),
        ("12345678\tx", "12345678        x"),
        ("a\x1b[5Gb", "a   b"),
    ],
)
def test_known_sequences(line: str, shown: str) -> None:
    assert plain_line(line) == shown
    assert terminal_line(line) == shown


def test_colours_survive_as_fresh_sgr() -> None:
    line = "\x1b[1;31merror\x1b[0m: \x1b[38;5;208morange\x1b[39m \x1b[48;2;1;2;3mrgb\x1b[m end"
    assert plain_line(line) == "error: orange rgb end"
    assert terminal_line(line) == "\x1b[0;1;31merror\x1b[0m: \x1b[0;38;5;208morange\x1b[0m \x1b[0;48;2;1;2;3mrgb\x1b[0m end"
    # Printed dimmed: a guest's own reset cannot undo the dim.
    assert terminal_line("\x1b[32mok\x1b[0m rest", "2") == "\x1b[0;2;32mok\x1b[0;2m rest"
    # Eight-bit CSI is SGR too; a private marker makes it something else.
    assert decode_line("\x9b32mgreen") == [("green", (2, None, 0))]
    assert decode_line("\x1b[>4;2mkeys") == [("keys", PLAIN)]


def test_a_tab_moves_the_cursor_without_painting() -> None:
    assert decode_line("\x1b[41ma\tb") == [("a", (None, 1, 0)), (" " * 7, PLAIN), ("b", (None, 1, 0))]


def test_colours_do_not_leak_into_the_next_line() -> None:
    assert terminal_text("\x1b[31mred\nnext") == "\x1b[0;31mred\x1b[0m\nnext"


def test_console_log_keeps_nixos_lines_and_the_event_keeps_the_redraw() -> None:
    bus = EventBus()
    events: list[ConsoleOutput] = []
    bus.subscribe(lambda event: events.append(event) if isinstance(event, ConsoleOutput) else None)
    reader = ConsoleReader("m", -1, bus=bus)
    reader.feed(b"progress 50%\rprogress 100%\r")
    reader.feed(b"\ndone\r\n")  # the \r\n split across two reads is one line end
    assert [line for event in events for line in event.lines] == ["progress 50%\rprogress 100%", "done"]
    assert reader.lines() == ["progress 50%progress 100%", "done"]  # NixOS drops every \r
    assert plain_line(events[0].lines[0]) == "progress 100%"
