"""Checkpoints: save the state of every running node, and go back to it.

A checkpoint is one QEMU internal snapshot per node (RAM, devices and every
writable disk, in qcow2), taken with the QMP `snapshot-save` job and restored
with `snapshot-load`, all nodes paused together so that the set is
consistent.  Restoring takes a fraction of a second where a cold boot takes
many seconds, and the script continues from the statement the checkpoint was
taken at.

What makes a node snapshot-able, and what this module does about it:

- The VM state must go into a qcow2 image.  The built-in guests have a
  scratch qcow2 drive for it (`-drive if=none,id=vmstate`); a NixOS VM keeps
  it on its qcow2 root disk.  Every writable disk must be qcow2, or its
  contents would not roll back with the RAM.
- QEMU refuses to save a VM while a 9p share is mounted in the guest
  ("Migration is disabled when VirtFS export path ... is mounted").  The
  shares are unmounted through the backdoor just before the save and mounted
  again right after it (and after every restore).  A share that cannot be
  unmounted because it is in use makes the checkpoint fail with the reason.
  A NixOS VM that mounts the host's /nix/store over 9p can never be saved:
  its store is in use for as long as it runs.
- QEMU must be able to save every device.  A node whose shared directories
  are virtiofs (`vhost-user-fs-pci`, served by virtiofsd: NixOS start
  scripts since September 2026) cannot be saved by QEMU 7.2, which marks
  vhost-user-fs non-migratable; QEMU lists such devices in `query-migrate`'s
  `blocked-reasons`.  Such a node is refused up front with the device, its
  tag and what would make it work (`CheckpointRefused`).
- The backdoor must be idle: each node's command channel is held for the
  whole operation, so no command is half-way through at save time.  After a
  restore the guest's shell is exactly where it was at save time (waiting
  for the next command), but bytes may still sit in the host's buffer, so
  the host side is resynchronised (`Backdoor.resync`) before it is used.
- A restored guest's clock is as old as the checkpoint; it is set to the
  host's time again.
"""

from __future__ import annotations

import contextlib
import itertools
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

from driver.backdoor import Backdoor
from driver.errors import CheckpointError, MachineError
from driver.parallel import run_each_or_raise
from driver.qmp import QMPConnection

# How long one guest command of a checkpoint may take (sync, umount ...).
GUEST_COMMAND_TIMEOUT = 60.0
# How long QEMU may take to write or read one snapshot.
SNAPSHOT_TIMEOUT = 300.0
# The device the built-in guests attach for VM state (`-drive if=none,id=vmstate`).
VMSTATE_DEVICE = "vmstate"
# QEMU snapshot tags are prefixed so vmtui never touches a user's own snapshots.
TAG_PREFIX = "vmtui-"



class CheckpointRefused(CheckpointError):
    """A node can never be checkpointed as it is set up (a device QEMU cannot
    save, a store that is always in use, no qcow2 disk): trying again cannot
    help.  The message names the device and what would make it work."""


# QEMU's migration blocker for a mounted 9p share; vmtui unmounts the shares
# around a save, so it does not count.
_NINE_P_BLOCKER = "Migration is disabled when VirtFS export path"


class SnapshotMachine(Protocol):
    """What a checkpoint needs from a machine (driver.machine.Machine)."""

    name: str
    pid: int | None
    qmp_client: QMPConnection | None
    backdoor: Backdoor | None

    def is_up(self) -> bool: ...

    def exclusive_channel(self) -> contextlib.AbstractContextManager[None]: ...


@dataclass(frozen=True)
class NinePMount:
    """A 9p share as /proc/mounts lists it."""

    source: str
    target: str
    options: str

    def mount_command(self) -> str:
        # The mount point is still there: only the mount was taken away.
        return f"mount -t 9p -o {shlex.quote(self.options)} {shlex.quote(self.source)} {shlex.quote(self.target)}"


