"""Machine pieces that need no QEMU: systemctl parsing, exit reasons, the
QEMU command line, state directory handling."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import pytest

from driver.errors import MachineError
from driver.events import Event, EventBus, MachineState, MachineStateChanged
from driver.logger import Logger
from driver.machine import Machine, describe_exit, parse_systemctl_show

# `systemctl --no-pager show sshd.service` on a systemd 252 guest (abridged:
# the real output has ~250 properties; these cover every shape of value).
SYSTEMCTL_SHOW_SSHD = """\
Type=notify
ExitType=main
Restart=on-failure
NotifyAccess=main
RestartUSec=100ms
TimeoutStartUSec=1min 30s
TimeoutStopUSec=1min 30s
RuntimeMaxUSec=infinity
WatchdogUSec=0
WatchdogTimestamp=Fri 2026-11-20 15:31:02 UTC
WatchdogTimestampMonotonic=4563211
MainPID=412
ControlPID=0
StatusErrno=0
Result=success
ReloadResult=success
ExecMainStartTimestamp=Fri 2026-11-20 15:31:02 UTC
ExecMainPID=412
ExecMainCode=0
ExecMainStatus=0
ExecStartPre={ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -t ; ignore_errors=no ; start_time=[Fri 2026-11-20 15:31:02 UTC] ; stop_time=[Fri 2026-11-20 15:31:02 UTC] ; pid=398 ; code=exited ; status=0 }
ExecStartPreEx={ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -t ; flags= ; start_time=[Fri 2026-11-20 15:31:02 UTC] ; stop_time=[Fri 2026-11-20 15:31:02 UTC] ; pid=398 ; code=exited ; status=0 }
ExecStart={ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -D $SSHD_OPTS ; ignore_errors=no ; start_time=[Fri 2026-11-20 15:31:02 UTC] ; stop_time=[n/a] ; pid=412 ; code=(null) ; status=0/0 }
ExecReload={ path=/bin/kill ; argv[]=/bin/kill -HUP $MAINPID ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
Slice=system.slice
ControlGroup=/system.slice/ssh.service
MemoryCurrent=2375680
CPUUsageNSec=36544000
TasksCurrent=1
Delegate=no
CPUAccounting=yes
MemoryAccounting=yes
MemoryMax=infinity
TasksMax=4915
EnvironmentFiles=-/etc/default/ssh (ignore_errors=yes)
UMask=0022
LimitNOFILE=524288
LimitNOFILESoft=1024
Nice=0
OOMScoreAdjust=0
CPUSchedulingPolicy=0
KillMode=process
KillSignal=15
SendSIGKILL=yes
Id=ssh.service
Names=ssh.service sshd.service
Requires=system.slice sysinit.target
Wants=network.target
WantedBy=multi-user.target
Conflicts=shutdown.target
Before=multi-user.target shutdown.target
After=network.target auditd.service systemd-journald.socket basic.target system.slice sysinit.target systemd-user-sessions.service
Documentation="man:sshd(8)" "man:sshd_config(5)"
Description=OpenBSD Secure Shell server
LoadState=loaded
ActiveState=active
FreezerState=running
SubState=running
FragmentPath=/lib/systemd/system/ssh.service
UnitFileState=enabled
UnitFilePreset=enabled
StateChangeTimestamp=Fri 2026-11-20 15:31:02 UTC
InactiveExitTimestamp=Fri 2026-11-20 15:31:02 UTC
ActiveEnterTimestamp=Fri 2026-11-20 15:31:02 UTC
CanStart=yes
CanStop=yes
CanReload=yes
StopWhenUnneeded=no
ConditionResult=yes
ConditionTimestamp=Fri 2026-11-20 15:31:02 UTC
AssertResult=yes
InvocationID=5ad3a2f0b1d24e5c9cc1c6a1f59c1e0b
CollectMode=inactive
StatusText=
Environment=
"""

# A unit that does not exist: systemctl show still succeeds.
SYSTEMCTL_SHOW_MISSING = """\
Restart=no
MainPID=0
Id=nope.service
Names=nope.service
Description=nope.service
LoadState=not-found
ActiveState=inactive
FreezerState=running
SubState=dead
LoadError=org.freedesktop.systemd1.NoSuchUnit "Unit nope.service not found."
CanStart=no
"""


def test_parse_systemctl_show() -> None:
    info = parse_systemctl_show(SYSTEMCTL_SHOW_SSHD)
    assert info["ActiveState"] == "active"
    assert info["SubState"] == "running"
    assert info["MainPID"] == "412"
    assert info["Names"] == "ssh.service sshd.service"
    # Values with '=' inside are kept whole.
    assert info["ExecStart"].startswith("{ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -D $SSHD_OPTS ;")
    assert info["EnvironmentFiles"] == "-/etc/default/ssh (ignore_errors=yes)"
    # Empty values are present and empty.
    assert info["StatusText"] == ""
    assert info["Environment"] == ""
    assert len(info) == SYSTEMCTL_SHOW_SSHD.count("\n")


def test_parse_systemctl_show_of_a_missing_unit() -> None:
    info = parse_systemctl_show(SYSTEMCTL_SHOW_MISSING)
    assert (info["LoadState"], info["ActiveState"]) == ("not-found", "inactive")
    assert info["LoadError"].startswith("org.freedesktop.systemd1.NoSuchUnit")


def test_parse_ignores_lines_without_a_key() -> None:
    assert parse_systemctl_show("\nnot a property\n=orphan value\nA=1\n") == {"A": "1"}
    assert parse_systemctl_show("A=1\nB=x=y\n") == {"A": "1", "B": "x=y"}


def test_describe_exit() -> None:
    assert describe_exit(0) == "QEMU exited with status 0"
    assert describe_exit(1) == "QEMU exited with status 1"
    assert describe_exit(-signal.SIGKILL) == "QEMU was killed by signal 9 (SIGKILL)"


def make_machine(tmp_path: Path, start_command: str = "/x/run-node1-vm", **kwargs: object) -> tuple[Machine, list[Event]]:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    machine = Machine(
        "node1",
        start_command,
        bus=bus,
        logger=Logger(bus),
        tmp_dir=tmp_path,
        out_dir=tmp_path / "out",
        shared_dir=tmp_path / "shared-xchg",
        **kwargs,  # type: ignore[arg-type]
    )
    return machine, events


def test_state_dir_is_private_and_reset(tmp_path: Path) -> None:
    stale = tmp_path / "vm-state-node1" / "node1.qcow2"
    stale.parent.mkdir()
    stale.write_text("old disk")
    machine, events = make_machine(tmp_path)
    assert machine.state_dir == tmp_path / "vm-state-node1"
    assert not stale.exists()
    assert stat.S_IMODE(machine.state_dir.stat().st_mode) == 0o700
    assert (tmp_path / "shared-xchg").is_dir()
    assert events[-1] == MachineStateChanged("node1", MachineState.CREATED, timestamp=events[-1].timestamp)  # type: ignore[union-attr]


def test_keep_state_keeps_the_state_dir(tmp_path: Path) -> None:
    disk = tmp_path / "vm-state-node1" / "node1.qcow2"
    disk.parent.mkdir()
    disk.write_text("disk")
    machine, _ = make_machine(tmp_path, keep_state=True)
    assert disk.read_text() == "disk"
    assert machine.keep_machine_state and machine.keep_vm_state


def test_qemu_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    machine, _ = make_machine(tmp_path)
    argv = machine._start_argv()
    assert argv[0] == "/x/run-node1-vm"
    state = machine.state_dir
    joined = " ".join(argv)
    assert f"-qmp unix:{state}/qmp,server=on,wait=off" in joined
    assert f"-monitor unix:{state}/monitor" in joined
    assert f"-chardev socket,id=shell,path={state}/shell -device virtio-serial -device virtconsole,chardev=shell" in joined
    for n in (1, 2, 3):
        assert f"socket,id=vmtui-tty{n},path={state}/tty{n},server=on,wait=off" in joined
        assert f"virtconsole,chardev=vmtui-tty{n}" in joined
    assert machine.shell_socket_path(2) == state / "tty2"
    assert "-serial stdio" in joined
    assert "-no-reboot" in argv and "-nographic" in argv


def test_allow_reboot_and_display(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    machine, _ = make_machine(tmp_path, allow_reboot=True)
    argv = machine._start_argv()
    assert "-no-reboot" not in argv and "-nographic" not in argv


def test_allow_reboot_of_one_start_and_wayland(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    machine, _ = make_machine(tmp_path)
    # start(allow_reboot=True) passes it for that start only; the machine's
    # own default stays what it was.
    assert "-no-reboot" not in machine._start_argv(True)
    assert "-no-reboot" in machine._start_argv() and not machine.allow_reboot
    # NixOS adds -nographic only without DISPLAY and WAYLAND_DISPLAY.
    assert "-nographic" not in machine._start_argv()


def test_full_console_log_is_a_list_before_any_start(tmp_path: Path) -> None:
    machine, _ = make_machine(tmp_path)
    assert machine.full_console_log == [] and machine.get_console_log() == ""


def test_command_line_start_commands_go_through_bash(tmp_path: Path) -> None:
    machine, _ = make_machine(tmp_path, start_command="QEMU_OPTS='-m 512' /x/run-node1-vm")
    argv = machine._start_argv()
    assert argv[1:4] == ["-c", "QEMU_OPTS='-m 512' /x/run-node1-vm \"$@\"", "run-node1-vm"]
    assert argv[4] == "-qmp"


def test_relative_start_script_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    machine, _ = make_machine(tmp_path, start_command="./result/bin/run-node1-vm")
    # QEMU runs in the state dir, so a relative path would point elsewhere.
    assert machine._start_argv()[0] == str(tmp_path / "result/bin/run-node1-vm")


def test_commas_in_paths_are_escaped_for_qemu(tmp_path: Path) -> None:
    odd = tmp_path / "a,b"
    odd.mkdir()
    machine, _ = make_machine(odd)
    assert f"unix:{odd}".replace(",", ",,") + "/vm-state-node1/monitor" in machine._start_argv()


def test_socket_paths_that_are_too_long_are_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    with pytest.raises(MachineError, match="node1: the state directory path is too long"):
        make_machine(deep)


def test_unsupported_features_say_so(tmp_path: Path) -> None:
    machine, _ = make_machine(tmp_path)
    with pytest.raises(MachineError, match="shell pane"):
        machine.shell_interact()


def test_a_wayland_display_counts_as_a_display(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The NixOS rule: -nographic only when neither DISPLAY nor WAYLAND_DISPLAY is set.
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    machine, _ = make_machine(tmp_path)
    assert "-nographic" not in machine._start_argv()
    monkeypatch.delenv("WAYLAND_DISPLAY")
    assert "-nographic" in machine._start_argv()


def test_a_machine_that_never_started(tmp_path: Path) -> None:
    machine, _ = make_machine(tmp_path)
    assert not machine.is_up()
    assert machine.get_console_log() == ""
    # These are no-ops on a machine that is not running, as in NixOS.
    machine.shutdown()
    machine.crash()
    machine.wait_for_shutdown()
    machine.release()
    with pytest.raises(MachineError, match="node1: the machine is not running"):
        machine.send_console("x")
