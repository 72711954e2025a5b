"""Watch a few files (the test script, the spec or `.nix` file) for saves.

Editors rarely write a file in place: vim, emacs and most IDEs write a
temporary file and rename it over the original, sometimes after writing a
backup or probe file next to it.  Watching the file itself would lose track
of it after the first rename, so the *directories* are watched
(non-recursively) and events are filtered down to the files of interest.

One save is a burst of events (create temp, write, rename, chmod ...).
watchfiles already groups events that arrive within `step_ms` of each other,
up to `debounce_ms`; a short step keeps a save feeling instant while still
delivering the burst as one change.  A save that leaves the bytes as they
were (`:w` without an edit) is still reported: the user asked for a rerun.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterable

import watchfiles

# Group events arriving within STEP of each other; never hold a change longer than DEBOUNCE.
DEFAULT_STEP_MS = 30
DEFAULT_DEBOUNCE_MS = 400


class FileWatcher:
    """Calls `on_change(paths)` from a background thread when watched files are saved.

    `paths` are the files to watch; they need not exist yet (a file that is
    deleted and written again is reported when it reappears).  Deletions alone
    are not reported: the next write is.
    """

    def __init__(
        self,
        paths: Iterable[Path],
        on_change: Callable[[set[Path]], None],
        *,
        step_ms: int = DEFAULT_STEP_MS,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        force_polling: bool | None = None,
    ) -> None:
        self.paths = frozenset(Path(p).resolve() for p in paths)
        if not self.paths:
            raise ValueError("nothing to watch")
        self._on_change = on_change
        self._step_ms = step_ms
        self._debounce_ms = debounce_ms
        self._force_polling = force_polling
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        # start() and stop() may come from different threads (a worker starts
        # the watch, the app's unmount stops it): the thread is created and
        # started, or taken for joining, as one step.
        self._lifecycle = threading.Lock()
        self.error: BaseException | None = None

    @property
    def directories(self) -> list[Path]:
        return sorted({p.parent for p in self.paths})

    def start(self, wait: bool = True) -> None:
        """Start watching; with `wait`, return once the watch is established
        (a fraction of a second), so that a save right after is not missed."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("the watcher is already running")
            if self._stop.is_set():
                return  # stopped before it started: there is nothing to watch for
            thread = threading.Thread(target=self._watch, name="vmtui-watch", daemon=True)
            thread.start()
            self._thread = thread
        if wait:
            self._ready.wait(timeout=5)

    def stop(self) -> None:
        with self._lifecycle:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> FileWatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _interesting(self, change: watchfiles.Change, path: str) -> bool:
        return change != watchfiles.Change.deleted and Path(path) in self.paths

    def _watch(self) -> None:
        try:
            changes = watchfiles.watch(
                *self.directories,
                watch_filter=self._interesting,
                step=self._step_ms,
                debounce=self._debounce_ms,
                stop_event=self._stop,
                recursive=False,
                # Wake up regularly so stop() is noticed and the first
                # iteration (which sets _ready) starts at once.
                rust_timeout=200,
                yield_on_timeout=True,
                raise_interrupt=False,
                force_polling=self._force_polling,
            )
            for batch in changes:
                self._ready.set()
                if self._stop.is_set():
                    return
                # A rename may report the path under a non-resolved spelling;
                # only files that exist now count as saved.
                saved = {Path(path) for _, path in batch if Path(path).exists()}
                if saved:
                    self._on_change(saved)
        except BaseException as error:  # noqa: BLE001 - reported through .error, never lost
            self.error = error
        finally:
            self._ready.set()
