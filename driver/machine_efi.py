"""The UEFI variable methods of `Machine` (NixOS: `create_efi_vars()` & co.).

A node that boots OVMF keeps its non-volatile variables in a file: NixOS
start scripts use `$NIX_EFI_VARS`, by default `<name>-efi-vars.fd` in the
working directory (the machine's state directory), and copy the firmware's
template there when it is missing.  These methods work on that file while
QEMU is not running (the firmware owns the flash while it runs), so a test
can seed variables before `start()` and inspect them after `shutdown()`.

A node whose start script never mentions `NIX_EFI_VARS` (or `pflash`) and
has no such file does not boot UEFI: every method says so in one error.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from driver import efi_vars
from driver.efi_vars import EfiStoreError, EfiVariable
from driver.errors import MachineError, RequestedAssertionFailed

# A start script larger than this is not a shell script worth reading.
_MAX_SCRIPT_BYTES = 1 << 20
_UEFI_MARKERS = (b"NIX_EFI_VARS", b"pflash")


class EfiVarsMixin:
    """`create_efi_vars`, `write_efi_vars`, `read_efi_vars`, `dump_efi_vars`.

    Mixed into `Machine`, whose name, state directory, start command and
    lifecycle these use.
    """

    name: str
    state_dir: Path
    start_command: str

    @property
    def efi_vars_path(self) -> Path:
        """The node's OVMF variables file, as its start script finds it."""
        configured = Path(os.environ.get("NIX_EFI_VARS") or f"{self.name}-efi-vars.fd")
        return configured if configured.is_absolute() else self.state_dir / configured

    def _start_script_boots_uefi(self) -> bool:
        try:
            words = shlex.split(self.start_command)
        except ValueError:
            return False
        for word in words:
            path = Path(word)
            if "/" not in word or not path.is_file():
                continue
            try:
                if path.stat().st_size > _MAX_SCRIPT_BYTES:
                    continue
                text = path.read_bytes()
            except OSError:
                continue
            if any(marker in text for marker in _UEFI_MARKERS):
                return True
        return False

    def _efi_store(self, action: str) -> Path:
        """The store path, after checking the node has one and QEMU is not using it."""
        machine: Any = self
        path: Path = machine.efi_vars_path
        if machine.booted and machine.is_dead() is None:
            # As NixOS: the firmware owns the flash while QEMU runs.
            raise RequestedAssertionFailed(
                f"{machine.name}: cannot {action} the OVMF variables while the machine runs "
                "(concurrent access to the variable store is unsupported); shut it down first"
            )
        if not path.exists() and not machine._start_script_boots_uefi():
            raise MachineError(
                f"{machine.name}: this node has no UEFI variable store: its start script does not "
                f"boot OVMF (it never mentions NIX_EFI_VARS or pflash) and {path} does not exist"
            )
        return path

    def create_efi_vars(self) -> None:
        """Create an empty OVMF variable store (fails if the node has one already)."""
        machine: Any = self
        path = machine._efi_store("create")
        if path.exists():
            raise RequestedAssertionFailed(f"{machine.name}: the OVMF variables store exists: {path}")
        with machine.nested(f"creating an empty OVMF variable store {path.name}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            efi_vars.create_store(path)

    def write_efi_vars(self, variables: list[EfiVariable]) -> None:
        """Add or replace `variables` in the node's store (created if missing)."""
        machine: Any = self
        path = machine._efi_store("write")
        names = ", ".join(v.name for v in variables)
        with machine.nested(f"writing OVMF variables: {names}"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                efi_vars.write_store(path, list(variables))
            except EfiStoreError as error:
                raise MachineError(f"{machine.name}: cannot write {path}: {error}") from None

    def read_efi_vars(self) -> dict[str, dict[str, EfiVariable]] | None:
        """The live variables, by vendor (edk2's GUID name or the GUID), then name; None without a store file."""
        machine: Any = self
        path = machine._efi_store("read")
        if not path.exists():
            return None
        try:
            return efi_vars.read_store(path)
        except EfiStoreError as error:
            raise MachineError(f"{machine.name}: {path} is not a readable OVMF variable store: {error}") from None

    def dump_efi_vars(self) -> None:
        """Log every variable of the node's store: vendor, name, attributes, data."""
        machine: Any = self
        variables = machine.read_efi_vars()
        with machine.nested(f"OVMF variables of {machine.name}"):
            if variables is None:
                machine.log(f"no variable store yet ({machine.efi_vars_path})")
                return
            for vendor, named in variables.items():
                for name, variable in named.items():
                    preview = variable.data[:32].hex(" ")
                    more = " ..." if len(variable.data) > 32 else ""
                    machine.log(
                        f"{vendor} {name}: {efi_vars.describe_flags(variable.flags)}, "
                        f"{len(variable.data)} bytes: {preview}{more}"
                    )
