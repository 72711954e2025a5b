"""vmtui's stand-in for the NixOS driver package, as test scripts import it.

Every class here is vmtui's own (re-exported), so `isinstance(node,
test_driver.machine.QemuMachine)` holds for the nodes of a test.
"""
