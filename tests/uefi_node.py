"""A tiny-guest node that boots through OVMF, for tests and benchmarks.

The start script is shaped like a NixOS `useEFIBoot` one: it resolves
`$NIX_EFI_VARS` (default `<name>-efi-vars.fd` in its working directory),
copies Debian's `OVMF_VARS_4M.fd` there when missing, and gives QEMU the
firmware code and that file as two pflash drives; the kernel is still booted
with `-kernel` (OVMF loads its EFI stub from QEMU's fw_cfg).  It wraps an
ordinary tiny-guest start script, whose `$QEMU_OPTS` carry all of that.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
import textwrap
from collections.abc import Mapping
from pathlib import Path

from driver.guest import debs
from driver.guest.startscript import HostEntry, write_start_script
from driver.guest.tiny import TinyGuestImage

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


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


def efivarfs_module(image: TinyGuestImage) -> bytes:
    version = image.kernel_version
    return kernel_package_files(image, [f"./lib/modules/{version}/kernel/fs/efivarfs/efivarfs.ko"])[0]


def write_uefi_node(
    base: Path, *, name: str, node_number: int, image: TinyGuestImage, files: Mapping[str, bytes] | None = None
) -> Path:
    """Write `<base>/bin/run-<name>-vm` (and what it needs below `base`); return its path."""
    version = image.kernel_version
    # OVMF boots the EFI stub of the bzImage; the tiny guest's own kernel is
    # the unpacked ELF (for QEMU's faster PVH entry), which OVMF cannot boot.
    kernel = base / "vmlinuz"
    base.mkdir(parents=True, exist_ok=True)
    kernel.write_bytes(kernel_package_files(image, [f"./boot/vmlinuz-{version}"])[0])
    inner = write_start_script(
        base / "inner",
        name=name,
        node_number=node_number,
        vlans=[],
        hosts=[HostEntry(name, node_number, 1)],
        image=image,
        files=files,
    )
    script = base / "bin" / f"run-{name}-vm"
    script.parent.mkdir(parents=True, exist_ok=True)
    drives = (
        f"-drive if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE} "
        f"-drive if=pflash,format=raw,unit=1,file=$NIX_EFI_VARS"
    )
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
            export QEMU_OPTS="${{QEMU_OPTS:-}} {drives} -kernel {shlex.quote(str(kernel))}"
            exec {shlex.quote(str(inner))} "$@"
            """
        )
    )
    script.chmod(0o755)
    return script
