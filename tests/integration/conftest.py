"""Shared fixtures for tests that boot real tiny guests.

- `tiny_image` (session): the built-in guest, built once and cached.
- `VMNetwork`: VLAN switches plus machines from NixOS-style start scripts,
  numbered like NixOS (sorted names -> 1..N), ended on every path.
- `vm_network` (module): a factory; every network it made is closed when the
  module's tests are done, so a module can share booted nodes.
- `two_nodes` (module): `client` and `server` on VLAN 1, connected.
- `guest_shape` (module): the start-script shape of the nodes a module's
  `vm_network` makes: "fast" here; a module overrides the fixture, with
  params, to run its tests on the NixOS shapes too (`ALL_SHAPES`).

Usage::

    @pytest.mark.vm
    def test_something(vm_network):
        net = vm_network({"alpha": [1], "beta": {"vlans": [1, 2], "memory_mb": 384}})
        net.start_all()
        net["alpha"].succeed("ping -c1 beta")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from driver import processes
from driver.events import Event, EventBus, MachineState, MachineStateChanged
from driver.guest.nixos_shape import SHAPES
from driver.guest.startscript import HostEntry, write_start_script
from driver.guest.tiny import TinyGuestImage, build_tiny_guest
from driver.logger import Logger
from driver.machine import Machine
from driver.parallel import run_each_or_raise
from driver.vlan import VLan

# Boots under TCG on a shared, loaded machine: be generous.
CONNECT_TIMEOUT = 600.0

# Every start-script shape: fast (qboot), NixOS with 9p, NixOS with virtiofsd.
ALL_SHAPES = SHAPES


@pytest.fixture(scope="session")
def tiny_image() -> TinyGuestImage:
    return build_tiny_guest()


@dataclass
class NodeSpec:
    """How to build one node of a VMNetwork."""

    vlans: Sequence[int] = (1,)
    memory_mb: int = 256
    extra_kernel_params: str = ""
    boot_script: str | None = None
    files: Mapping[str, bytes] | None = None
    # Prefix put before the start script path (e.g. "QEMU_OPTS='-vga std'").
    command_prefix: str = ""
    allow_reboot: bool = False
    connect_timeout: float = CONNECT_TIMEOUT
    # None: the network's shape.
    shape: str | None = None
    # A VGA screen with a root shell on tty1 (`graphics = true` in a spec).
    graphics: bool = False


@dataclass
class VMNetwork:
    """Machines and their VLANs for one test (or one test module)."""

    tmp_dir: Path
    image: TinyGuestImage
    # Per node: a NodeSpec, a dict of NodeSpec fields, or just its VLANs.
    nodes: Mapping[str, NodeSpec | Mapping[str, Any] | Sequence[int]]
    cancel_event: threading.Event | None = None
    shape: str = "fast"
    bus: EventBus = field(default_factory=EventBus)
    events: list[Event] = field(default_factory=list)
    machines: dict[str, Machine] = field(default_factory=dict)
    vlans: dict[int, VLan] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bus.subscribe(self.events.append)
        self.logger = Logger(self.bus)
        specs = {name: _node_spec(spec) for name, spec in self.nodes.items()}
        numbers = {name: index for index, name in enumerate(sorted(specs), start=1)}
        hosts = [
            HostEntry(name, numbers[name], spec.vlans[0])
            for name, spec in specs.items()
            if spec.vlans
        ]
        try:
            for nr in sorted({vlan for spec in specs.values() for vlan in spec.vlans}):
                self.vlans[nr] = VLan(nr, self.tmp_dir)
            for name, spec in sorted(specs.items()):
                script = write_start_script(
                    self.tmp_dir / "nodes" / name,
                    name=name,
                    node_number=numbers[name],
                    vlans=spec.vlans,
                    hosts=hosts,
                    image=self.image,
                    memory_mb=spec.memory_mb,
                    extra_kernel_params=spec.extra_kernel_params,
                    files=spec.files,
                    boot_script=spec.boot_script,
                    shape=spec.shape or self.shape,
                    graphics=spec.graphics,
                )
                command = f"{spec.command_prefix} {script}".strip()
                self.machines[name] = Machine(
                    name,
                    command,
                    bus=self.bus,
                    logger=self.logger,
                    tmp_dir=self.tmp_dir,
                    out_dir=self.tmp_dir / "out",
                    shared_dir=self.tmp_dir / "shared-xchg",
                    allow_reboot=spec.allow_reboot,
                    cancel_event=self.cancel_event,
                    connect_timeout=spec.connect_timeout,
                )
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]

    def start_all(self, connect: bool = True) -> None:
        """Start (and connect) every machine in parallel, like `start_all()`."""

        def boot(machine: Machine) -> None:
            machine.start()
            if connect:
                machine.connect()

        run_each_or_raise(list(self.machines.values()), boot)

    def states(self, name: str) -> list[MachineStateChanged]:
        return [e for e in self.events if isinstance(e, MachineStateChanged) and e.machine == name]

    def last_state(self, name: str) -> MachineState | None:
        states = self.states(name)
        return states[-1].state if states else None

    def close(self) -> None:
        """Release every machine and stop every switch.  Idempotent."""
        for machine in self.machines.values():
            machine.release()
        for vlan in self.vlans.values():
            vlan.stop()


def _node_spec(spec: NodeSpec | Mapping[str, Any] | Sequence[int]) -> NodeSpec:
    if isinstance(spec, NodeSpec):
        return spec
    if isinstance(spec, Mapping):
        # Tests pass plain dicts: importing this conftest from a test module
        # is ambiguous once several conftest.py files are collected.
        fields = dict(spec)
        if "vlans" in fields:
            fields["vlans"] = tuple(fields["vlans"])
        return NodeSpec(**fields)
    return NodeSpec(vlans=tuple(spec))


NetworkFactory = Callable[..., VMNetwork]


@pytest.fixture(scope="module")
def guest_shape() -> str:
    return "fast"


@pytest.fixture(scope="module")
def vm_network(
    tiny_image: TinyGuestImage, tmp_path_factory: pytest.TempPathFactory, guest_shape: str
) -> Iterator[NetworkFactory]:
    made: list[VMNetwork] = []

    def make(nodes: Mapping[str, NodeSpec | Mapping[str, Any] | Sequence[int]], **kwargs: Any) -> VMNetwork:
        # Short paths: UNIX socket paths must stay under 108 bytes.
        tmp_dir = tmp_path_factory.mktemp("net", numbered=True)
        kwargs.setdefault("shape", guest_shape)
        network = VMNetwork(tmp_dir, tiny_image, nodes, **kwargs)
        made.append(network)
        return network

    try:
        yield make
    finally:
        for network in made:
            network.close()
        # Nothing this module started may still run.
        leftovers = [p.pid for p in processes.registry.live() if p.poll() is None]
        assert not leftovers, f"processes left running: {leftovers}"


@pytest.fixture(scope="module")
def two_nodes(vm_network: NetworkFactory) -> VMNetwork:
    network = vm_network({"client": [1], "server": [1]}, cancel_event=threading.Event())
    network.start_all()
    return network
