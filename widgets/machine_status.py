"""What a console pane says about its node: state, pid, exit code, uptime."""

from __future__ import annotations

from dataclasses import dataclass

from textual.markup import escape

from driver.events import MachineState, MachineStateChanged
from driver.terminal_text import plain_text

# Theme variables per state, so the state line follows the app's theme.
_STATE_COLOUR = {
    MachineState.CREATED: "$text-muted",
    MachineState.BOOTING: "$text-warning",
    MachineState.CONNECTED: "$text-success",
    MachineState.SHUTTING_DOWN: "$text-warning",
    MachineState.EXITED: "$text-muted",
}

_STATE_GLYPH = {
    MachineState.CREATED: "○",
    MachineState.BOOTING: "◐",
    MachineState.CONNECTED: "●",
    MachineState.SHUTTING_DOWN: "◑",
    MachineState.EXITED: "○",
}


def format_duration(seconds: float) -> str:
    """Short human duration: `0.42s`, `12.3s`, `4:05`, `1:02:03`."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"



@dataclass
class MachineStatus:
    """The last known state of one node, folded from `MachineStateChanged` events."""

    name: str
    state: MachineState = MachineState.CREATED
    pid: int | None = None
    exit_code: int | None = None
    detail: str = ""
    # Monotonic time the current QEMU process started; None when not running.
    started_at: float | None = None
    # "kvm" or "tcg" once QEMU said so for the current process, else None.
    accelerator: str | None = None

    def apply(self, event: MachineStateChanged) -> None:
        if event.state is MachineState.BOOTING and self.state in (MachineState.CREATED, MachineState.EXITED):
            self.started_at = event.timestamp
            self.exit_code = None
            self.accelerator = None
        if event.accelerator is not None:
            self.accelerator = event.accelerator
        if event.state is MachineState.EXITED:
            self.started_at = None
            self.exit_code = event.exit_code
        if event.pid is not None:
            self.pid = event.pid
        self.state = event.state
        self.detail = event.detail

    @property
    def is_running(self) -> bool:
        return self.state in (MachineState.BOOTING, MachineState.CONNECTED, MachineState.SHUTTING_DOWN)

    def glyph_markup(self) -> str:
        """The state's glyph in its colour, as Textual markup."""
        return f"[{_STATE_COLOUR[self.state]}]{_STATE_GLYPH[self.state]}[/]"

    @property
    def colour(self) -> str:
        """The state's theme variable (`$text-success` ...)."""
        return _STATE_COLOUR[self.state]

    @property
    def glyph(self) -> str:
        return _STATE_GLYPH[self.state]

    def uptime(self, now: float) -> float | None:
        return None if self.started_at is None else max(0.0, now - self.started_at)

    def markup(self, now: float | None) -> str:
        """One line of Textual markup: `● connected · pid 123 · up 0:31`.

        `now` is a monotonic time; None leaves the uptime out (stable screenshots).
        """
        colour = _STATE_COLOUR[self.state]
        parts = [f"[{colour}]{_STATE_GLYPH[self.state]} {self.state.value}[/]"]
        if self.state is MachineState.EXITED and self.exit_code is not None:
            code_colour = "$text-success" if self.exit_code == 0 else "$text-error"
            parts[0] = f"[{colour}]{_STATE_GLYPH[self.state]} exited[/] [{code_colour}]code {self.exit_code}[/]"
        if self.accelerator is not None and self.is_running:
            parts.append(escape(plain_text(self.accelerator)))
        if self.pid is not None and self.is_running:
            parts.append(f"pid {self.pid}")
        uptime = self.uptime(now) if now is not None else None
        if uptime is not None:
            parts.append(f"up {format_duration(uptime) if uptime >= 60 else f'{int(uptime)}s'}")
        if self.detail:
            parts.append(f"[i]{escape(plain_text(self.detail))}[/]")
        return " · ".join(parts)
