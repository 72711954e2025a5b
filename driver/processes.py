"""Child processes that can never outlive vmtui.

Every QEMU and vde_switch the driver starts goes through `spawn()`:

- the child gets a session (and process group) of its own, so a terminal's
  Ctrl-C does not reach it and one `killpg` ends it together with anything it
  forked (a start script that does not `exec` QEMU, for one);
- the child asks the kernel for SIGKILL when its parent dies
  (`PR_SET_PDEATHSIG`).  The kernel's notion of "parent" is the *thread* that
  forked, so all forks happen on one long-lived daemon thread: a child spawned
  from a short-lived `start_all()` worker would otherwise be killed the moment
  that worker returns;
- the child is recorded in a registry that `terminate_all()` (and the exit
  handlers of `install_exit_handlers()`) end with SIGTERM, then SIGKILL after
  a grace period.

That covers every way vmtui can end: normal exit (atexit), SIGTERM/SIGINT/
SIGHUP (handlers), and SIGKILL or a crash (PDEATHSIG).  The same cleanup then
removes the temporary directories of `driver.scratch`.

A child may leave processes of its own in its group: a start script starts
`virtiofsd` (or any helper) in the background and then `exec`s QEMU.  They
belong to the child: `end_group_with_leader()` ends them as soon as the
child itself exits, however it exits, and `terminate()` ends the group even
when its leader is gone already.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

from driver import scratch

_PR_SET_PDEATHSIG = 1

# Looked up once in the parent: after fork() only async-signal-safe work is
# wise, and loading a library is not.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl


def _ask_for_death_with_parent(parent_pid: int) -> Callable[[], None]:
    """The preexec hook run in the child between fork() and exec()."""

    def hook() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork() and prctl(): then the
        # signal will never come, so leave now.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


@dataclass
class _SpawnRequest:
    argv: list[str]
    kwargs: dict[str, Any]
    result: Future[subprocess.Popen[bytes]] = field(default_factory=Future)


class _Spawner:
    """One daemon thread that performs every fork, for PDEATHSIG's sake."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[_SpawnRequest] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def spawn(self, argv: list[str], kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
        self._ensure_thread()
        request = _SpawnRequest(argv, kwargs)
        self._requests.put(request)
        return request.result.result()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="vmtui-spawner", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            try:
                popen = subprocess.Popen(
                    request.argv,
                    start_new_session=True,
                    preexec_fn=_ask_for_death_with_parent(os.getpid()),
                    **request.kwargs,
                )
            except BaseException as error:  # handed to the caller's thread
                request.result.set_exception(error)
            else:
                request.result.set_result(popen)


_spawner = _Spawner()


