"""An Input whose typing repaints the line instead of relaying out the screen.

Textual's `Input` stores the width of its text in `virtual_size` on every
change of its value.  `virtual_size` is a layout reactive, so each key press
asks for a layout of the *whole screen*: every widget is re-arranged and
every scroll view re-renders its scrollbars, in the same frame that should
show the key.  While consoles flood, that frame is what a user waits for
(benchmarks/bench_keys.py).  An input whose box does not depend on its text
(any fixed width and height: all of vmtui's) only needs a repaint; the new
`virtual_size` is still stored, so horizontal scrolling of long text works
as before.
"""

from __future__ import annotations

from typing import Self

from textual.geometry import Region
from textual.widgets import Input

from widgets.textual_hooks import input_watch_value

__all__ = ["SteadyInput"]


class SteadyInput(Input):
    """`Input` that repaints rather than relayouts while its value changes.

    Only the layout request caused by the value changing is dropped, and only
    when the input's size is not `auto` (then its box would follow its text).
    Relies on `Input._watch_value` being the watcher that assigns
    `virtual_size` (a private hook: widgets/textual_hooks.py).
    """

    _value_changing = False

    def _watch_value(self, value: str) -> None:
        self._value_changing = True
        try:
            input_watch_value(self, value)
        finally:
            self._value_changing = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if layout and self._value_changing and not self.styles.auto_dimensions:
            layout = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
