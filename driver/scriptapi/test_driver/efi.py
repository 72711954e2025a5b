"""`test_driver.efi`: UEFI variables for `write_efi_vars` / `read_efi_vars`."""

from driver.efi_vars import EfiGuid, EfiVariable

__all__ = ["EfiGuid", "EfiVariable"]
