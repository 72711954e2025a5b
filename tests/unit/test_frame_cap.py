"""Importing vmtui lets Textual draw up to 240 frames a second, for that process only (vmtui/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import os, vmtui, textual.constants; print(textual.constants.MAX_FPS, 'TEXTUAL_FPS' in os.environ)"


def _probe(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.strip()


def test_vmtui_raises_textual_frame_cap_without_leaving_the_variable_to_children() -> None:
    env = {key: value for key, value in os.environ.items() if key != "TEXTUAL_FPS"}
    assert _probe(env) == "240 False"


def test_a_users_own_frame_cap_wins() -> None:
    env = {**os.environ, "TEXTUAL_FPS": "30"}
    assert _probe(env) == "30 True"
