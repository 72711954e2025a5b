"""The OVMF variable store file (`OVMF_VARS.fd`): read, write, create.

The file is an image of the firmware's non-volatile flash, laid out by the
UEFI PI spec and edk2:

- a firmware volume header (`_FVH`, file system GUID
  `gEfiSystemNvDataFvGuid`, a block map, a 16-bit checksum over the header);
- a variable store header (`gEfiAuthenticatedVariableGuid`, or the older
  `gEfiVariableGuid` without authentication fields; size, FORMATTED 0x5A,
  HEALTHY 0xFE);
- the variables, each a header (start id 0x55AA, state, attributes, for the
  authenticated format also a monotonic count, a timestamp and a public key
  index; name size, data size, vendor GUID), the UTF-16 name with its NUL,
  the data, then padding to 4 bytes; unused flash reads 0xFF;
- after the store: an event log block, then edk2's fault tolerant write
  (FTW) working block (header with a CRC32) and its spare area.

Flash bits can only be cleared, so a variable's state goes 0xFF -> 0x7F
(header valid) -> 0x3F (added) -> 0x3E (being deleted) -> 0x3C (deleted);
edk2 counts 0x3F and 0x3E as live.

Writing rewrites the whole file the way a freshly formatted store looks:
the live variables packed from the start, the FTW working block reset, so
the firmware has no half-done write to replay over them.  This is how the
NixOS driver writes too.  Standard sizes are OVMF's 2 MB build (a 128 KiB
store file) and its 4 MB build (528 KiB); `empty_store(size)` builds either
byte for byte as edk2's build does (the tests compare it with Debian's
`OVMF_VARS*.fd`).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from driver.errors import EfiStoreError as EfiStoreError

SIZE_2MB_BUILD = 0x20000
SIZE_4MB_BUILD = 0x84000

GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")


class EfiGuid:
    """Vendor GUIDs met in OVMF variable stores (edk2's names)."""

    gEfiSystemNvDataFvGuid = uuid.UUID("fff12b8d-7696-4c8b-a985-2747075b4f50")
    gEfiAuthenticatedVariableGuid = uuid.UUID("aaf32c78-947b-439a-a180-2e144ec37792")
    gEfiVariableGuid = uuid.UUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")
    gEdkiiWorkingBlockSignatureGuid = uuid.UUID("9e58292b-7c68-497d-a0ce-6500fd9f1b95")
    gEfiGlobalVariableGuid = GLOBAL_VARIABLE
    gEdkiiVarErrorFlagGuid = uuid.UUID("04b37fe8-f6ae-480b-bdd5-37d98c5e89aa")
    gEfiMemoryTypeInformationGuid = uuid.UUID("4c19049f-4137-4dd3-9c10-8b97a83ffdfa")
    gMtcVendorGuid = uuid.UUID("eb704011-1402-11d3-8e77-00a0c969723b")
    gEfiIScsiInitiatorNameProtocolGuid = uuid.UUID("59324945-ec44-4c0d-b1cd-9db139df070c")
    gEfiIp4Config2ProtocolGuid = uuid.UUID("5b446ed1-e30b-4faa-871a-3654eca36080")
    gEfiImageSecurityDatabaseGuid = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
    gEfiCustomModeEnableGuid = uuid.UUID("c076ec0c-7028-4399-a072-71ee5c448b9f")
    gIScsiConfigGuid = uuid.UUID("4b47d616-a8d6-4552-9d44-ccad2e0f4cf9")
    gEfiCertDbGuid = uuid.UUID("d9bee56e-75dc-49d9-b4d7-b534210f637a")
    gMicrosoftVendorGuid = uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
    gEfiVendorKeysNvGuid = uuid.UUID("9073e4e0-60ec-4b6e-9903-4c223c260f3c")
    gEfiSecureBootEnableDisableGuid = uuid.UUID("f0a30bc7-af08-4556-99c4-001009c93a44")
    mBmHardDriveBootVariableGuid = uuid.UUID("fab7e9e1-39dd-4f2b-8408-e20e906cb6de")

    @classmethod
    def name_of(cls, guid: uuid.UUID) -> str | None:
        for name, value in vars(cls).items():
            if value == guid and isinstance(value, uuid.UUID):
                return name
        return None


class EfiVariable:
    """One UEFI variable: vendor GUID, name, data and attribute flags."""

    class Flags:
        NON_VOLATILE = 0x1
        BOOTSERVICE_ACCESS = 0x2
        RUNTIME_ACCESS = 0x4
        HARDWARE_ERROR_RECORD = 0x8
        AUTHENTICATED_WRITE_ACCESS = 0x10
        TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
        APPEND_WRITE = 0x40

    class State:
        VAR_HEADER_VALID_ONLY = 0x7F
        VAR_ADDED = 0x3F
        VAR_IN_DELETED_TRANSITION = 0xFE  # cleared into a live state: 0x3E
        VAR_DELETED = 0xFD

    def __init__(
        self,
        vendor_uuid: uuid.UUID | None = None,
        name: str | None = None,
        data: bytes | None = None,
        state: int | None = None,
        flags: int | None = None,
        *,
        monotonic_count: int = 0,
        timestamp: bytes = b"\0" * 16,
        pubkey_index: int = 0,
    ) -> None:
        self.vendor_uuid = vendor_uuid if vendor_uuid is not None else GLOBAL_VARIABLE
        self.name = name or ""
        self.data = bytes(data or b"")
        self.state = EfiVariable.State.VAR_ADDED if state is None else state
        self.flags = 0 if flags is None else flags
        self.monotonic_count = monotonic_count
        if len(timestamp) != 16:
            raise ValueError("an EFI_TIME timestamp is 16 bytes")
        self.timestamp = timestamp
        self.pubkey_index = pubkey_index

    # The attribute bits by name (as the NixOS driver's variables have them).
    @property
    def volatile(self) -> bool:
        return not self.flags & EfiVariable.Flags.NON_VOLATILE

    @property
    def boot_access(self) -> bool:
        return bool(self.flags & EfiVariable.Flags.BOOTSERVICE_ACCESS)

    @property
    def runtime_access(self) -> bool:
        return bool(self.flags & EfiVariable.Flags.RUNTIME_ACCESS)

    @property
    def hardware_error_record(self) -> bool:
        return bool(self.flags & EfiVariable.Flags.HARDWARE_ERROR_RECORD)

    @property
    def authenticated_write_access(self) -> bool:
        return bool(self.flags & EfiVariable.Flags.AUTHENTICATED_WRITE_ACCESS)

    @property
    def time_based_authenticated_write_access(self) -> bool:
        return bool(self.flags & EfiVariable.Flags.TIME_BASED_AUTHENTICATED_WRITE_ACCESS)

    @property
    def append_write(self) -> bool:
        return bool(self.flags & EfiVariable.Flags.APPEND_WRITE)

    @property
    def is_live(self) -> bool:
        return self.state in (_STATE_ADDED, _STATE_ADDED_DELETING)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EfiVariable):
            return NotImplemented
        return (self.vendor_uuid, self.name, self.data, self.flags) == (
            other.vendor_uuid,
            other.name,
            other.data,
            other.flags,
        )

    def __repr__(self) -> str:
        return (
            f"EfiVariable({vendor_key(self.vendor_uuid)}, {self.name!r}, {self.data!r}, "
            f"flags={describe_flags(self.flags)})"
        )


