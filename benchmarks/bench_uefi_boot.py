"""What booting through OVMF costs a tiny guest: start to backdoor, UEFI vs qboot.

    .venv/bin/python benchmarks/bench_uefi_boot.py [--boots N]

Both nodes run the same kernel, initramfs and guest; the UEFI node's start
script (tests/uefi_node.py, NixOS `useEFIBoot` shaped) adds OVMF's code and
variable store as pflash drives and boots the kernel's EFI stub, the plain
one boots the unpacked kernel through qboot.  Each boot is measured through
the driver (`start()` then `connect()`), then the node is powered off.  The
first UEFI boot starts from Debian's empty variable template; later ones
find the store the firmware filled.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from driver.config import NodeConfig, TestConfig  # noqa: E402
from driver.driver import Driver  # noqa: E402
from driver.events import EventBus  # noqa: E402
from driver.guest.startscript import HostEntry, write_start_script  # noqa: E402
from driver.guest.tiny import build_tiny_guest  # noqa: E402
from uefi_node import write_uefi_node  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3)
    args = parser.parse_args()
    image = build_tiny_guest()
    with tempfile.TemporaryDirectory(prefix="vb-", dir="/tmp") as temp:
        base = Path(temp)
        uefi = write_uefi_node(base / "uefi", name="firm", node_number=1, image=image)
        plain = write_start_script(
            base / "plain", name="plain", node_number=2, vlans=[], hosts=[HostEntry("plain", 2, 1)], image=image
        )
        (base / "t.py").write_text("")
        config = TestConfig(
            nodes=[NodeConfig("firm", str(uefi)), NodeConfig("plain", str(plain))], vlans=[], script_path=base / "t.py"
        )
        times: dict[str, list[float]] = {"firm": [], "plain": []}
        with Driver(config, bus=EventBus(), out_dir=base / "out", tmp_dir=base / "s") as driver:
            for _ in range(args.boots):
                for machine in driver.machines:
                    started = time.monotonic()
                    machine.start()
                    machine.connect()
                    times[machine.name].append(time.monotonic() - started)
                    machine.shutdown()
    for name, label in (("firm", "OVMF (UEFI)"), ("plain", "qboot")):
        values = times[name]
        print(
            f"{label:12} start to backdoor: median {statistics.median(values):.1f} s, "
            f"min {min(values):.1f} s, max {max(values):.1f} s ({len(values)} boots)"
        )


if __name__ == "__main__":
    main()
