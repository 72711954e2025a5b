"""The private Textual hooks of widgets/textual_hooks.py still exist and still do what vmtui relies on.

If one of these fails after a Textual upgrade, do not patch the test: read
the hook's reason in widgets/textual_hooks.py, then change the hook (or
drop it if Textual now offers a public way).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from textual.app import App
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.widgets import Input

from widgets import textual_hooks
from widgets.console_view import ConsoleView
from widgets.steady_input import SteadyInput
from widgets.terminal_view import TerminalView


def _loud(hook: str) -> str:
    return f"Textual {version('textual')} changed the private hook {hook}: see widgets/textual_hooks.py"


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_scroll_update_takes_the_new_virtual_size() -> None:
    hook = getattr(ScrollView, textual_hooks.SCROLL_UPDATE, None)
    assert callable(hook), _loud("ScrollView._scroll_update")
    assert _parameters(hook) == ["self", "virtual_size"], _loud("ScrollView._scroll_update")
    assert issubclass(ConsoleView, ScrollView)


def test_input_value_watcher_is_what_stores_the_text_width() -> None:
    hook = getattr(Input, textual_hooks.INPUT_VALUE_WATCHER, None)
    assert callable(hook), _loud("Input._watch_value")
    assert _parameters(hook) == ["self", "value"], _loud("Input._watch_value")
    # SteadyInput drops exactly the layout this assignment asks for.
    assert "virtual_size" in inspect.getsource(hook), _loud("Input._watch_value")
    assert textual_hooks.INPUT_VALUE_WATCHER in vars(SteadyInput)


def test_widget_key_handler_is_a_coroutine_taking_the_key() -> None:
    hook = getattr(Widget, textual_hooks.KEY_HANDLER, None)
    assert hook is not None and inspect.iscoroutinefunction(hook), _loud("Widget._on_key")
    assert _parameters(hook) == ["self", "event"], _loud("Widget._on_key")
    # TerminalView overrides it and hands unclaimed keys back to it.
    assert textual_hooks.KEY_HANDLER in vars(TerminalView)
    assert TerminalView.__mro__[1] is Widget


def test_the_keymap_given_to_set_keymap_can_be_read_back() -> None:
    app: App[object] = App()
    assert dict(textual_hooks.keymap_of(app)) == {}, _loud("App._keymap")
    app.set_keymap({"vmtui.step_over": "j"})
    assert dict(textual_hooks.keymap_of(app)) == {"vmtui.step_over": "j"}, _loud("App._keymap")


def test_no_widget_or_app_module_reaches_textual_privates_directly() -> None:
    """Every private hook goes through widgets/textual_hooks.py."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    hooks = "|".join(re.escape(name) for name in (textual_hooks.SCROLL_UPDATE, textual_hooks.INPUT_VALUE_WATCHER,
                                                  textual_hooks.KEY_HANDLER, textual_hooks.APP_KEYMAP))
    call = re.compile(rf"(super\(\)|\bself\.app|\bself)\.({hooks})\b|[\"']({hooks})[\"']")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("widgets", "vmtui")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "textual_hooks.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if call.search(line)
    ]
    assert offenders == []
    assert Size(1, 1)  # (the hooks module's types import cleanly)


def test_text_area_keeps_rendered_lines_in_a_replaceable_cache_and_highlights_per_row() -> None:
    from textual.cache import LRUCache
    from textual.widgets import TextArea

    from widgets.line_cache import RowKeyedCache

    area = TextArea("x = 1\n", language=None)
    cache = getattr(area, textual_hooks.TEXT_AREA_LINE_CACHE, None)
    assert isinstance(cache, LRUCache), _loud("TextArea._line_cache")
    # render_line looks rows up in it (CodeArea swaps in a RowKeyedCache).
    assert textual_hooks.TEXT_AREA_LINE_CACHE in inspect.getsource(TextArea.render_line), _loud("TextArea._line_cache")
    textual_hooks.set_line_cache(area, RowKeyedCache(4))
    assert isinstance(getattr(area, textual_hooks.TEXT_AREA_LINE_CACHE), RowKeyedCache)
    highlights = getattr(area, textual_hooks.TEXT_AREA_HIGHLIGHTS, None)
    assert isinstance(highlights, dict), _loud("TextArea._highlights")
    assert textual_hooks.row_highlights(area, 0) == ()


def _refers_to_itself(strip: object) -> bool:
    """Whether `strip` can reach itself through its own caches (a reference cycle)."""
    import gc

    seen: set[int] = set()
    pending = list(gc.get_referents(strip))
    while pending:
        item = pending.pop()
        if item is strip:
            return True
        if id(item) in seen or not gc.is_tracked(item):
            continue
        seen.add(id(item))
        pending.extend(gc.get_referents(item))
    return False


def test_strips_stop_caching_themselves_and_answer_as_before() -> None:
    """Textual's Strip caches a whole-line crop and a one-cut divide in itself: a cycle per drawn line."""
    from rich.segment import Segment
    from rich.style import Style
    from textual.strip import Strip

    def strip() -> Strip:
        return Strip([Segment("hello ", Style(bold=True)), Segment("world")], 11)

    # The behaviour the hook removes: without it, a strip holds itself (fails loudly after an upgrade
    # that fixes this upstream, so the hook can go).
    original_crop_extend, original_divide = textual_hooks._strip_crop_extend, textual_hooks._strip_divide
    whole = strip()
    assert original_crop_extend(whole, 0, 11, None) is whole
    assert _refers_to_itself(whole), _loud("Strip.crop_extend (no longer caches self: drop the hook)")
    whole = strip()
    assert list(original_divide(whole, [11])) == [whole]
    assert _refers_to_itself(whole), _loud("Strip.divide (no longer caches self: drop the hook)")

    textual_hooks.end_strip_self_references()
    textual_hooks.end_strip_self_references()  # idempotent
    whole = strip()
    assert whole.crop_extend(0, 11, None) is whole
    assert whole.crop_extend(-3, 11, None) is whole
    assert [*whole.divide([11])] == [whole]
    assert [*whole.divide(iter([11, 20]))] == [whole]  # cuts past the end are ignored, as by Textual
    assert not _refers_to_itself(whole)
    # Every other answer is Textual's own.
    for start, end in ((0, 5), (2, 11), (3, 15), (0, 14), (12, 14)):
        assert whole.crop_extend(start, end, None).text == original_crop_extend(strip(), start, end, None).text
    for cuts in ([3, 11], [5], [2, 7, 11], [0, 11]):
        assert [part.text for part in whole.divide(cuts)] == [part.text for part in original_divide(strip(), cuts)]