_STATE_ADDED = 0x3F
_STATE_ADDED_DELETING = 0x3E
_START_ID = 0x55AA
_FV_SIGNATURE = b"_FVH"
_FV_ATTRIBUTES = 0x0004FEFF
_FV_HEADER = struct.Struct("<16s16sQ4sIHHHBB")  # 56 bytes, then the block map
_BLOCK_SIZE = 0x1000
_STORE_HEADER = struct.Struct("<16sIBBHI")  # 28 bytes
_FORMATTED = 0x5A
_HEALTHY = 0xFE
_AUTH_VARIABLE = struct.Struct("<HBBIQ16sIII16s")  # 60 bytes
_PLAIN_VARIABLE = struct.Struct("<HBBIII16s")  # 32 bytes
_FTW_HEADER = struct.Struct("<16sIB3sQ")  # 32 bytes
_EVENT_LOG_SIZE = 0x1000
_FTW_WORKING_SIZE = 0x1000


def vendor_key(guid: uuid.UUID) -> str:
    """How `read` names a vendor: edk2's name for a known GUID, else the GUID."""
    return EfiGuid.name_of(guid) or str(guid)


def describe_flags(flags: int) -> str:
    names = [name for name, bit in vars(EfiVariable.Flags).items() if isinstance(bit, int) and flags & bit]
    rest = flags & ~0x7F
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


@dataclass
class StoreLayout:
    """Where the parts of a store file are (from its headers)."""

    size: int
    store_offset: int  # the variable store header
    store_size: int  # the store header and its variables
    authenticated: bool
    variables: list[EfiVariable] = field(default_factory=list)


def _align4(offset: int) -> int:
    return (offset + 3) & ~3


def _fv_checksum(header: bytes) -> int:
    words: tuple[int, ...] = struct.unpack(f"<{len(header) // 2}H", header)
    total = sum(words) & 0xFFFF
    return (0x10000 - total) & 0xFFFF


