"""Every message a widget posts names its widget as `control`, so `@on(Msg, "#id")` can route it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from textual.message import Message

import widgets


def _widget_messages() -> list[type[Message]]:
    found: dict[str, type[Message]] = {}
    for info in pkgutil.iter_modules(widgets.__path__):
        module = importlib.import_module(f"widgets.{info.name}")
        for _, owner in inspect.getmembers(module, inspect.isclass):
            if owner.__module__ != module.__name__:
                continue
            for name, value in vars(owner).items():
                if inspect.isclass(value) and issubclass(value, Message):
                    found[f"{owner.__name__}.{name}"] = value
    return [found[key] for key in sorted(found)]


MESSAGES = _widget_messages()


def test_the_widgets_post_messages_at_all() -> None:
    assert len(MESSAGES) >= 10


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.__qualname__)
def test_message_has_control(message: type[Message]) -> None:
    control = inspect.getattr_static(message, "control")
    assert control is not inspect.getattr_static(Message, "control"), f"{message.__qualname__} lacks `control`"
    parameters = list(inspect.signature(message.__init__).parameters)
    # The widget comes first, so the message can never be built without it.
    assert len(parameters) >= 2 and parameters[0] == "self"