@dataclass(frozen=True)
class NodeSnapshot:
    machine: str
    tag: str
    # The QEMU process the snapshot lives in: another process (a restarted
    # node) has another configuration and the snapshot does not apply.
    qemu_pid: int
    vmstate_node: str
    devices: tuple[str, ...]
    # 9p shares mounted at save time, mounted again after a restore.
    shares: tuple[NinePMount, ...] = ()


@dataclass(frozen=True)
class Checkpoint:
    name: str
    # Taken before this top-level statement ran (None: outside any run).
    statement_index: int | None
    created: float
    nodes: tuple[NodeSnapshot, ...]
    # Nodes that were not running at save time, left alone by a restore.
    absent: tuple[str, ...] = ()
    save_seconds: float = 0.0


@dataclass
class RestoreReport:
    checkpoint: Checkpoint
    seconds: float
    # Nodes running now that the checkpoint does not cover (not rolled back).
    untouched: list[str] = field(default_factory=list)


def parse_9p_mounts(proc_mounts: str) -> list[NinePMount]:
    """The 9p entries of /proc/mounts, in mount order (octal escapes decoded)."""
    mounts = []
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "9p":
            mounts.append(NinePMount(_unescape(fields[0]), _unescape(fields[1]), fields[3]))
    return mounts