def _fv_header(size: int) -> bytes:
    blocks = struct.pack("<II", size // _BLOCK_SIZE, _BLOCK_SIZE) + struct.pack("<II", 0, 0)
    length = _FV_HEADER.size + len(blocks)
    fields = (b"\0" * 16, EfiGuid.gEfiSystemNvDataFvGuid.bytes_le, size, _FV_SIGNATURE, _FV_ATTRIBUTES, length)
    unsummed = _FV_HEADER.pack(*fields, 0, 0, 0, 2) + blocks
    return _FV_HEADER.pack(*fields, _fv_checksum(unsummed), 0, 0, 2) + blocks


def _ftw_header() -> bytes:
    # The CRC covers the header with its CRC field and state byte erased (all ones).
    queue_size = _FTW_WORKING_SIZE - _FTW_HEADER.size
    erased = _FTW_HEADER.pack(EfiGuid.gEdkiiWorkingBlockSignatureGuid.bytes_le, 0xFFFFFFFF, 0xFF, b"\xff" * 3, queue_size)
    crc = zlib.crc32(erased)
    return _FTW_HEADER.pack(EfiGuid.gEdkiiWorkingBlockSignatureGuid.bytes_le, crc, 0xFE, b"\xff" * 3, queue_size)


def _regions(size: int) -> tuple[int, int]:
    """(variable region size incl. the FV header, FTW working block offset) for a file size.

    OVMF splits its flash in halves: the first holds the FV header and the
    variables, then a 4 KiB event log and the 4 KiB FTW working block; the
    second half is the FTW spare area.
    """
    if size % (2 * _BLOCK_SIZE) or size < 8 * _BLOCK_SIZE:
        raise EfiStoreError(f"unsupported OVMF variable store size {size} (expected 128 KiB or 528 KiB)")
    half = size // 2
    region = half - _EVENT_LOG_SIZE - _FTW_WORKING_SIZE
    return region, region + _EVENT_LOG_SIZE


def empty_store(size: int = SIZE_4MB_BUILD) -> bytes:
    """A freshly formatted store file of `size` bytes, as edk2 builds it."""
    return serialize([], size)


def serialize(variables: list[EfiVariable], size: int = SIZE_4MB_BUILD, *, authenticated: bool = True) -> bytes:
    """A store file of `size` bytes holding `variables` (packed, in order)."""
    region, ftw_offset = _regions(size)
    image = bytearray(b"\xff" * size)
    fv = _fv_header(size)
    image[: len(fv)] = fv
    store_size = region - len(fv)
    signature = EfiGuid.gEfiAuthenticatedVariableGuid if authenticated else EfiGuid.gEfiVariableGuid
    image[len(fv) : len(fv) + _STORE_HEADER.size] = _STORE_HEADER.pack(
        signature.bytes_le, store_size, _FORMATTED, _HEALTHY, 0, 0
    )
    offset = _align4(len(fv) + _STORE_HEADER.size)
    for variable in variables:
        record = _variable_record(variable, authenticated)
        if offset + len(record) > region:
            raise EfiStoreError(
                f"the variables do not fit into the store ({store_size} bytes); "
                f"{variable.name!r} would end at byte {offset + len(record) - len(fv)}"
            )
        image[offset : offset + len(record)] = record
        offset = _align4(offset + len(record))
    image[ftw_offset : ftw_offset + _FTW_HEADER.size] = _ftw_header()
    return bytes(image)


def _variable_record(variable: EfiVariable, authenticated: bool) -> bytes:
    name = variable.name.encode("utf-16-le") + b"\0\0"
    guid = variable.vendor_uuid.bytes_le
    if authenticated:
        header = _AUTH_VARIABLE.pack(
            _START_ID,
            _STATE_ADDED,
            0,
            variable.flags,
            variable.monotonic_count,
            variable.timestamp,
            variable.pubkey_index,
            len(name),
            len(variable.data),
            guid,
        )
    else:
        header = _PLAIN_VARIABLE.pack(_START_ID, _STATE_ADDED, 0, variable.flags, len(name), len(variable.data), guid)
    return header + name + variable.data


def parse(image: bytes) -> StoreLayout:
    """The layout and every variable record (live or not) of a store file."""
    if len(image) < _FV_HEADER.size + 8:
        raise EfiStoreError("too short for a firmware volume header")
    (_zero, fs_guid, fv_length, signature, _attrs, header_length, _checksum, _ext, _res, _rev) = _FV_HEADER.unpack_from(image)
    if signature != _FV_SIGNATURE:
        raise EfiStoreError("no firmware volume signature (_FVH) at byte 40")
    if uuid.UUID(bytes_le=fs_guid) != EfiGuid.gEfiSystemNvDataFvGuid:
        raise EfiStoreError(f"the firmware volume is not a variable store (file system {uuid.UUID(bytes_le=fs_guid)})")
    if fv_length > len(image) or header_length < _FV_HEADER.size or header_length % 2:
        raise EfiStoreError("the firmware volume header is inconsistent with the file")
    if _fv_checksum(image[:header_length]) != 0:
        raise EfiStoreError("the firmware volume header checksum is wrong")
    store_offset = header_length
    signature_guid, store_size, store_format, store_state, _r1, _r2 = _STORE_HEADER.unpack_from(image, store_offset)
    kind = uuid.UUID(bytes_le=signature_guid)
    if kind == EfiGuid.gEfiAuthenticatedVariableGuid:
        authenticated = True
    elif kind == EfiGuid.gEfiVariableGuid:
        authenticated = False
    else:
        raise EfiStoreError(f"unknown variable store signature {kind}")
    if store_format != _FORMATTED or store_state != _HEALTHY:
        raise EfiStoreError(f"the variable store is not formatted and healthy (0x{store_format:02x}, 0x{store_state:02x})")
    end = store_offset + store_size
    if end > len(image):
        raise EfiStoreError("the variable store is larger than the file")
    layout = StoreLayout(len(image), store_offset, store_size, authenticated)
    offset = _align4(store_offset + _STORE_HEADER.size)
    header = _AUTH_VARIABLE if authenticated else _PLAIN_VARIABLE
    while offset + header.size <= end:
        fields = header.unpack_from(image, offset)
        if fields[0] != _START_ID:
            break
        if authenticated:
            _sid, state, _res, flags, count, stamp, key_index, name_size, data_size, guid = fields
        else:
            _sid, state, _res, flags, name_size, data_size, guid = fields
            count, stamp, key_index = 0, b"\0" * 16, 0
        name_start = offset + header.size
        data_start = name_start + name_size
        data_end = data_start + data_size
        if data_end > end or name_size % 2:
            raise EfiStoreError(f"variable record at byte {offset} runs past the store")
        name = image[name_start:data_start].decode("utf-16-le").rstrip("\0")
        layout.variables.append(
            EfiVariable(
                uuid.UUID(bytes_le=guid),
                name,
                image[data_start:data_end],
                state,
                flags,
                monotonic_count=count,
                timestamp=stamp,
                pubkey_index=key_index,
            )
        )
        offset = _align4(data_end)
    return layout


def live_variables(image: bytes) -> list[EfiVariable]:
    """The variables the firmware would see (one per vendor and name)."""
    chosen: dict[tuple[uuid.UUID, str], EfiVariable] = {}
    for variable in parse(image).variables:
        if not variable.is_live:
            continue
        key = (variable.vendor_uuid, variable.name)
        previous = chosen.get(key)
        # A variable being replaced exists twice for a moment: the new copy
        # (added) wins over the old one (being deleted).
        if previous is None or variable.state == _STATE_ADDED:
            chosen[key] = variable
    return list(chosen.values())


def by_vendor(variables: list[EfiVariable]) -> dict[str, dict[str, EfiVariable]]:
    grouped: dict[str, dict[str, EfiVariable]] = {}
    for variable in variables:
        grouped.setdefault(vendor_key(variable.vendor_uuid), {})[variable.name] = variable
    return grouped


def read_store(path: Path) -> dict[str, dict[str, EfiVariable]]:
    """The live variables of a store file, by vendor key, then name."""
    return by_vendor(live_variables(path.read_bytes()))


def write_store(path: Path, add: list[EfiVariable]) -> None:
    """Add (or replace) `add` in the store at `path`; a missing file becomes a new 4 MB-build store.

    The file keeps its size and variable format; it is rewritten through a
    temporary file and renamed, so a crash never leaves half a store.
    """
    if path.exists():
        image = path.read_bytes()
        layout = parse(image)
        size, authenticated = layout.size, layout.authenticated
        variables = live_variables(image)
    else:
        size, authenticated, variables = SIZE_4MB_BUILD, True, []
    keyed = {(v.vendor_uuid, v.name): v for v in variables}
    for variable in add:
        if not variable.name:
            raise EfiStoreError("an EFI variable needs a name")
        keyed[(variable.vendor_uuid, variable.name)] = variable
    content = serialize(list(keyed.values()), size, authenticated=authenticated)
    temporary = path.with_name(path.name + ".vmtui-tmp")
    temporary.write_bytes(content)
    temporary.chmod(0o644)
    temporary.replace(path)


def create_store(path: Path, size: int = SIZE_4MB_BUILD) -> None:
    path.write_bytes(empty_store(size))
    path.chmod(0o644)
