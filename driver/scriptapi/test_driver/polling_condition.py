"""`test_driver.polling_condition`."""

from driver.errors import PollingConditionError
from driver.polling import PollingCondition

__all__ = ["PollingCondition", "PollingConditionError"]