def _unescape(field_text: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \ooo.
    return field_text.encode().decode("unicode_escape") if "\\" in field_text else field_text


@dataclass(frozen=True)
class VirtiofsDevice:
    """A vhost-user-fs device of a running QEMU (QOM path and mount tag)."""

    path: str
    tag: str


def virtiofs_hint(machine: str, devices: Sequence[VirtiofsDevice], blockers: Sequence[str], qemu_version: str) -> str:
    """Why a node with virtiofs shares cannot be checkpointed, and what would help."""
    tags = ", ".join(f"'{d.tag}' ({d.path})" for d in devices)
    return (
        f"{machine} cannot be checkpointed: its shared directories {tags} are virtiofs "
        f"(vhost-user-fs-pci devices served by virtiofsd), and QEMU {qemu_version} cannot save a VM with "
        f"such a device (it reports: {'; '.join(blockers)}). It would work with QEMU 8.2 or newer together "
        "with a virtiofsd that migrates its state (virtiofsd 1.11 or newer), or with the node's shares over 9p "
        "and its store on a disk image (a NixOS test: `virtualisation.useNixStoreImage = true`; a vmtui spec: "
        "shape = \"fast\")"
    )


def nine_p_hint(mount: NinePMount) -> str:
    """Why a busy 9p share stops a checkpoint, and what to do about it."""
    reason = (
        f"the 9p share '{mount.source}' mounted at {mount.target} is in use and cannot be unmounted, "
        "and QEMU refuses to save a VM while a 9p share is mounted (a migration blocker)"
    )
    if mount.target.startswith("/nix"):
        reason += (
            "; this NixOS VM runs from the host's /nix/store over 9p, so it can never be saved: "
            "build the test with `virtualisation.useNixStoreImage = true` (the store on a disk image) "
            "to make its nodes checkpointable"
        )
    else:
        reason += f"; leave {mount.target} (no shell or process may have files or its working directory there)"
    return reason


_job_ids = itertools.count(1)


class Checkpoints:
    """The checkpoints of one test's machines: save, restore, list, delete.

    Thread safe: operations are serialised.  Each holds the command channel
    of every node it touches, so call it between statements (or with the
    script paused), never from inside a machine command.
    """

    def __init__(
        self,
        machines: Callable[[], Sequence[SnapshotMachine]],
        *,
        log: Callable[[str], None] = lambda message: None,
        max_checkpoints: int = 8,
    ) -> None:
        self._machines = machines
        self._log = log
        self.max_checkpoints = max_checkpoints
        self._lock = threading.Lock()
        self._checkpoints: dict[str, Checkpoint] = {}
        self._names = itertools.count(1)
        # Why checkpoints cannot work in this test (a node that can never be
        # saved), once a save was refused; None while they may.
        self.refused: str | None = None
        # Called after every restore (shell panes learn their guest side is gone).
        self.restored_listeners: list[Callable[[RestoreReport], None]] = []

    # -- listing -----------------------------------------------------------------

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """Oldest first."""
        with self._lock:
            return sorted(self._checkpoints.values(), key=lambda c: c.created)

    def get(self, name: str) -> Checkpoint:
        with self._lock:
            try:
                return self._checkpoints[name]
            except KeyError:
                raise CheckpointError(f"no checkpoint named '{name}'") from None

    def next_name(self) -> str:
        while True:
            name = f"cp{next(self._names)}"
            if name not in self._checkpoints:
                return name

    def why_not(self, machine: SnapshotMachine) -> str | None:
        """Why `machine` cannot be checkpointed (None: it can, as far as QEMU tells)."""
        if not machine.is_up() or machine.qmp_client is None:
            return f"{machine.name} is not running"
        try:
            _check_savable(machine)
            _vmstate_and_devices(machine)
        except CheckpointError as error:
            return str(error)
        return None

    # -- saving ------------------------------------------------------------------

    def save(self, name: str | None = None, statement_index: int | None = None) -> Checkpoint:
        """Snapshot every running node under `name` (replacing a checkpoint of that name).

        A node that can never be saved raises `CheckpointRefused` and sets
        `refused` to the reason.
        """
        try:
            return self._save(name, statement_index)
        except CheckpointRefused as error:
            self.refused = str(error)
            raise

    def _save(self, name: str | None, statement_index: int | None) -> Checkpoint:
        with self._lock:
            name = name or self.next_name()
            started = time.monotonic()
            running = [m for m in self._machines() if m.is_up()]
            absent = tuple(m.name for m in self._machines() if not m.is_up())
            if not running:
                raise CheckpointError("no node is running: nothing to checkpoint")
            for machine in running:
                _check_savable(machine)
            plans = {m.name: _vmstate_and_devices(m) for m in running}
            tag = TAG_PREFIX + name
            with _holding(running):
                unmounted: dict[str, list[NinePMount]] = {}
                try:
                    # Per node in parallel: each guest command is a round trip
                    # through an emulated CPU, the slowest part of all this.
                    def unmount(machine: SnapshotMachine) -> None:
                        # Recorded per node as it happens: when another node's
                        # share is busy, this one's are mounted again below.
                        unmounted[machine.name] = _unmount_shares(machine)

                    _each(running, unmount)
                    with _paused(running):
                        def snapshot(machine: SnapshotMachine) -> NodeSnapshot:
                            vmstate, devices = plans[machine.name]
                            _delete_tag(machine, tag)
                            _job(machine, "snapshot-save", {"tag": tag, "vmstate": vmstate, "devices": list(devices)})
                            assert machine.pid is not None
                            return NodeSnapshot(machine.name, tag, machine.pid, vmstate, devices,
                                                tuple(unmounted[machine.name]))

                        nodes = _each(running, snapshot)
                finally:
                    _each(running, lambda m: _mount_shares(m, unmounted.get(m.name, []), self._log))
            checkpoint = Checkpoint(name, statement_index, time.time(), tuple(nodes), absent,
                                    time.monotonic() - started)
            self._checkpoints[name] = checkpoint
            self._prune()
        where = "" if statement_index is None else f" before statement {statement_index + 1}"
        self._log(f"checkpoint '{name}' saved{where} ({', '.join(n.machine for n in nodes)}; "
                  f"{checkpoint.save_seconds:.2f} s)")
        return checkpoint

    def _prune(self) -> None:
        # The oldest checkpoints go first; the first one (usually "boot") stays.
        ordered = sorted(self._checkpoints.values(), key=lambda c: c.created)
        while len(ordered) > self.max_checkpoints:
            victim = ordered.pop(1)
            self._forget(victim)

    def _forget(self, checkpoint: Checkpoint) -> None:
        self._checkpoints.pop(checkpoint.name, None)
        by_name = {m.name: m for m in self._machines()}
        for node in checkpoint.nodes:
            machine = by_name.get(node.machine)
            if machine is not None and machine.is_up() and machine.pid == node.qemu_pid:
                with contextlib.suppress(MachineError):
                    _delete_tag(machine, node.tag)

    def delete(self, name: str) -> None:
        with self._lock:
            checkpoint = self._checkpoints.get(name)
            if checkpoint is None:
                raise CheckpointError(f"no checkpoint named '{name}'")
            self._forget(checkpoint)

    # -- restoring ---------------------------------------------------------------

    def restore(self, name: str) -> RestoreReport:
        """Bring every node of checkpoint `name` back to its saved state."""
        with self._lock:
            checkpoint = self._checkpoints.get(name)
            if checkpoint is None:
                raise CheckpointError(f"no checkpoint named '{name}'")
            started = time.monotonic()
            by_name = {m.name: m for m in self._machines()}
            machines = []
            for node in checkpoint.nodes:
                machine = by_name.get(node.machine)
                if machine is None or not machine.is_up():
                    raise CheckpointError(f"cannot restore '{name}': {node.machine} is not running")
                if machine.pid != node.qemu_pid:
                    raise CheckpointError(
                        f"cannot restore '{name}': {node.machine} was restarted since the checkpoint "
                        "(its snapshot belongs to the QEMU process that ran then)"
                    )
                _backdoor(machine)  # checked before anything is loaded
                machines.append((machine, node))
            covered = {node.machine for node in checkpoint.nodes}
            untouched = sorted(n for n, m in by_name.items() if m.is_up() and n not in covered)
            running = [m for m, _ in machines]
            with _holding(running):
                # The shares mounted right now are not unmounted first: the
                # restored guest mounts them again, and each 9p mount begins
                # with a Tversion, which makes QEMU drop every fid the old
                # mount left behind.
                with _paused(running):
                    _each(machines, lambda pair: _job(pair[0], "snapshot-load", {
                        "tag": pair[1].tag, "vmstate": pair[1].vmstate_node, "devices": list(pair[1].devices)}))

                def wake(pair: tuple[SnapshotMachine, NodeSnapshot]) -> None:
                    machine, node = pair
                    # One round trip: the freshly restored guest runs slowly at
                    # first (QEMU translates its code again).  The clock is as
                    # old as the checkpoint: set it, in the background (no
                    # command depends on it the way one may on a share).
                    prelude = "\n".join([f"date -s @{int(time.time())} >/dev/null 2>&1 &",
                                          *(_mount_or_say(m) for m in node.shares)])
                    failed = _backdoor(machine).resync(time.monotonic() + GUEST_COMMAND_TIMEOUT, prelude)
                    for target in failed.split():
                        self._log(f"{machine.name}: could not mount the 9p share on {target} again")

                _each(machines, wake)
            report = RestoreReport(checkpoint, time.monotonic() - started, untouched)
        note = f"; not covered, left as they are: {', '.join(untouched)}" if untouched else ""
        self._log(f"restored checkpoint '{name}' ({', '.join(covered)}; {report.seconds:.2f} s){note}")
        for listener in list(self.restored_listeners):
            listener(report)
        return report


# -- helpers (the caller holds the machines' channels) ---------------------------------


@contextlib.contextmanager
def _holding(machines: Sequence[SnapshotMachine]) -> Iterator[None]:
    """Hold every machine's command channel, in name order (no lock-order deadlock)."""
    with contextlib.ExitStack() as stack:
        for machine in sorted(machines, key=lambda m: m.name):
            stack.enter_context(machine.exclusive_channel())
        yield


@contextlib.contextmanager
def _paused(machines: Sequence[SnapshotMachine]) -> Iterator[None]:
    """Stop all vCPUs together so the nodes' snapshots belong to one instant."""
    stopped = []
    try:
        for machine in machines:
            _qmp(machine).execute("stop")
            stopped.append(machine)
        yield
    finally:
        for machine in stopped:
            with contextlib.suppress(MachineError):
                _qmp(machine).execute("cont")


def _qmp(machine: SnapshotMachine) -> QMPConnection:
    if machine.qmp_client is None:
        raise CheckpointError(f"{machine.name}: QMP is not connected")
    return machine.qmp_client


def _backdoor(machine: SnapshotMachine) -> Backdoor:
    if machine.backdoor is None or not machine.backdoor.ready:
        raise CheckpointError(f"{machine.name}: the backdoor shell is not connected")
    return machine.backdoor


def _guest(machine: SnapshotMachine, command: str) -> tuple[int, str]:
    """One command on the held backdoor (no NixOS callbacks, no polling conditions)."""
    return _backdoor(machine).run(
        command, timeout=GUEST_COMMAND_TIMEOUT, deadline=time.monotonic() + GUEST_COMMAND_TIMEOUT + 30
    )


def _vmstate_and_devices(machine: SnapshotMachine) -> tuple[str, tuple[str, ...]]:
    """The node that stores the VM state and every writable disk node to snapshot."""
    devices: list[str] = []
    dedicated: str | None = None
    problems: list[str] = []
    blocks: Any = _qmp(machine).execute("query-block")
    for block in blocks:
        inserted = block.get("inserted")
        if not inserted or inserted.get("ro"):
            continue  # empty drives and read-only images do not change
        node = inserted["node-name"]
        label = block.get("device") or block.get("qdev") or node
        if inserted.get("drv") != "qcow2":
            problems.append(f"disk '{label}' is {inserted.get('drv')}, and only qcow2 images hold snapshots")
            continue
        devices.append(node)
        if block.get("device") == VMSTATE_DEVICE:
            dedicated = node
    if problems:
        raise CheckpointRefused(f"{machine.name} cannot be checkpointed: {'; '.join(problems)}")
    # The VM state goes to the dedicated scratch drive if there is one, else to the first disk.
    vmstate = dedicated or (devices[0] if devices else None)
    if vmstate is None:
        raise CheckpointRefused(
            f"{machine.name} cannot be checkpointed: it has no writable qcow2 disk to hold the VM state "
            f"(add `-drive if=none,id={VMSTATE_DEVICE},format=qcow2,file=...` to its QEMU options)"
        )
    return vmstate, tuple(devices)


def _check_savable(machine: SnapshotMachine) -> None:
    """Raise CheckpointRefused when QEMU reports a device it cannot save.

    `query-migrate` lists the blockers (QEMU 6.0 and newer); a mounted 9p
    share is one too, but the save unmounts the shares first.
    """
    qmp = _qmp(machine)
    status: Any = qmp.execute("query-migrate")
    blockers = [r for r in status.get("blocked-reasons", []) if not r.startswith(_NINE_P_BLOCKER)]
    if not blockers:
        return
    virtiofs = _virtiofs_devices(qmp)
    if virtiofs:
        version: Any = qmp.execute("query-version")
        qemu = version.get("qemu", {})
        number = f"{qemu.get('major')}.{qemu.get('minor')}.{qemu.get('micro')}"
        raise CheckpointRefused(virtiofs_hint(machine.name, virtiofs, blockers, number))
    raise CheckpointRefused(f"{machine.name} cannot be checkpointed: QEMU cannot save it ({'; '.join(blockers)})")


def _virtiofs_devices(qmp: QMPConnection) -> list[VirtiofsDevice]:
    """Every vhost-user-fs-pci device, with its tag (QOM tree of user-created devices)."""
    devices = []
    for container in ("/machine/peripheral", "/machine/peripheral-anon"):
        children: Any = qmp.execute("qom-list", {"path": container})
        for child in children:
            if child.get("type") != "child<vhost-user-fs-pci>":
                continue
            path = f"{container}/{child['name']}"
            try:
                tag: Any = qmp.execute("qom-get", {"path": f"{path}/virtio-backend", "property": "tag"})
            except MachineError:
                tag = "?"
            devices.append(VirtiofsDevice(path, str(tag)))
    return devices


def _snapshot_tags(machine: SnapshotMachine, node: str) -> set[str]:
    blocks: Any = _qmp(machine).execute("query-block")
    for block in blocks:
        inserted = block.get("inserted") or {}
        if inserted.get("node-name") == node:
            return {s["name"] for s in inserted.get("image", {}).get("snapshots", [])}
    return set()


def _delete_tag(machine: SnapshotMachine, tag: str) -> None:
    vmstate, devices = _vmstate_and_devices(machine)
    holders = [node for node in devices if tag in _snapshot_tags(machine, node)]
    if holders:
        _job(machine, "snapshot-delete", {"tag": tag, "devices": holders})


def _job(machine: SnapshotMachine, command: str, arguments: dict[str, object]) -> None:
    """Run a QMP snapshot job to its end; raise with QEMU's reason if it failed."""
    qmp = _qmp(machine)
    job_id = f"vmtui-{next(_job_ids)}"
    qmp.execute(command, {"job-id": job_id, **arguments})
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while True:
        jobs: Any = qmp.execute("query-jobs")
        job = next((j for j in jobs if j.get("id") == job_id), None)
        if job is None:
            raise CheckpointError(f"{machine.name}: QEMU lost the {command} job")
        if job.get("status") == "concluded":
            error = job.get("error")
            with contextlib.suppress(MachineError):
                qmp.execute("job-dismiss", {"id": job_id})
            if error:
                raise CheckpointError(f"{machine.name}: {command} failed: {error}")
            return
        if time.monotonic() > deadline:
            raise CheckpointError(f"{machine.name}: {command} did not finish in {SNAPSHOT_TIMEOUT:.0f} seconds")
        time.sleep(0.005)


_T = TypeVar("_T")
_R = TypeVar("_R")


def _each(items: Sequence[_T], work: Callable[[_T], _R]) -> list[_R]:
    """`work` on every node at once; the first error is raised after all have
    finished, so no node is left half-way."""
    if len(items) == 1:
        return [work(items[0])]
    return run_each_or_raise(items, work)


def _unmount_shares(machine: SnapshotMachine) -> list[NinePMount]:
    """Unmount the guest's 9p shares (innermost first); returns them in mount order.

    No `sync` is needed: a 9p share is written through (nothing dirty stays
    in the guest), and a disk's page cache is part of the RAM that is saved
    with it.  On failure the shares already unmounted are mounted again and
    CheckpointError says which share is in use.
    """
    status, text = _guest(machine, "cat /proc/mounts")
    if status != 0:
        raise CheckpointError(f"{machine.name}: cannot read /proc/mounts in the guest")
    mounts = parse_9p_mounts(text)
    if not mounts:
        return []
    targets = " ".join(shlex.quote(m.target) for m in reversed(mounts))
    # One round trip: unmount in turn, stop at the first that is busy.
    _, output = _guest(machine, f'for t in {targets}; do if umount "$t" 2>/dev/null; then echo "ok $t"; '
                                'else echo "busy $t"; break; fi; done')
    done = [line[3:] for line in output.splitlines() if line.startswith("ok ")]
    busy = [line[5:] for line in output.splitlines() if line.startswith("busy ")]
    if busy or len(done) != len(mounts):
        again = [m for m in mounts if m.target in done]
        _mount_shares(machine, again, lambda message: None)
        culprit = next((m for m in mounts if busy and m.target == busy[0]), mounts[0])
        # The store is in use for as long as the guest runs; another share
        # only until whatever holds it lets go.
        error = CheckpointRefused if culprit.target.startswith("/nix") else CheckpointError
        raise error(f"{machine.name} cannot be checkpointed: {nine_p_hint(culprit)}")
    return mounts


def _mount_or_say(mount: NinePMount) -> str:
    """Mount a share again; print its mount point if that failed."""
    return f"if {mount.mount_command()} 2>/dev/null; then :; else echo {shlex.quote(mount.target)}; fi"


def _mount_shares(machine: SnapshotMachine, mounts: list[NinePMount], log: Callable[[str], None]) -> None:
    """Mount `mounts` again (in order), in one round trip."""
    commands = [_mount_or_say(m) for m in mounts]
    if not commands:
        return
    try:
        _, failed = _guest(machine, "; ".join(commands))
    except MachineError as error:
        log(f"{machine.name}: could not mount its 9p shares again: {error}")
        return
    for target in failed.split():
        log(f"{machine.name}: could not mount the 9p share on {target} again")
