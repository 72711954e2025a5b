"""Keep the headless log under Hydra's build-log limit.

Hydra cuts build logs at 64 MB, and a chatty serial console gets there on its
own; the end of the log (the failure, the traceback) is then what gets lost.
A `SerialBudget` counts every byte the terminal log writes; once the serial
lines would take the total past `serial_limit`, a node's serial lines are
dropped from stderr, after one note naming the file that has them all (the
run record keeps every line).  The driver's own lines are never dropped, and
`serial_limit` leaves them room under the hard limit.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

HYDRA_LOG_LIMIT = 64 * 1024 * 1024
# Serial lines stop here; the rest of the 64 MB is for the driver's own
# lines (blocks, errors, the traceback) that follow.
DEFAULT_SERIAL_LIMIT = 48 * 1024 * 1024
SERIAL_LIMIT_ENV = "VMTUI_STDERR_SERIAL_LIMIT"


def serial_limit_from_env() -> int:
    """Bytes of stderr after which serial lines are trimmed (`$VMTUI_STDERR_SERIAL_LIMIT`)."""
    value = os.environ.get(SERIAL_LIMIT_ENV, "")
    try:
        limit = int(value)
    except ValueError:
        return DEFAULT_SERIAL_LIMIT
    return min(limit, DEFAULT_SERIAL_LIMIT) if limit > 0 else DEFAULT_SERIAL_LIMIT


class SerialBudget:
    """Decides which serial lines still reach stderr; thread safe."""

    def __init__(self, serial_limit: int, full_console: Callable[[str], str]) -> None:
        self.serial_limit = serial_limit
        # machine -> where its whole console is (for the note).
        self.full_console = full_console
        self.written = 0
        self.trimmed_lines = 0
        self._noted: set[str] = set()
        self._lock = threading.Lock()

    def count(self, size: int) -> None:
        """Bytes that were just written to stderr (any line)."""
        with self._lock:
            self.written += size

    def admit(self, machine: str, lines: list[str]) -> list[str]:
        """The lines of this chunk to print: all of them, or a note once, or none."""
        size = sum(len(line.encode("utf-8", "replace")) + 1 for line in lines)
        with self._lock:
            if machine not in self._noted and self.written + size <= self.serial_limit:
                return lines
            self.trimmed_lines += len(lines)
            if machine in self._noted:
                return []
            self._noted.add(machine)
        return [
            f"vmtui: serial output of {machine} is trimmed from here on, to keep this log under "
            f"{HYDRA_LOG_LIMIT // (1024 * 1024)} MB; its whole console is in {self.full_console(machine)}"
        ]