class ProcessRegistry:
    """Every live child process group, so that all of them can be ended."""

    def __init__(self) -> None:
        # Re-entrant: a signal handler may run cleanup on a thread that is
        # inside register()/forget() already.
        self._lock = threading.RLock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def register(self, popen: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children[popen.pid] = popen

    def forget(self, popen: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.pop(popen.pid, None)

    def live(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            return list(self._children.values())

    def terminate(self, popen: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
        """End the child's whole process group; returns its exit status."""
        terminate_groups([popen], grace)
        self.forget(popen)
        return popen.returncode

    def terminate_all(self, grace: float = 5.0) -> None:
        children = self.live()
        terminate_groups(children, grace)
        for popen in children:
            self.forget(popen)


registry = ProcessRegistry()


def _signal_group(pgid: int, signum: int) -> bool:
    """Send a signal to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _group_exists(pgid: int) -> bool:
    return _signal_group(pgid, 0)


# How long a leader may take to end before the rest of its group is signalled too.
_LEADER_FIRST_SECONDS = 2.0


def terminate_groups(children: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGTERM each child's process group, SIGKILL what is left after `grace`.

    Children were spawned with `start_new_session`, so their pgid is their pid.
    `poll()` (never a blocking `wait()`) reaps the leaders: this may run in a
    signal handler that interrupted a thread blocked in `wait()` itself.
    """
    groups = [popen.pid for popen in children]
    # Each leader first (QEMU, exec'd by its start script): helpers such as
    # virtiofsd serve it while it shuts down, and ending them at the same
    # moment makes QEMU log vhost-user errors on its way out.
    for popen in children:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(popen.pid, signal.SIGTERM)
    leaders_deadline = time.monotonic() + min(grace, _LEADER_FIRST_SECONDS)
    while time.monotonic() < leaders_deadline and any(popen.poll() is None for popen in children):
        time.sleep(0.02)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for popen in children:
            popen.poll()
        if not any(_group_exists(pgid) for pgid in groups):
            return
        time.sleep(0.02)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    # SIGKILL cannot be caught; reaping is all that is left to do.
    kill_deadline = time.monotonic() + 2.0
    while time.monotonic() < kill_deadline:
        if all(popen.poll() is not None for popen in children):
            return
        time.sleep(0.01)


def end_group_with_leader(popen: subprocess.Popen[bytes], grace: float = 5.0) -> threading.Thread:
    """When `popen` exits, end whatever is left of its process group.

    Waits on a daemon thread without reaping the child (`WNOWAIT`), so the
    owner's own `poll()`/`wait()` still see its exit status.
    """

    def watch() -> None:
        try:
            os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped already: the group is all that is left to look at
        if _group_exists(popen.pid):
            terminate_groups([popen], grace)

    watcher = threading.Thread(target=watch, name=f"vmtui-group-{popen.pid}", daemon=True)
    watcher.start()
    return watcher


def spawn(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` as a registered child that dies with vmtui.

    The caller may be any thread (a `start_all()` worker included): the fork
    itself happens on the long-lived spawner thread.  Raises `OSError` when
    the program cannot be executed.
    """
    kwargs: dict[str, Any] = {
        "cwd": cwd,
        "env": dict(env) if env is not None else None,
        "stdin": stdin,
        "stdout": stdout,
        "stderr": stderr,
        "close_fds": True,
    }
    popen = _spawner.spawn(list(argv), kwargs)
    registry.register(popen)
    return popen


# -- exit handling ----------------------------------------------------------------

_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_handlers_lock = threading.Lock()
_handlers_installed = False
_cleanup_started = threading.Event()
# Told of a handled signal before anything ends, so a front end can say why
# the VMs are about to go away (see add_signal_listener).
_signal_listeners: list[Callable[[int], None]] = []


def add_signal_listener(listener: Callable[[int], None]) -> Callable[[], None]:
    """Call `listener(signum)` when a handled signal arrives, before the cleanup; returns a remover.

    It runs inside the signal handler, on the main thread: it must be short
    and must not wait for a lock the main thread may hold.
    """
    _signal_listeners.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _signal_listeners.remove(listener)

    return remove


def ending() -> bool:
    """True once the process-wide cleanup has begun (a signal, or the exit): every child is going."""
    return _cleanup_started.is_set()


def cleanup(grace: float = 3.0) -> None:
    """End every registered child.  Safe to call any number of times."""
    if _cleanup_started.is_set():
        # A second caller (a signal arriving during atexit, say) must not
        # start a second round: the first one is already ending everything.
        # But if the registry is not empty, the first round was interrupted
        # before it could finish, so finish it here.
        if not registry.live():
            return
    _cleanup_started.set()
    registry.terminate_all(grace)
    # Only now: a child that still ran could have written into them.
    scratch.remove_all()


def _on_signal(signum: int, _frame: object) -> None:
    # Ignore further deliveries while cleaning up: a user pressing Ctrl-C
    # twice must not abort the cleanup half way.
    for handled in _HANDLED_SIGNALS:
        signal.signal(handled, signal.SIG_IGN)
    try:
        for listener in list(_signal_listeners):
            with contextlib.suppress(Exception):  # nothing may stop the cleanup
                listener(signum)
        cleanup()
    finally:
        # Die of the same signal with its default action, so the parent sees
        # the conventional status (128 + signum in a shell).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        # SIGINT and friends are delivered asynchronously to this thread;
        # if the kernel has not done so yet, leave the classic way.
        time.sleep(1.0)
        os._exit(128 + signum)


def install_exit_handlers() -> None:
    """End all children on exit, SIGTERM, SIGINT and SIGHUP.  Idempotent.

    Signal handlers can only be installed from the main thread; from any other
    thread only the atexit hook is installed (PDEATHSIG still covers a kill).
    """
    global _handlers_installed
    with _handlers_lock:
        if _handlers_installed:
            return
        _handlers_installed = True
        atexit.register(cleanup)
        if threading.current_thread() is threading.main_thread():
            for signum in _HANDLED_SIGNALS:
                signal.signal(signum, _on_signal)
