"""`test_driver.errors`: the exception types scripts catch."""

from driver.errors import (
    BackdoorTimeout,
    MachineDied,
    MachineError,
    PollingConditionError,
    RequestedAssertionFailed,
    TestScriptError,
)

__all__ = [
    "BackdoorTimeout",
    "MachineDied",
    "MachineError",
    "PollingConditionError",
    "RequestedAssertionFailed",
    "TestScriptError",
]
