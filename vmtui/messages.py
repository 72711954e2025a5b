"""What the app's workers answer with.

Every thread worker of `VmtuiApp` ends by posting one of these messages to
the app (`post_message` is thread safe); the app handles them with `@on` on
its own thread.  So a worker never touches the DOM, and every answer has a
type that says what it carries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from driver.stepper import Evaluation
from vmtui.live import RestartRequest
from vmtui.rebuild import RebuildResult
from vmtui.rerun import SaveOutcome

if TYPE_CHECKING:
    from driver.shell import ShellSession
    from vmtui.session import Session
    from widgets.terminal_view import ShellPane

# Messages are compared by identity (Textual keeps them in sets and queues).
answer = dataclass(eq=False)


class WorkerAnswer(Message):
    """Base of every answer (Textual's Message initialises dataclass messages itself)."""


@answer
class SessionOpened(WorkerAnswer):
    """The machines exist; `load_error` is set when the script does not compile."""

    session: Session
    load_error: str | None


@answer
class SessionFailed(WorkerAnswer):
    message: str


@answer
class FilesSaved(WorkerAnswer):
    """The watcher saw these (resolved) paths saved."""

    paths: frozenset[Path]


@answer
class RebuildProgress(WorkerAnswer):
    cancel: threading.Event
    line: str


@answer
class RebuildFinished(WorkerAnswer):
    cancel: threading.Event
    result: RebuildResult


@answer
class RebuildFailed(WorkerAnswer):
    cancel: threading.Event
    message: str


@answer
class RerunRequested(WorkerAnswer):
    """The rerun controller asks for a run of statements `start` .. `stop`."""

    start: int
    stop: int | None


@answer
class SaveApplied(WorkerAnswer):
    """A save, a script swap or a rerun was planned and started (or refused)."""

    outcome: SaveOutcome


@answer
class Rewound(WorkerAnswer):
    outcome: SaveOutcome


@answer
class NodesRestarted(WorkerAnswer):
    request: RestartRequest


@answer
class RestartFailed(WorkerAnswer):
    request: RestartRequest
    message: str


@answer
class CheckpointTaken(WorkerAnswer):
    """`name` None: it is taken when the running statement ends."""

    name: str | None
    save_seconds: float


@answer
class CheckpointFailed(WorkerAnswer):
    message: str


@answer
class VariablesRead(WorkerAnswer):
    """`generation` orders the reads: an older read never replaces a newer one."""

    generation: int
    values: dict[str, str]


@answer
class ReplAnswered(WorkerAnswer):
    evaluation: Evaluation


@answer
class ShellOpened(WorkerAnswer):
    pane: ShellPane
    shell: ShellSession


@answer
class ShellFailed(WorkerAnswer):
    pane: ShellPane
    message: str
