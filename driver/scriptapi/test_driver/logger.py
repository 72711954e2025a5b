"""`test_driver.logger`: the logger type behind the script's `log`.

NixOS names several logger classes; in vmtui one `Logger` publishes every
line as an event, so each name stands for it (type hints and isinstance
checks keep working).
"""

from driver.logger import Logger

AbstractLogger = Logger
CompositeLogger = Logger

__all__ = ["AbstractLogger", "CompositeLogger", "Logger"]
