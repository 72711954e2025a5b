"""F1: every key of vmtui with its binding id (the name a keymap file uses)."""

from __future__ import annotations

from typing import ClassVar, Iterable, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from vmtui.keymap import default_keymap_path
from widgets.textual_hooks import keymap_of

INTRO = (
    "vmtui runs the test script in a step debugger beside every node's console.  "
    "Keys below work anywhere unless a text box has focus.  "
    "Remap any key by its id in {path} (for example  \"vmtui.step_over\" = \"n,f10\")."
)


CONSOLE_FOCUS_PREFIX = "vmtui.focus_console_"


def bindings_of(owner: type) -> list[Binding]:
    """The `Binding`s a class declares itself (tuples are normalised)."""
    declared: Iterable[BindingType] = owner.__dict__.get("BINDINGS", [])
    result: list[Binding] = []
    for item in declared:
        if isinstance(item, Binding):
            result.append(item)
        else:
            result.append(Binding(*item))
    return result


class HelpScreen(ModalScreen[None]):
    """A modal table of keys, grouped by where they apply."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f1,question_mark", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        & > VerticalScroll {
            width: 96;
            max-width: 95%;
            height: 90%;
            border: round $accent;
            border-title-color: $text;
            background: $surface;
            padding: 0 1;
        }
        & .help-intro { color: $text-muted; margin-bottom: 1; }
    }
    """

    def __init__(self, sections: Sequence[tuple[str, type]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "vmtui keys  (Esc closes)"
            yield Static(INTRO.format(path=default_keymap_path()), classes="help-intro", markup=False)
            for title, owner in self.sections:
                yield Static(self._table(title, bindings_of(owner)))

    def _table(self, title: str, bindings: list[Binding]) -> Table:
        keymap = keymap_of(self.app)
        table = Table(title=title, title_justify="left", title_style="bold", expand=True, box=None, padding=(0, 1))
        table.add_column("keys", style="bold", width=20, no_wrap=True)
        table.add_column("does", ratio=1)
        table.add_column("id", style="dim", min_width=27, no_wrap=True)
        for binding in bindings:
            if binding.id and binding.id.startswith(CONSOLE_FOCUS_PREFIX):
                # Nine near-identical rows say less than one.
                if binding.id == CONSOLE_FOCUS_PREFIX + "1":
                    table.add_row("1 … 9, 0", Text("Show and focus node 1 … 10's console (0 is node 10)"), CONSOLE_FOCUS_PREFIX + "N")
                continue
            keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
            shown = ", ".join(self.app.get_key_display(Binding(key, binding.action)) for key in keys.split(","))
            table.add_row(shown, Text(binding.tooltip or binding.description), binding.id or "")
        return table
