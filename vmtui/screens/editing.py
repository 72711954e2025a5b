"""The questions the script editor asks: unsaved edits at quit, a file changed underneath.

Both are modal: nothing is written, discarded or reloaded until the user
has chosen, so no edit is ever lost behind their back.
"""

from __future__ import annotations

import difflib
from typing import ClassVar, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

QuitChoice = Literal["save", "discard", "cancel"]
ConflictChoice = Literal["mine", "theirs"]

_CSS = """
{name} {{
    align: center middle;
    & > Vertical {{
        width: 90;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $warning;
        border-title-color: $text;
        background: $surface;
        padding: 0 1;
    }}
    & Horizontal {{ height: auto; margin-top: 1; }}
    & Button {{ margin-right: 1; }}
    & #diff {{ height: auto; max-height: 20; display: none; border: round $panel-lighten-2; }}
    & #diff.-open {{ display: block; }}
}}
"""


def unified_diff(theirs: str, mine: str, name: str) -> Text:
    """The file on disk -> the editor's text, coloured like `diff -u`."""
    text = Text()
    lines = difflib.unified_diff(theirs.splitlines(), mine.splitlines(), f"{name} (on disk)", f"{name} (in vmtui)", lineterm="")
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else ""
        text.append(line + "\n", style=style)
    return text


class UnsavedQuitScreen(ModalScreen[QuitChoice]):
    """Quit with unsaved edits: save them, discard them, or stay."""

    DEFAULT_CSS = _CSS.format(name="UnsavedQuitScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss('cancel')", "Stay", show=False),
        Binding("s", "dismiss('save')", "Save and quit", show=False),
        Binding("d", "dismiss('discard')", "Discard and quit", show=False),
    ]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "unsaved edits"
            yield Static(f"{', '.join(self.names)}: edited in vmtui and not saved.  Quit anyway?", markup=False)
            with Horizontal():
                yield Button("Save and quit (s)", id="save", variant="primary")
                yield Button("Discard and quit (d)", id="discard", variant="error")
                yield Button("Stay (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        choice: QuitChoice = "save" if event.button.id == "save" else "discard" if event.button.id == "discard" else "cancel"
        self.dismiss(choice)


class ConflictScreen(ModalScreen[ConflictChoice]):
    """The file changed on disk while the editor holds unsaved edits: keep mine, take the file's, or look at the diff."""

    DEFAULT_CSS = _CSS.format(name="ConflictScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "dismiss('mine')", "Keep mine", show=False),
        Binding("f", "dismiss('theirs')", "Take the file's", show=False),
        Binding("d", "toggle_diff", "Show the diff", show=False),
    ]

    def __init__(self, name: str, mine: str, theirs: str) -> None:
        super().__init__()
        self.file_name = name
        self.mine = mine
        self.theirs = theirs

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"{self.file_name} changed on disk"
            yield Static(
                f"{self.file_name} was changed outside vmtui while the editor has unsaved edits.  "
                "Keeping yours leaves the file as it is until you save; taking the file's drops your edits.",
                markup=False,
            )
            with VerticalScroll(id="diff"):
                yield Static(unified_diff(self.theirs, self.mine, self.file_name), id="diff-text")
            with Horizontal():
                yield Button("Keep mine (m)", id="mine", variant="primary")
                yield Button("Take the file's (f)", id="theirs", variant="warning")
                yield Button("Show the diff (d)", id="show-diff")

    def action_toggle_diff(self) -> None:
        self.query_one("#diff").toggle_class("-open")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "show-diff":
            self.action_toggle_diff()
        else:
            self.dismiss("mine" if event.button.id == "mine" else "theirs")
