from __future__ import annotations

import sys
from pathlib import Path

# The scenes module (recorded events for snapshots) sits beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
