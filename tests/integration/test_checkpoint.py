"""Checkpoints on real tiny guests: state really rolls back, channels keep working."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.checkpoint import CheckpointError, Checkpoints, RestoreReport, parse_9p_mounts
from driver.events import EventBus
from driver.guest.startscript import write_start_script
from driver.guest.tiny import build_tiny_guest
from driver.logger import Logger
from driver.machine import Machine
from driver.shell import Shells

pytestmark = pytest.mark.vm

NAMES = ("alpha", "beta")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Machine]]:
    root = tmp_path_factory.mktemp("checkpoint")
    image = build_tiny_guest()
    bus = EventBus()
    logger = Logger(bus)
    machines = []
    try:
        for number, name in enumerate(NAMES, start=1):
            script = write_start_script(root / name, name=name, node_number=number, vlans=[],
                                        hosts=[(n, i, 1) for i, n in enumerate(NAMES, start=1)], image=image)
            machines.append(Machine(name, str(script), bus=bus, logger=logger, tmp_dir=root / "tmp",
                                    out_dir=root / "out", shared_dir=root / "shared"))
        for machine in machines:
            machine.start()
        for machine in machines:
            machine.connect()
        yield machines
    finally:
        for machine in machines:
            machine.release()


@pytest.fixture
def checkpoints(nodes: list[Machine]) -> Checkpoints:
    return Checkpoints(lambda: nodes)


def test_restore_rolls_every_node_back(nodes: list[Machine], checkpoints: Checkpoints) -> None:
    for machine in nodes:
        machine.succeed("echo before > /root/before")
    checkpoint = checkpoints.save("base", statement_index=2)
    assert {n.machine for n in checkpoint.nodes} == set(NAMES)
    assert checkpoint.statement_index == 2
    for machine in nodes:
        machine.succeed("echo after > /root/after", "rm /root/before")

    report = checkpoints.restore("base")
    assert report.untouched == []
    for machine in nodes:
        assert machine.succeed("cat /root/before") == "before\n"
        assert machine.execute("test -e /root/after")[0] == 1
        # The backdoor keeps its framing for many commands after the restore.
        for n in range(5):
            assert machine.succeed(f"echo {n}") == f"{n}\n"


def test_shares_and_clock_work_after_save_and_restore(nodes: list[Machine], checkpoints: Checkpoints) -> None:
    machine = nodes[0]
    checkpoints.save("shares")
    # Mounted again right after the save ...
    assert len(parse_9p_mounts(machine.succeed("cat /proc/mounts"))) == 2
    (machine.shared_dir / "from-host").write_text("hello\n")
    assert machine.succeed("cat /tmp/shared/from-host") == "hello\n"
    time.sleep(2)  # let the guest clock run on, so a stale clock would show
    checkpoints.restore("shares")
    # ... and after the restore (the restored guest had them unmounted).
    assert machine.succeed("cat /tmp/shared/from-host") == "hello\n"
    guest_time = int(machine.succeed("date +%s"))
    assert abs(guest_time - time.time()) < 30
    assert machine.qmp_client is not None
    status = machine.qmp_client.execute("query-status")
    assert isinstance(status, dict) and status["status"] == "running"


def test_a_busy_share_is_explained_and_nothing_changes(nodes: list[Machine], checkpoints: Checkpoints) -> None:
    machine = nodes[1]
    # A background process with its working directory on the share keeps it busy.
    machine.succeed("cd /tmp/shared && (sleep 600 >/dev/null 2>&1 &)")
    try:
        with pytest.raises(CheckpointError, match=r"9p share 'shared'.*in use"):
            checkpoints.save("busy")
        assert "busy" not in [c.name for c in checkpoints.checkpoints]
        assert len(parse_9p_mounts(machine.succeed("cat /proc/mounts"))) == 2
        assert len(parse_9p_mounts(nodes[0].succeed("cat /proc/mounts"))) == 2
    finally:
        machine.succeed("kill $(pidof sleep) 2>/dev/null; true")


def test_saving_under_an_existing_name_replaces_it(nodes: list[Machine], checkpoints: Checkpoints) -> None:
    machine = nodes[0]
    machine.succeed("echo 1 > /root/version")
    checkpoints.save("same")
    machine.succeed("echo 2 > /root/version")
    checkpoints.save("same")
    machine.succeed("echo 3 > /root/version")
    checkpoints.restore("same")
    assert machine.succeed("cat /root/version") == "2\n"
    checkpoints.restore("same")  # a checkpoint can be restored again and again
    assert machine.succeed("cat /root/version") == "2\n"
    checkpoints.delete("same")
    with pytest.raises(CheckpointError, match="no checkpoint named"):
        checkpoints.restore("same")


def test_shells_across_a_restore(nodes: list[Machine], checkpoints: Checkpoints) -> None:
    machine = nodes[0]
    shells = Shells(lambda: nodes)
    checkpoints.restored_listeners.append(
        lambda report: shells.after_restore([n.machine for n in report.checkpoint.nodes], report.checkpoint.created)
    )
    received: dict[str, bytearray] = {"old": bytearray(), "new": bytearray()}
    closed: dict[str, str] = {}
    changed = threading.Condition()

    def collector(key: str):  # type: ignore[no-untyped-def]
        def output(data: bytes) -> None:
            with changed:
                received[key] += data
                changed.notify_all()
        return output

    def wait(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        with changed:
            while not predicate():
                assert time.monotonic() < deadline, f"gave up waiting for {what}"
                changed.wait(1)

    try:
        old = shells.open(machine.name, on_output=collector("old"))
        wait(lambda: b"# " in received["old"], "the old shell's prompt")
        time.sleep(1.1)  # the checkpoint must be newer than the old shell (wall-clock seconds)
        checkpoints.save("shells")
        new = shells.open(machine.name, on_output=collector("new"),
                          on_closed=lambda reason: closed.__setitem__("new", reason))
        wait(lambda: b"# " in received["new"], "the new shell's prompt")
        old.write(b"echo after-the-checkpoint\r")
        wait(lambda: received["old"].count(b"after-the-checkpoint") >= 2, "the old shell's echo")
        before_restore = len(received["old"])
        checkpoints.restore("shells")
        # The shell opened after the checkpoint no longer exists in the guest ...
        wait(lambda: "new" in closed, "the new shell to be marked gone")
        assert "restored to a checkpoint" in closed["new"]
        assert not new.is_open
        # ... the one opened before it redraws its screen (Ctrl-L: the
        # screen is cleared, then the prompt comes again) ...
        wait(lambda: b"\x1b[2J" in received["old"][before_restore:], "the old shell to clear its screen")
        wait(lambda: b"# " in received["old"][received["old"].rfind(b"\x1b[2J"):], "the redrawn prompt")
        # ... the one opened before it is back and answers.
        old.write(b"echo still-$((40+2))\r")
        wait(lambda: b"still-42" in received["old"], "the old shell to answer")
    finally:
        shells.close_all()


def test_restore_report_goes_to_listeners(nodes: list[Machine], checkpoints: Checkpoints) -> None:
    reports: list[RestoreReport] = []
    checkpoints.restored_listeners.append(reports.append)
    checkpoints.save("listen")
    report = checkpoints.restore("listen")
    assert reports == [report]
    assert checkpoints.why_not(nodes[0]) is None


def test_parse_9p_mounts_decodes_escapes() -> None:
    text = (
        "proc /proc proc rw 0 0\n"
        "shared /tmp/my\\040share 9p rw,sync,access=client,trans=virtio 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
    )
    (mount,) = parse_9p_mounts(text)
    assert (mount.source, mount.target, mount.options) == ("shared", "/tmp/my share", "rw,sync,access=client,trans=virtio")
    assert "'/tmp/my share'" in mount.mount_command()


def test_a_node_without_qcow2_cannot_be_checkpointed(tmp_path: Path) -> None:
    """A guest with no vmstate drive (nor a qcow2 disk) gets a clear reason."""
    image = build_tiny_guest()
    script = write_start_script(tmp_path / "plain", name="plain", node_number=1, vlans=[],
                                hosts=[("plain", 1, 1)], image=image)
    # The same start script without its vmstate drive.
    text = script.read_text()
    script.write_text("\n".join(line for line in text.splitlines() if "id=vmstate" not in line) + "\n")
    bus = EventBus()
    machine = Machine("plain", str(script), bus=bus, logger=Logger(bus), tmp_dir=tmp_path / "tmp",
                      out_dir=tmp_path / "out", shared_dir=tmp_path / "shared")
    try:
        machine.start()
        machine.connect()
        checkpoints = Checkpoints(lambda: [machine])
        reason = checkpoints.why_not(machine)
        assert reason is not None and "no writable qcow2 disk" in reason
        with pytest.raises(CheckpointError, match="no writable qcow2 disk"):
            checkpoints.save()
    finally:
        machine.release()
