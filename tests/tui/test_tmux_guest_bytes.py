"""A guest that boots through SeaBIOS and prints hostile escapes cannot touch the user's terminal (tmux).

NixOS VMs boot through QEMU's default SeaBIOS, which writes `ESC c` (reset),
`ESC [?7l` and `ESC [2J` to the serial console before the kernel's first
line.  Here the tiny guest boots that way, from a NixOS-shaped start
script (`shape = "nixos"`: no `-bios`, so QEMU's default SeaBIOS), then
prints titles, an OSC 52 clipboard write, a hyperlink, screen
switches and mouse-mode changes to its console, into a command's output
(shown in the REPL), into the error that fails the script (the banner and
the timeline), and finally shuts down from the REPL.  tmux is the terminal:
its screen must keep the app's layout all along, and its pane title,
paste buffers and modes must be what the app set, not what the guest sent.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from test_tmux_demo import Terminal, descendants

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

VMTUI = Path(sys.executable).parent / "vmtui"

# printf format (`%%` is a percent sign): every kind of escape a guest could aim at the host terminal.
HOSTILE = (
    r"\033]0;guest-title\007\033]2;guest-title\033\\"
    r"\033]52;c;Z3Vlc3QtY2xpcGJvYXJk\007"
    r"\033]8;;http://guest.invalid/\033\\guest-link\033]8;;\033\\ "
    r"\033[31mguest-red\033[0m\n50%%\r100%%\n"
    r"\033c\033[?1049l\033[2J\033[H\033[?7l\033[?1003l\033[?25h\033P+q544e\033\\\033_apc\033\\\007"
    r"guest-end"
)

SCRIPT = f"""
start_all()
machine.wait_for_console_text("SeaBIOS")
# The guest really sent SeaBIOS's terminal reset over the serial line.
assert "\\x1bc" in machine.get_console_log(), "no ESC c on the console: not a SeaBIOS boot"
machine.succeed(r"printf '{HOSTILE}' > /dev/ttyS0")
out = machine.succeed(r"printf '{HOSTILE}'")
machine.log(out)
raise RuntimeError(out)
"""


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Terminal]:
    (tmp_path / "test.py").write_text(SCRIPT)
    (tmp_path / "test.toml").write_text('name = "seabios"\nscript = "test.py"\n[nodes.machine]\nshape = "nixos"\n')
    # Short: the machines' UNIX socket paths live under it.
    run_tmp = Path(tempfile.mkdtemp(prefix="vt-", dir="/tmp"))
    env = (
        f"XDG_STATE_HOME={tmp_path / 'state'} XDG_CONFIG_HOME={tmp_path / 'config'} TMPDIR={run_tmp}"
    )
    terminal = Terminal(f"env -u COLUMNS -u LINES {env} {VMTUI} {tmp_path / 'test.toml'}", tmp_path)
    # tmux turns OSC 52 into a paste buffer only when allowed to.
    terminal.tmux("set-option", "-s", "set-clipboard", "on")
    try:
        yield terminal
    finally:
        terminal.close_leaving_no_vm()
        shutil.rmtree(run_tmp, ignore_errors=True)


def modes(terminal: Terminal) -> dict[str, str]:
    names = ("pane_title", "alternate_on", "mouse_any_flag", "cursor_flag", "wrap_flag", "scroll_region_upper", "scroll_region_lower")
    values = terminal.tmux("display", "-p", "-t", "t", "\t".join(f"#{{{name}}}" for name in names)).rstrip("\n").split("\t")
    return dict(zip(names, values))


def evaluate(terminal: Terminal, source: str) -> None:
    """Type a line into the focused REPL, submit it once it shows, wait until it is taken."""
    terminal.keys("-l", source)
    typed = re.compile(rf"│ {re.escape(source)} +│")
    terminal.wait_for(lambda: typed.search(terminal.screen()) is not None, f"the REPL input to show {source!r}")
    terminal.keys("Enter")
    terminal.wait_for(lambda: f">>> {source}" in terminal.screen(), f"the REPL to take {source!r}")


def assert_layout(screen: str, *, state: str) -> None:
    rows = screen.splitlines()
    assert rows and "seabios" in rows[0] and state in rows[0], f"header lost:\n{screen}"
    assert "machine  ● connected" in screen or "machine  ○ exited" in screen, f"console pane lost:\n{screen}"
    assert "Timeline" in screen and "REPL" in screen, f"panes lost:\n{screen}"
    assert "Help" in rows[-1], f"footer lost:\n{screen}"
    assert "guest-title" not in screen.replace("guest-title\\", "")  # OSC payloads never show as text


def test_a_seabios_boot_and_hostile_guest_output_leave_the_terminal_alone(session: Terminal) -> None:
    initial_title = modes(session)["pane_title"]
    session.wait_for(lambda: "post-mortem" in session.screen().splitlines()[0], "the script to fail with the guest's text")
    screen = session.screen()
    assert_layout(screen, state="✗ post-mortem")
    # The console pane: the text, and the progress line as its last redraw left it.
    assert "│guest-link guest-red" in screen and re.search(r"│100% +│", screen), screen
    assert "│ ✗ RuntimeError: guest-link guest-red " in screen, screen  # the banner quotes the guest's bytes
    qemu = next(pid for pid, name in descendants(session.shell_pid).items() if name.startswith("qemu"))
    argv = Path(f"/proc/{qemu}/cmdline").read_bytes().split(b"\0")
    assert b"-bios" not in argv, "not QEMU's default firmware (SeaBIOS)"

    app_modes = modes(session)
    assert app_modes["pane_title"] == initial_title
    assert app_modes["alternate_on"] == "1" and app_modes["mouse_any_flag"] == "1" and app_modes["cursor_flag"] == "0"
    assert session.tmux("list-buffers") == "", "the guest wrote the clipboard (OSC 52)"

    # The REPL shows the command output the script kept, then shuts the guest down.
    session.keys("!")
    session.wait_for(lambda: "q Quit" not in session.screen().splitlines()[-1], "the REPL to take the focus")
    evaluate(session, "out")
    session.wait_for(lambda: "guest-end" in session.screen(), "the REPL to show the command output")
    evaluate(session, "machine.shutdown()")
    session.wait_for(lambda: "machine  ○ exited" in session.screen(), "the guest to shut down")
    assert_layout(session.screen(), state="✗ post-mortem")
    assert modes(session) == app_modes
    assert session.tmux("list-buffers") == ""

    session.keys("Escape")
    session.wait_for(lambda: "q Quit" in session.screen().splitlines()[-1], "the REPL to give the focus back")
    session.keys("q")
    session.wait_for(lambda: session.exit_status() is not None, "vmtui to exit")
