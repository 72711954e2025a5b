"""What the app's workers answer with.

Every thread worker of `VmtuiApp` ends by posting one of these messages to
the app (`post_message` is thread safe); the app handles them with `@on` on
its own thread.  So a worker never touches the DOM, and every answer has a
type that says what it carries.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from textual.message import Message

from driver.stepper import Evaluation
from vmtui.live import RestartRequest
from vmtui.rebuild import RebuildResult
from vmtui.rerun import SaveOutcome

if TYPE_CHECKING:
    from driver.shell import ShellSession
    from vmtui.session import Session
    from widgets.terminal_view import ShellPane


_Answer = TypeVar("_Answer", bound="WorkerAnswer")


def while_running(handler: Callable[[Any, _Answer], None]) -> Callable[[Any, _Answer], None]:
    """Drop an answer that arrives while the app shuts down (its widgets are leaving).

    Use under `@on(...)`: a worker may finish after the user quit.
    """

    @functools.wraps(handler)
    def handle(app: Any, message: _Answer) -> None:
        if app.is_running:
            handler(app, message)

    return handle


class WorkerAnswer(Message):
    """Base of every answer.

    Answers are dataclasses (Textual's Message initialises those itself),
    compared by identity (`eq=False`) as every other message.
    """


@dataclass(eq=False)
class SessionOpened(WorkerAnswer):
    """The machines exist; `load_error` is set when the script does not compile."""

    session: Session
    load_error: str | None


@dataclass(eq=False)
class SessionFailed(WorkerAnswer):
    message: str


@dataclass(eq=False)
class FilesSaved(WorkerAnswer):
    """The watcher saw these (resolved) paths saved."""

    paths: frozenset[Path]


@dataclass(eq=False)
class RebuildProgress(WorkerAnswer):
    cancel: threading.Event
    line: str


@dataclass(eq=False)
class RebuildFinished(WorkerAnswer):
    cancel: threading.Event
    result: RebuildResult


@dataclass(eq=False)
class RebuildFailed(WorkerAnswer):
    cancel: threading.Event
    message: str


@dataclass(eq=False)
class RerunRequested(WorkerAnswer):
    """The rerun controller asks for a run of statements `start` up to (not including) `until`."""

    start: int
    until: int | None


@dataclass(eq=False)
class SaveApplied(WorkerAnswer):
    """A save, a script swap or a rerun was planned and started (or refused)."""

    outcome: SaveOutcome


@dataclass(eq=False)
class Rewound(WorkerAnswer):
    outcome: SaveOutcome


@dataclass(eq=False)
class NodesRestarted(WorkerAnswer):
    request: RestartRequest


@dataclass(eq=False)
class RestartFailed(WorkerAnswer):
    request: RestartRequest
    message: str


@dataclass(eq=False)
class CheckpointTaken(WorkerAnswer):
    """`name` None: it is taken when the running statement ends."""

    name: str | None
    save_seconds: float


@dataclass(eq=False)
class CheckpointFailed(WorkerAnswer):
    message: str


@dataclass(eq=False)
class VariablesRead(WorkerAnswer):
    """`generation` orders the reads: an older read never replaces a newer one."""

    generation: int
    values: dict[str, str]


@dataclass(eq=False)
class ReplAnswered(WorkerAnswer):
    evaluation: Evaluation


@dataclass(eq=False)
class ShellOpened(WorkerAnswer):
    pane: ShellPane
    shell: ShellSession


@dataclass(eq=False)
class ShellFailed(WorkerAnswer):
    pane: ShellPane
    message: str
