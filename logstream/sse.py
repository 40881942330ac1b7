"""The event-stream wire format (WHATWG HTML, "Server-sent events"). Pure; no I/O, no Quart.

A stored line never contains LF. It may contain CR (progress bars), which the event-stream
format treats as a line end, so each CR-separated segment becomes its own `data:` field: the
client joins data fields with LF, so it sees LF exactly where the line had CR.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


def line_event(no: int, text: str) -> bytes:
    """One log line as an event whose id is the line number."""
    if "\r" in text:
        data = "".join("data: " + segment + "\n" for segment in text.split("\r"))
    else:
        data = "data: " + text + "\n"
    return ("id: %d\n%s\n" % (no, data)).encode("utf-8")


def line_events(rows: Iterable[Sequence[Any]]) -> bytes:
    """Many (no, ts, text) rows as consecutive line events, encoded once (the replay path)."""
    parts = []
    for no, _ts, text in rows:
        if "\r" in text:
            data = "".join("data: " + segment + "\n" for segment in text.split("\r"))
            parts.append("id: %d\n%s\n" % (no, data))
        else:
            parts.append("id: %d\ndata: %s\n\n" % (no, text))
    return "".join(parts).encode("utf-8")


def named_event(name: str, payload: Any, event_id: int | None = None) -> bytes:
    """A non-line event (e.g. `end`) with a compact JSON body on one data field."""
    head = "event: " + _field_value(name) + "\n"
    if event_id is not None:
        head = "id: %d\n" % event_id + head
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return (head + "data: " + body + "\n\n").encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment: keeps proxies from timing the stream out; EventSource never sees it."""
    return (": " + _field_value(text) + "\n\n").encode("utf-8") if text else b":\n\n"


def retry(milliseconds: int) -> bytes:
    """Set the client's reconnect delay. Dispatches no event (it has no data field)."""
    return b"retry: %d\n\n" % max(0, int(milliseconds))


def _field_value(text: str) -> str:
    # Field values may not contain line ends; names and comments are ours, so fold them away.
    return text.replace("\r", " ").replace("\n", " ")


def parse_last_event_id(value: str | None) -> int | None:
    """A Last-Event-ID we accept is plain ASCII digits; anything else is rejected (None)."""
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)
