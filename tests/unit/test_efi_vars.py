"""The OVMF variable store format, against Debian's real OVMF files, and the
machine methods on it (no VM boots here; tests/integration/test_api_2026.py
boots OVMF)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from driver import efi_vars
from driver.config import NodeConfig
from driver.config import TestConfig as Config
from driver.driver import Driver
from driver.runstate import Runstate
from driver.efi_vars import EfiGuid, EfiStoreError, EfiVariable
from driver.errors import MachineError, RequestedAssertionFailed
from driver.events import EventBus, LogMessage

OVMF = Path("/usr/share/OVMF")
VENDOR = uuid.UUID("65a72bd9-f42b-4039-8084-66cd1702cb24")
VISIBLE = EfiVariable.Flags.NON_VOLATILE | EfiVariable.Flags.BOOTSERVICE_ACCESS | EfiVariable.Flags.RUNTIME_ACCESS


@pytest.mark.parametrize(
    ("template", "size"),
    [("OVMF_VARS_4M.fd", efi_vars.SIZE_4MB_BUILD), ("OVMF_VARS.fd", efi_vars.SIZE_2MB_BUILD)],
)
def test_an_empty_store_is_byte_for_byte_debians_template(template: str, size: int) -> None:
    assert efi_vars.empty_store(size) == (OVMF / template).read_bytes()


def test_the_secure_boot_template_parses_with_its_keys() -> None:
    variables = efi_vars.by_vendor(efi_vars.live_variables((OVMF / "OVMF_VARS_4M.ms.fd").read_bytes()))
    assert {"PK", "KEK", "Boot0000", "Timeout"} <= set(variables["gEfiGlobalVariableGuid"])
    assert set(variables["gEfiImageSecurityDatabaseGuid"]) == {"db", "dbx"}
    pk = variables["gEfiGlobalVariableGuid"]["PK"]
    assert pk.time_based_authenticated_write_access and pk.runtime_access and not pk.volatile
    # PK is an EFI_SIGNATURE_LIST of X.509 certificates: its type GUID comes first.
    assert uuid.UUID(bytes_le=pk.data[:16]) == uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")


def test_writing_keeps_every_variable_and_adds_the_new_one(tmp_path: Path) -> None:
    store = tmp_path / "vars.fd"
    shutil.copy(OVMF / "OVMF_VARS_4M.ms.fd", store)
    before = efi_vars.live_variables(store.read_bytes())
    efi_vars.write_store(store, [EfiVariable(VENDOR, "AbrNextBoot", b"a", flags=EfiVariable.Flags.NON_VOLATILE)])
    image = store.read_bytes()
    assert len(image) == efi_vars.SIZE_4MB_BUILD
    after = efi_vars.live_variables(image)
    assert after[: len(before)] == before
    assert after[-1] == EfiVariable(VENDOR, "AbrNextBoot", b"a", flags=1)
    assert efi_vars.read_store(store)[str(VENDOR)]["AbrNextBoot"].data == b"a"


def test_writing_a_variable_again_replaces_it(tmp_path: Path) -> None:
    store = tmp_path / "vars.fd"
    efi_vars.create_store(store)
    efi_vars.write_store(store, [EfiVariable(VENDOR, "Mode", b"one", flags=VISIBLE)])
    efi_vars.write_store(store, [EfiVariable(VENDOR, "Mode", b"two", flags=VISIBLE)])
    assert [(v.name, v.data) for v in efi_vars.live_variables(store.read_bytes())] == [("Mode", b"two")]


def test_deleted_records_are_not_live_and_the_added_copy_wins() -> None:
    old = EfiVariable(VENDOR, "X", b"old", flags=VISIBLE)
    new = EfiVariable(VENDOR, "X", b"new", flags=VISIBLE)
    gone = EfiVariable(VENDOR, "Gone", b"", flags=VISIBLE)
    image = bytearray(efi_vars.serialize([old, gone, new]))
    records = efi_vars.parse(bytes(image)).variables
    assert len(records) == 3
    # Edit the state bytes in place, as the firmware does on flash.
    first = 0x64
    image[first + 2] = 0x3E  # the old copy is being deleted
    second = first + ((60 + 4 + 3 + 3) & ~3)
    image[second + 2] = 0x3C  # "Gone" is deleted
    live = efi_vars.live_variables(bytes(image))
    assert [(v.name, v.data) for v in live] == [("X", b"new")]


def test_a_store_that_is_full_is_refused() -> None:
    big = [EfiVariable(VENDOR, f"v{i}", b"x" * 4000, flags=VISIBLE) for i in range(20)]
    with pytest.raises(EfiStoreError, match="do not fit"):
        efi_vars.serialize(big, efi_vars.SIZE_2MB_BUILD)


@pytest.mark.parametrize("damage", ["signature", "checksum", "store"])
def test_damaged_files_are_refused(damage: str) -> None:
    image = bytearray(efi_vars.empty_store())
    if damage == "signature":
        image[40:44] = b"XXXX"
    elif damage == "checksum":
        image[0x32] ^= 0xFF
    else:
        image[0x48:0x58] = uuid.uuid4().bytes
    with pytest.raises(EfiStoreError):
        efi_vars.parse(bytes(image))


def test_guid_names_follow_edk2() -> None:
    assert efi_vars.vendor_key(EfiGuid.gEfiGlobalVariableGuid) == "gEfiGlobalVariableGuid"
    assert efi_vars.vendor_key(VENDOR) == str(VENDOR)


# -- the machine methods -------------------------------------------------------------


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    uefi = bin_dir / "run-uefi-vm"
    uefi.write_text('#!/bin/sh\nNIX_EFI_VARS=$(readlink -f "${NIX_EFI_VARS:-uefi-efi-vars.fd}")\nexit 1\n')
    bios = bin_dir / "run-bios-vm"
    bios.write_text("#!/bin/sh\nexit 1\n")
    for script in (uefi, bios):
        script.chmod(0o755)
    test_script = tmp_path / "test.py"
    test_script.write_text("")
    config = Config(
        nodes=[NodeConfig("uefi", str(uefi)), NodeConfig("bios", str(bios))], vlans=[], script_path=test_script
    )
    with Driver(config, bus=EventBus(), out_dir=tmp_path / "out", tmp_dir=tmp_path / "state") as d:
        yield d


def test_a_node_without_uefi_says_so(driver: Driver) -> None:
    bios = driver.machine_named("bios")
    for call in (bios.create_efi_vars, bios.read_efi_vars, bios.dump_efi_vars, lambda: bios.write_efi_vars([])):
        with pytest.raises(MachineError, match="bios: this node has no UEFI variable store"):
            call()


def test_create_write_read_on_the_nodes_store(driver: Driver) -> None:
    node = driver.machine_named("uefi")
    assert node.efi_vars_path == node.state_dir / "uefi-efi-vars.fd"
    assert node.read_efi_vars() is None
    node.create_efi_vars()
    assert node.efi_vars_path.read_bytes() == efi_vars.empty_store()
    with pytest.raises(RequestedAssertionFailed, match="store exists"):
        node.create_efi_vars()
    node.write_efi_vars([EfiVariable(EfiGuid.gEfiGlobalVariableGuid, "Timeout", b"\x05\x00", flags=VISIBLE)])
    assert node.read_efi_vars() == {
        "gEfiGlobalVariableGuid": {"Timeout": EfiVariable(EfiGuid.gEfiGlobalVariableGuid, "Timeout", b"\x05\x00", flags=VISIBLE)}
    }


def test_nix_efi_vars_names_the_file(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    node = driver.machine_named("uefi")
    monkeypatch.setenv("NIX_EFI_VARS", "elsewhere.fd")
    assert node.efi_vars_path == node.state_dir / "elsewhere.fd"


def test_the_store_is_off_limits_while_qemu_runs(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    node = driver.machine_named("uefi")
    node.create_efi_vars()
    # As if QEMU had been started and still ran.
    node.runstate.move(Runstate.STARTING)
    node.runstate.move(Runstate.BOOTED)
    monkeypatch.setattr(node, "is_dead", lambda: None)
    with pytest.raises(RequestedAssertionFailed, match="while the machine runs"):
        node.read_efi_vars()
    with pytest.raises(RequestedAssertionFailed, match="while the machine runs"):
        node.write_efi_vars([])


def test_dump_logs_each_variable(driver: Driver) -> None:
    node = driver.machine_named("uefi")
    messages: list[str] = []
    driver.bus.subscribe(lambda e: messages.append(e.message) if isinstance(e, LogMessage) else None)
    node.write_efi_vars([EfiVariable(VENDOR, "AbrNextBoot", b"a", flags=VISIBLE)])
    node.dump_efi_vars()
    assert f"{VENDOR} AbrNextBoot: NON_VOLATILE|BOOTSERVICE_ACCESS|RUNTIME_ACCESS, 1 bytes: 61" in messages
