"""Screens of the vmtui app besides the main one."""
