"""UEFI variables for real: a tiny guest booted through OVMF sees what
`write_efi_vars` put into its variable store, and `read_efi_vars` returns
what the guest wrote into it.

The node's start script is shaped like a NixOS `useEFIBoot` one: it resolves
`$NIX_EFI_VARS` (default `<name>-efi-vars.fd` in its working directory),
copies Debian's `OVMF_VARS_4M.fd` there when missing, and gives QEMU the
firmware code and that file as two pflash drives; the kernel is still booted
with `-kernel` (OVMF loads its EFI stub from QEMU's fw_cfg).  The guest reads and writes
variables through efivarfs (a module in Debian's kernel, shipped into the
guest as a file).
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from driver.config import NodeConfig
from driver.config import TestConfig as Config
from driver.driver import Driver
from driver.events import EventBus
from driver.guest import debs
from driver.guest.startscript import HostEntry, write_start_script
from driver.guest.tiny import TinyGuestImage, build_tiny_guest
from driver.runner import ScriptRunner

pytestmark = pytest.mark.vm

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
VENDOR = uuid.UUID("3b1f6c2e-52a4-4d7e-9a0b-6f8d2c1e4a55")


def kernel_package_files(image: TinyGuestImage, members: list[str]) -> list[bytes]:
    """Files of the cached kernel package the tiny guest was built from."""
    deb = next((debs.cache_dir() / "debs").glob(f"linux-image-{image.kernel_version}_*.deb"))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    contents = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in members:
            extracted = archive.extractfile(member)
            assert extracted is not None, member
            contents.append(extracted.read())
    return contents


def uefi_start_script(directory: Path, inner: Path, name: str, kernel: Path) -> Path:
    script = directory / f"run-{name}-vm"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/usr/bin/env bash
            set -euo pipefail
            NIX_EFI_VARS=$(readlink -f "${{NIX_EFI_VARS:-{name}-efi-vars.fd}}")
            if [ ! -e "$NIX_EFI_VARS" ]; then
                cp {shlex.quote(str(OVMF_VARS))} "$NIX_EFI_VARS"
                chmod 0644 "$NIX_EFI_VARS"
            fi
            export QEMU_OPTS="${{QEMU_OPTS:-}} -drive if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE} -drive if=pflash,format=raw,unit=1,file=$NIX_EFI_VARS -kernel {kernel}"
            exec {shlex.quote(str(inner))} "$@"
            """
        )
    )
    script.chmod(0o755)
    return script


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    base = tmp_path_factory.mktemp("efi")
    image = build_tiny_guest()
    version = image.kernel_version
    bzimage, efivarfs = kernel_package_files(
        image, [f"./boot/vmlinuz-{version}", f"./lib/modules/{version}/kernel/fs/efivarfs/efivarfs.ko"]
    )
    # OVMF boots the EFI stub of the bzImage (the tiny guest's own kernel is
    # the unpacked ELF, for QEMU's faster PVH entry, which OVMF cannot boot).
    kernel = base / "vmlinuz"
    kernel.write_bytes(bzimage)
    inner = write_start_script(
        base / "inner",
        name="firm",
        node_number=1,
        vlans=[],
        hosts=[HostEntry("firm", 1, 1)],
        image=image,
        files={"/lib/efivarfs.ko": efivarfs},
    )
    (base / "bin").mkdir()
    script = uefi_start_script(base / "bin", inner, "firm", kernel)
    (base / "test.py").write_text("")
    config = Config(nodes=[NodeConfig("firm", str(script))], vlans=[], script_path=base / "test.py")
    with Driver(config, bus=EventBus(), out_dir=base / "out", tmp_dir=base / "state") as d:
        yield d


SCRIPT = f"""
import datetime
import uuid
from test_driver.efi import EfiGuid, EfiVariable

VENDOR = uuid.UUID("{VENDOR}")
SEEN = EfiVariable.Flags.NON_VOLATILE | EfiVariable.Flags.BOOTSERVICE_ACCESS | EfiVariable.Flags.RUNTIME_ACCESS

machine.create_efi_vars()
machine.write_efi_vars([EfiVariable(VENDOR, "VmtuiSeed", b"from the host", flags=SEEN)])
machine.start()
machine.connect()
machine.succeed("insmod /lib/efivarfs.ko", "mount -t efivarfs efivarfs /sys/firmware/efi/efivars")
# efivarfs files are the 4 attribute bytes, then the data.
seen_by_guest = machine.succeed(f"od -An -tx1 /sys/firmware/efi/efivars/VmtuiSeed-{{VENDOR}}")
machine.succeed(f"printf '\\\\007\\\\000\\\\000\\\\000written by the guest' > /sys/firmware/efi/efivars/VmtuiGuest-{{VENDOR}}")
machine.shutdown()
after = machine.read_efi_vars()
machine.dump_efi_vars()
"""


def test_the_guest_sees_host_written_variables_and_the_host_reads_guest_written_ones(driver: Driver) -> None:
    runner = ScriptRunner(driver, driver.bus)
    runner.load(SCRIPT, "/tests/efi_test.py")
    result = runner.run()
    assert result.ok, result.error
    namespace = runner.namespace
    assert namespace is not None
    assert bytes.fromhex(namespace["seen_by_guest"]) == b"\x07\x00\x00\x00from the host"
    vendor = namespace["after"][str(VENDOR)]
    assert vendor["VmtuiGuest"].data == b"written by the guest"
    assert vendor["VmtuiGuest"].flags == 7
    assert vendor["VmtuiSeed"].data == b"from the host"
    # The firmware kept its own variables in the same store (boot order and the like).
    assert "gEfiGlobalVariableGuid" in namespace["after"]
