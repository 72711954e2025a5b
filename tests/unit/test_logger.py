from __future__ import annotations

import threading

import pytest

from driver.errors import RequestedAssertionFailed, ScriptCancelled
from driver.events import BlockClosed, BlockOpened, EventBus, LogLevel, LogMessage
from driver.logger import Logger


@pytest.fixture
def recorded() -> tuple[Logger, list[object]]:
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    return Logger(bus), events


def test_messages_carry_machine_and_level(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    logger.log("plain")
    logger.info("hello", machine="server")
    logger.warning("careful")
    logger.error("broken", machine="client")
    logger.debug("detail")
    assert [(e.message, e.machine, e.level) for e in events if isinstance(e, LogMessage)] == [
        ("plain", None, LogLevel.INFO),
        ("hello", "server", LogLevel.INFO),
        ("careful", None, LogLevel.WARNING),
        ("broken", "client", LogLevel.ERROR),
        ("detail", None, LogLevel.DEBUG),
    ]


def test_error_does_not_exit(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    logger.error("still here")
    assert len(events) == 1


def test_nested_blocks_have_parents_durations_and_lines(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    logger.set_line_provider(lambda: 42)
    with logger.nested("outer", machine="server"):
        with logger.nested("inner", attrs={"machine": "client"}):
            logger.log("inside")
    opened = [e for e in events if isinstance(e, BlockOpened)]
    closed = [e for e in events if isinstance(e, BlockClosed)]
    assert [(o.title, o.machine, o.script_line, o.kind) for o in opened] == [
        ("outer", "server", 42, "nested"),
        ("inner", "client", 42, "nested"),
    ]
    assert opened[0].parent_id is None
    assert opened[1].parent_id == opened[0].block_id
    # Inner closes first; both succeeded.
    assert [c.block_id for c in closed] == [opened[1].block_id, opened[0].block_id]
    assert all(c.ok and c.error is None and c.duration >= 0 for c in closed)


def test_failed_block_records_the_error_and_reraises(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    with pytest.raises(RequestedAssertionFailed):
        with logger.nested("must succeed: false"):
            raise RequestedAssertionFailed("command `false` failed (exit code 1)")
    closed = [e for e in events if isinstance(e, BlockClosed)]
    assert closed[0].ok is False
    assert closed[0].error == "RequestedAssertionFailed: command `false` failed (exit code 1)"


def test_cancelled_block(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    with pytest.raises(ScriptCancelled):
        with logger.nested("waiting"):
            raise ScriptCancelled()
    closed = [e for e in events if isinstance(e, BlockClosed)]
    assert (closed[0].ok, closed[0].error) == (False, "cancelled")


def test_subtest_logs_the_failure_like_nixos(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    with pytest.raises(ValueError):
        with logger.subtest("database"):
            raise ValueError("no rows")
    opened = [e for e in events if isinstance(e, BlockOpened)]
    assert (opened[0].title, opened[0].kind) == ("subtest: database", "subtest")
    errors = [e.message for e in events if isinstance(e, LogMessage) and e.level == LogLevel.ERROR]
    assert errors == ['Test "database" failed with error: "no rows"']


def test_block_stacks_are_per_thread(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    inner_parent: list[int | None] = []

    def other_thread() -> None:
        with logger.nested("from another thread"):
            pass

    with logger.nested("script block"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    opened = {e.title: e for e in events if isinstance(e, BlockOpened)}
    inner_parent.append(opened["from another thread"].parent_id)
    assert inner_parent == [None]


def test_adopt_parent_nests_helper_thread_blocks(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded
    with logger.nested("start all"):
        parent = logger.current_block_id()

        def boot() -> None:
            with logger.adopt_parent(parent), logger.nested("start server"):
                pass

        thread = threading.Thread(target=boot)
        thread.start()
        thread.join()
    opened = {e.title: e for e in events if isinstance(e, BlockOpened)}
    assert opened["start server"].parent_id == opened["start all"].block_id


def test_a_failing_line_provider_never_breaks_logging(recorded: tuple[Logger, list[object]]) -> None:
    logger, events = recorded

    def broken() -> int | None:
        raise RuntimeError("boom")

    logger.set_line_provider(broken)
    with logger.nested("still works"):
        pass
    assert isinstance(events[0], BlockOpened) and events[0].script_line is None
