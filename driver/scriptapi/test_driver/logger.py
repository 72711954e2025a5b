"""`test_driver.logger`: the logger types behind the script's `log`.

NixOS names several logger classes; in vmtui one `Logger` publishes every
line as an event, and the script's `log` is a `ScriptLogger` around it (its
`error()` ends the test, as in NixOS).  `AbstractLogger` is an abstract base
both are registered with, so type hints and isinstance checks keep working.
"""

import abc

from driver.logger import Logger, ScriptLogger


class AbstractLogger(abc.ABC):  # noqa: B024 - an interface name, no methods of its own
    """What NixOS scripts call the logger interface."""


AbstractLogger.register(Logger)
AbstractLogger.register(ScriptLogger)
CompositeLogger = Logger

__all__ = ["AbstractLogger", "CompositeLogger", "Logger", "ScriptLogger"]
