"""Checkpoint restore time against a cold boot of the same nodes.

Boots NODES guests (cold boot to connected backdoor, all in parallel as
start_all() does), takes a checkpoint, changes the guests, then restores the
checkpoint ROUNDS times and prints the figures.  Target (issue 5): a restore
takes less than 10% of the cold boot.

The guests are the built-in tiny guest, or with --systemd [PACKAGE ...] the
systemd guest image already built with those extra packages (a disk-image
guest like a NixOS VM; its VM state goes onto its qcow2 root disk).

    .venv/bin/python benchmarks/bench_checkpoint.py [--nodes 2] [--rounds 5] [--systemd [PACKAGE ...]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driver import scratch  # noqa: E402
from driver.checkpoint import Checkpoints  # noqa: E402
from driver.events import EventBus  # noqa: E402
from driver.guest.systemd_image import cached_image  # noqa: E402
from driver.guest.startscript import write_start_script  # noqa: E402
from driver.guest.systemd_node import write_systemd_start_script  # noqa: E402
from driver.guest.tiny import build_tiny_guest  # noqa: E402
from driver.logger import Logger  # noqa: E402
from driver.machine import Machine  # noqa: E402
from driver.parallel import run_each  # noqa: E402


def boot(machines: list[Machine]) -> float:
    started = time.monotonic()
    failed = [o for o in run_each(machines, Machine.connect) if o.error is not None]
    if failed:
        raise SystemExit(f"{failed[0].item.name} did not boot: {failed[0].error}")
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--systemd", nargs="*", metavar="PACKAGE",
                        help="use the systemd guest image built with these extra packages")
    args = parser.parse_args()
    if not 1 <= args.nodes <= 8 or args.rounds < 1:
        print("bench_checkpoint: --nodes must be 1..8 and --rounds at least 1", file=sys.stderr)
        return 2
    if args.systemd is not None:
        image = cached_image(args.systemd)
        if image is None:
            print(f"bench_checkpoint: the systemd guest image with packages {args.systemd} is not built "
                  "(a spec with guest = \"systemd\" builds it)", file=sys.stderr)
            return 2
        write_script = write_systemd_start_script
        guest = "systemd"
    else:
        image = build_tiny_guest()
        write_script = write_start_script  # type: ignore[assignment]
        guest = "tiny"
    with scratch.temp_dir("bench-checkpoint-") as temp:
        root = Path(temp)
        bus = EventBus()
        logger = Logger(bus)
        names = [f"node{n}" for n in range(1, args.nodes + 1)]
        hosts = [(name, n, 1) for n, name in enumerate(names, start=1)]
        machines = [
            Machine(name, str(write_script(root / name, name=name, node_number=n, vlans=[],
                                           hosts=hosts, image=image)),  # type: ignore[arg-type]
                    bus=bus, logger=logger, tmp_dir=root / "tmp", out_dir=root / "out",
                    shared_dir=root / "shared")
            for n, name in enumerate(names, start=1)
        ]
        try:
            boot_seconds = boot(machines)
            checkpoints = Checkpoints(lambda: machines)
            save_seconds = []
            for _ in range(args.rounds):
                started = time.monotonic()
                checkpoints.save("bench")
                save_seconds.append(time.monotonic() - started)
            restore_seconds = []
            for round_ in range(args.rounds):
                for machine in machines:
                    machine.succeed(f"echo {round_} > /root/changed")
                started = time.monotonic()
                checkpoints.restore("bench")
                restore_seconds.append(time.monotonic() - started)
                for machine in machines:  # the restore really rolled back
                    assert machine.execute("test -e /root/changed")[0] == 1
        finally:
            for machine in machines:
                machine.release()

    restore = statistics.median(restore_seconds)
    print(f"nodes: {args.nodes} {guest} guests (TCG), rounds: {args.rounds}")
    print(f"cold boot to connected:   {boot_seconds:7.3f} s")
    print(f"checkpoint save (median): {statistics.median(save_seconds):7.3f} s  "
          f"(min {min(save_seconds):.3f}, max {max(save_seconds):.3f})")
    print(f"restore (median):         {restore:7.3f} s  "
          f"(min {min(restore_seconds):.3f}, max {max(restore_seconds):.3f})")
    print(f"restore / boot:           {100 * restore / boot_seconds:6.1f} %  (target < 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
