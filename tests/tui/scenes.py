"""Deterministic app states for snapshot tests and screenshots: recorded driver events.

The app is built without a session (no machines); the events are the ones a
real run of `data/todos_script.py` publishes, with fixed timestamps, so the
screens are the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from driver.config import NodeConfig, TestConfig
from driver.events import (
    BlockClosed,
    BlockOpened,
    DebuggerPaused,
    FrameSummary,
    LogLevel,
    LogMessage,
    MachineState,
    MachineStateChanged,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
    WaitProgress,
)
from vmtui.app import VmtuiApp
from widgets.console_pane import ConsolePane
from widgets.debugger import ReplInput, VariablesView

DATA = Path(__file__).parent / "data"
SCRIPT = DATA / "todos_script.py"


def scene_app(state_dir: Path) -> VmtuiApp:
    config = TestConfig(
        nodes=[NodeConfig("client", "run-client-vm"), NodeConfig("server", "run-server-vm")],
        vlans=[1],
        script_path=SCRIPT,
        name="todos",
    )
    ReplInput.cursor_blink = False
    return VmtuiApp(config, None, clock=None, state_dir=state_dir)


def boot_lines(machine: str, count: int) -> list[str]:
    lines = [
        "\x1b[1mvmtui tiny guest\x1b[0m booting (Linux 6.1.0-amd64)",
        "[    0.000000] Linux version 6.1.0-amd64 (debian-kernel@lists.debian.org)",
        "[    0.000000] Command line: console=ttyS0 panic=-1 quiet",
        "[    0.412233] virtio_net virtio1 eth1: renamed from eth0",
        f"[    0.533120] {machine}: /etc/vmtui/boot.sh started",
        "\x1b[32m[  OK  ]\x1b[0m mounted /proc /sys /dev /tmp",
        f"\x1b[32m[  OK  ]\x1b[0m hostname {machine}, eth1 192.168.1.{1 if machine == 'client' else 2}/24",
        "\x1b[32m[  OK  ]\x1b[0m backdoor shell on hvc0",
    ]
    if machine == "server":
        lines += [
            "\x1b[32m[  OK  ]\x1b[0m httpd -p 3000 -h /srv/www",
            "httpd: GET /todos.json 200 (client 192.168.1.1)",
        ]
    return (lines * (count // len(lines) + 1))[:count]


def _boot(app: VmtuiApp) -> None:
    for pid, machine in ((4101, "client"), (4102, "server")):
        app.apply_event(MachineStateChanged(machine, MachineState.BOOTING, pid=pid, timestamp=0.0))
        app.apply_event(MachineStateChanged(machine, MachineState.CONNECTED, pid=pid, timestamp=5.0))
        app.pane_for(machine).append_lines(boot_lines(machine, 10))


def _statement(app: VmtuiApp, line: int, end: int, duration: float, ok: bool = True) -> None:
    app.apply_event(StatementStarted(1, line, end))
    app.apply_event(StatementFinished(1, line, end, ok, duration))


def _block(app: VmtuiApp, block_id: int, title: str, machine: str | None, line: int, duration: float, parent: int | None = None, kind: str = "nested") -> None:
    app.apply_event(BlockOpened(block_id, parent, title, machine=machine, kind=kind, script_line=line))
    app.apply_event(BlockClosed(block_id, duration))


def running(app: VmtuiApp) -> None:
    """Booted, two statements done, waiting for a port."""
    app.apply_event(ScriptStarted(str(SCRIPT), 1, first_line=2))
    _boot(app)
    _statement(app, 2, 2, 5.31)
    _block(app, 1, "starting all VMs", None, 2, 5.30)
    _statement(app, 3, 3, 0.42)
    _block(app, 2, "waiting for unit multi-user.target", "server", 3, 0.41)
    app.apply_event(StatementStarted(1, 4, 4))
    app.apply_event(BlockOpened(3, None, "waiting for TCP port 3000 on localhost", machine="server", script_line=4))
    app.apply_event(WaitProgress("server", "TCP port 3000", 7.5, 900.0, 15))
    app.query_one("#script").focus()


def paused(app: VmtuiApp) -> None:
    """Stopped at a breakpoint inside the first subtest."""
    app.apply_event(ScriptStarted(str(SCRIPT), 1, first_line=2))
    _boot(app)
    _statement(app, 2, 2, 5.31)
    _block(app, 1, "starting all VMs", None, 2, 5.30)
    _statement(app, 3, 3, 0.42)
    _block(app, 2, "waiting for unit multi-user.target", "server", 3, 0.41)
    _statement(app, 4, 4, 1.07)
    _block(app, 3, "waiting for TCP port 3000 on localhost", "server", 4, 1.06)
    app.apply_event(StatementStarted(1, 6, 8))
    app.apply_event(BlockOpened(4, None, "subtest: the API lists todos", kind="subtest", script_line=6))
    _block(app, 5, "must succeed: curl -sf http://server:3000/todos.json", "client", 7, 0.18, parent=4)
    app.script_view.set_breakpoints([8, 11])
    app.query_one("#breakpoints").show_breakpoints([8, 11], app.script_view.line_text)
    stack = (FrameSummary(str(SCRIPT), 8, "<module>", True),)
    app.apply_event(DebuggerPaused(1, 8, "breakpoint", stack=stack))
    app.query_one(VariablesView).show_variables(
        {"todos": repr('[{"id": 1, "title": "buy milk", "done": false}]')}
    )
    app.query_one("#script").focus()


def failed(app: VmtuiApp) -> None:
    """Post-mortem: the second subtest failed; the VMs are still up."""
    app.apply_event(ScriptStarted(str(SCRIPT), 1, first_line=2))
    _boot(app)
    _statement(app, 2, 2, 5.31)
    _block(app, 1, "starting all VMs", None, 2, 5.30)
    _statement(app, 3, 3, 0.42)
    _statement(app, 4, 4, 1.07)
    _statement(app, 6, 8, 0.21)
    _block(app, 4, "subtest: the API lists todos", None, 6, 0.20, kind="subtest")
    app.apply_event(StatementStarted(1, 10, 12))
    app.apply_event(BlockOpened(6, None, "subtest: the API is gone when the server stops", kind="subtest", script_line=10))
    _block(app, 7, "must succeed: pkill httpd", "server", 11, 0.05, parent=6)
    app.apply_event(BlockOpened(8, 6, "must fail: curl -sf --max-time 2 http://server:3000/todos.json", machine="client", script_line=12))
    error = "RequestedAssertionFailed: command `curl -sf --max-time 2 http://server:3000/todos.json` unexpectedly succeeded"
    app.apply_event(BlockClosed(8, 0.12, ok=False, error=error))
    app.apply_event(LogMessage("Traceback (most recent call last):", level=LogLevel.ERROR))
    app.apply_event(StatementFinished(1, 10, 12, False, 0.19, error=error))
    stack = (FrameSummary(str(SCRIPT), 12, "<module>", True),)
    app.apply_event(DebuggerPaused(1, 12, "exception", stack=stack, error=error))
    app.query_one(VariablesView).show_variables({"todos": repr('[{"id": 1, "title": "buy milk", "done": false}]')})
    app.pane_for("server").append_lines(["httpd: terminated by SIGTERM"])
    app.query_one("#script").focus()


FLEET_SCRIPT = DATA / "fleet_script.py"
FLEET = ("router", "dns", "db1", "db2", "web1", "web2", "web3", "cache", "client1", "client2")


class FrozenClock:
    """A monotonic clock that moves only when a scene says so (stable screens)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fleet_app(state_dir: Path, clock: Callable[[], float] | None = None) -> VmtuiApp:
    """Ten nodes; `clock` drives uptimes and console activity (None: time stands still at 0)."""
    config = TestConfig(
        nodes=[NodeConfig(name, f"run-{name}-vm") for name in FLEET],
        vlans=[1],
        script_path=FLEET_SCRIPT,
        name="fleet",
    )
    ReplInput.cursor_blink = False
    return VmtuiApp(config, None, clock=clock, state_dir=state_dir)


