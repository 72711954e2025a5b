"""Driver events <-> JSON objects, for `events.jsonl` in a run record.

The events are the one contract between the driver, the run record, replay
and the UI: a record stores them as they were published, and replay turns
each line back into the same dataclass the live UI received.

A `ConsoleOutput` is the exception: its lines live in `consoles/<node>.log`,
so its JSON form names the range (`first`, `count`: line numbers in that
node's console, counted from 0) instead of repeating the text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

from driver.errors import EventDecodeError as EventDecodeError
from driver.events import (
    BlockClosed,
    BlockOpened,
    ConsoleOutput,
    DebuggerPaused,
    DebuggerResumed,
    Event,
    FrameSummary,
    LogLevel,
    LogMessage,
    MachineState,
    MachineStateChanged,
    ScreenCaptured,
    ScriptFinished,
    ScriptStarted,
    StatementFinished,
    StatementStarted,
    WaitProgress,
)

EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ConsoleOutput,
        MachineStateChanged,
        LogMessage,
        BlockOpened,
        BlockClosed,
        ScriptStarted,
        StatementStarted,
        StatementFinished,
        ScriptFinished,
        DebuggerPaused,
        DebuggerResumed,
        WaitProgress,
        ScreenCaptured,
    )
}


def encode_event(event: Event, *, console_first: int | None = None) -> dict[str, Any]:
    """One event as a JSON-ready dict: `type`, `t` (monotonic seconds) and its fields.

    For a ConsoleOutput, `console_first` is the number of its first line in
    the node's console log; the text itself is not included.
    """
    kind = type(event).__name__
    if isinstance(event, ConsoleOutput):
        return {"type": kind, "t": event.timestamp, "machine": event.machine,
                "first": console_first if console_first is not None else 0, "count": len(event.lines)}
    fields: dict[str, Any] = {"type": kind, "t": event.timestamp}
    for item in dataclasses.fields(event):
        if item.name == "timestamp":
            continue
        value = getattr(event, item.name)
        if isinstance(value, (MachineState, LogLevel)):
            value = value.name
        elif item.name == "stack":
            value = [dataclasses.asdict(frame) for frame in value]
        elif isinstance(value, bytes):
            # A screen's PNG: JSON has no bytes, so it travels as base64.
            value = {"base64": base64.b64encode(value).decode("ascii")}
        fields[item.name] = value
    return fields


def decode_event(data: dict[str, Any], console_lines: tuple[str, ...] = ()) -> Event:
    """The event a dict from `encode_event` stands for.

    A ConsoleOutput gets `console_lines` (the caller reads them from the
    console log).  Unknown types and fields raise EventDecodeError.
    """
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventDecodeError(f"unknown event type {kind!r}")
    timestamp = float(data.get("t", 0.0))
    if cls is ConsoleOutput:
        return ConsoleOutput(machine=str(data.get("machine", "")), lines=console_lines, timestamp=timestamp)
    names = {item.name for item in dataclasses.fields(cls)}
    # `wall` is the record's wall-clock time of the event, not a field.
    values = {key: value for key, value in data.items() if key not in ("type", "t", "wall")}
    unknown = set(values) - names
    if unknown:
        raise EventDecodeError(f"{kind}: unknown fields {', '.join(sorted(unknown))}")
    try:
        if "state" in values:
            values["state"] = MachineState[values["state"]]
        if "level" in values:
            values["level"] = LogLevel[values["level"]]
        if "stack" in values:
            values["stack"] = tuple(FrameSummary(**frame) for frame in values["stack"])
        for key, value in values.items():
            if isinstance(value, dict) and set(value) == {"base64"}:
                values[key] = base64.b64decode(value["base64"], validate=True)
        return cls(**values, timestamp=timestamp)  # type: ignore[no-any-return]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise EventDecodeError(f"{kind}: {exc}") from None
