from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The scenes module (recorded events for snapshots) sits beside the tests.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    """Every session a test's app made ends with the test (VMs, switches, temp dirs)."""
    yield
    import helpers

    helpers.close_made_sessions()