def fleet_lines(machine: str, count: int, start: int = 0) -> list[str]:
    """`count` console lines of `machine`, numbered from `start`, some coloured."""
    return [
        f"\x1b[32m[  OK  ]\x1b[0m {machine} line {n}" if n % 3 == 0 else f"[{n * 0.137:12.6f}] {machine}: line {n}"
        for n in range(start, start + count)
    ]


def fleet(app: VmtuiApp, clock: FrozenClock) -> None:
    """Ten nodes in every state: most up, one booting, one exited, one not started; varied output."""
    from vmtui.bridge import Batch

    app.apply_event(ScriptStarted(str(FLEET_SCRIPT), 1, first_line=2))
    app.apply_event(StatementStarted(1, 2, 2))
    start = clock.now
    for number, name in enumerate(FLEET, 1):
        if name == "client2":
            continue  # never started: "created", no output
        app.apply_event(MachineStateChanged(name, MachineState.BOOTING, pid=4100 + number, timestamp=start,
                                            detail="starting QEMU"))
        app.apply_event(MachineStateChanged(name, MachineState.BOOTING, pid=4100 + number, timestamp=start,
                                            detail="waiting for the backdoor", accelerator="tcg"))
        if name != "client1":
            app.apply_event(MachineStateChanged(name, MachineState.CONNECTED, pid=4100 + number, timestamp=start))
    # Eight seconds of output: the web servers flood, the database trickles.
    written = {name: 0 for name in FLEET}
    for second in range(8):
        clock.now = start + second
        batch = Batch()
        for number, name in enumerate(FLEET, 1):
            if name == "client2":
                continue
            count = {"web1": 40 * second, "web2": 5, "web3": 0 if second < 5 else 120}.get(name, 2 if second < 3 else 0)
            if name in ("db2", "client1") or (name == "router" and second in (2, 6, 7)):
                count = max(count, 1 + second % 2)
            if count:
                batch.console[name] = fleet_lines(name, count, written[name])
                written[name] += count
        app.apply_batch(batch)
    app.apply_batch(Batch(console={"db1": ["db1: \x1b[31mpanic\x1b[0m: checksum mismatch on page 8812"]}))
    app.apply_event(MachineStateChanged("db1", MachineState.EXITED, exit_code=1, timestamp=clock.now,
                                        detail="QEMU exited with code 1"))
    # The uptimes as of the scene's last second, not whenever the once-a-second timer fires.
    for pane in app.query(ConsolePane):
        pane.refresh_status()
    app.query_one("#script").focus()
