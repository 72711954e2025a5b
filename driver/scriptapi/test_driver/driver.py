"""`test_driver.driver`: the driver class and its name helper."""

from driver.driver import Driver, pythonize_name

__all__ = ["Driver", "pythonize_name"]
