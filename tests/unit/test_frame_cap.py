"""The TUIs let Textual draw up to 240 frames a second, for vmtui's own process only (vmtui/frame_cap.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import os, sys
from vmtui.frame_cap import raise_textual_frame_cap
raised = raise_textual_frame_cap()
import textual.constants
print(raised, textual.constants.MAX_FPS, 'TEXTUAL_FPS' in os.environ, raise_textual_frame_cap())
"""


def _probe(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.strip()


def test_the_frame_cap_is_raised_without_leaving_the_variable_to_children() -> None:
    env = {key: value for key, value in os.environ.items() if key != "TEXTUAL_FPS"}
    assert _probe(env) == "True 240 False False"


def test_a_users_own_frame_cap_wins() -> None:
    env = {**os.environ, "TEXTUAL_FPS": "30"}
    assert _probe(env) == "False 30 True False"


def test_both_tuis_raise_it_before_textual_is_imported() -> None:
    """The CLI raises the cap before importing either app module (Textual reads it once)."""
    import inspect

    from vmtui import cli

    for function, app_import in ((cli._run, "from vmtui.app import"), (cli._run_replay, "from vmtui.replay.app import")):
        source = inspect.getsource(function)
        assert "raise_textual_frame_cap()" in source
        assert source.index("raise_textual_frame_cap()") < source.index(app_import)
