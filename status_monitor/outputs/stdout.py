"""Events on stdout: the text format (a few lines per update) or one JSON object a line."""

from __future__ import annotations

import sys
from datetime import timezone
from typing import IO, Protocol

import orjson

from status_monitor.model import Event, utcnow


def format_text(event: Event) -> str:
    when = (event.occurred_at or event.received_at or utcnow()).astimezone(timezone.utc)
    head = f"[{when:%Y-%m-%d %H:%M:%S} UTC] Provider: {event.provider}"
    if event.product:
        head += f" | Product: {event.product}"
    message = " ".join(event.message.split())
    lines = [head, f"Status: {event.status}" + (f" - {message}" if message else "")]
    incident = " ".join(part for part in (event.title, event.url) if part)
    if incident:
        lines.append(f"Incident: {incident}")
    if event.event_type:
        lines.append(f"Event: {event.event_type}")
    if event.note:
        lines.append(f"Note: {event.note}")
    return "\n".join(lines) + "\n\n"


def format_json(event: Event) -> str:
    return orjson.dumps(event.to_dict()).decode() + "\n"


class Output(Protocol):
    def emit(self, event: Event) -> None: ...


class StreamOutput:
    """Writes each event to a stream (stdout) and flushes, so a pipe sees it at once."""

    def __init__(self, json_lines: bool, stream: IO[str] | None = None) -> None:
        self._format = format_json if json_lines else format_text
        self._stream = stream

    def emit(self, event: Event) -> None:
        stream = self._stream or sys.stdout
        stream.write(self._format(event))
        stream.flush()
