"""The event-stream wire format (WHATWG HTML, "Server-sent events"), both ways. Pure; no I/O.

Writing (the server): a stored line never contains LF. It may contain CR (progress bars), which
the event-stream format treats as a line end, so each CR-separated segment becomes its own
`data:` field: the client joins data fields with LF, so it sees LF exactly where the line had CR.

Reading (`logstream tail -f`): `SSEParser` follows the browser's rules, so the CLI sees exactly
what an EventSource would: CR, LF and CR LF all end a line (also when split across chunks); a
leading BOM is dropped; comments and blocks without data dispatch nothing; data fields join
with LF; `id` sets the last event id, kept across events that have none. `line_text` maps the
LF that joined CR-split data fields back to CR.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from logstream import logtext


def line_event(no: int, text: str) -> bytes:
    """One log line as an event whose id is the line number."""
    if "\r" in text:
        data = "".join("data: " + segment + "\n" for segment in text.split("\r"))
    else:
        data = "data: " + text + "\n"
    return f"id: {no}\n{data}\n".encode()


def line_events(rows: Iterable[Sequence[Any]]) -> bytes:
    """Many (no, ts, text) rows as consecutive line events, encoded once (the replay path)."""
    parts = []
    for no, _ts, text in rows:
        if "\r" in text:
            data = "".join("data: " + segment + "\n" for segment in text.split("\r"))
            parts.append(f"id: {no}\n{data}\n")
        else:
            parts.append(f"id: {no}\ndata: {text}\n\n")
    return "".join(parts).encode("utf-8")


def named_event(name: str, payload: Any, event_id: int | None = None) -> bytes:
    """A non-line event (e.g. `end`) with a compact JSON body on one data field."""
    head = "event: " + _field_value(name) + "\n"
    if event_id is not None:
        head = f"id: {event_id}\n" + head
    return (head + "data: ").encode("utf-8") + logtext.json_bytes(payload) + b"\n\n"


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


# --- reading ---------------------------------------------------------------------------------


_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclasses.dataclass(frozen=True)
class Event:
    """One dispatched event: its type, data (fields joined with LF) and the last event id."""

    type: str
    data: str
    last_event_id: str


def line_text(data: str) -> str:
    """The log line an event carries: the LF that joined CR-split data fields was a CR."""
    return data.replace("\n", "\r")


class SSEParser:
    """An incremental event-stream parser: feed it bytes, get the events completed so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._skip_lf = False
        self._data: list[str] = []
        self._type = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse a chunk of the stream; return the events it completed."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf:
            # The previous chunk ended with CR: an LF now is the second half of that CR LF.
            self._skip_lf = False
            text = text.removeprefix("\n")
        buffer = self._buffer + text
        events: list[Event] = []
        pos = 0
        for match in _LINE_END.finditer(buffer):
            self._line(buffer[pos : match.start()], events)
            pos = match.end()
        self._buffer = buffer[pos:]
        self._skip_lf = buffer.endswith("\r")
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if line == "":
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment (heartbeat)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self, events: list[Event]) -> None:
        self.last_event_id = self._id_buffer
        if not self._data:
            self._type = ""
            return
        events.append(Event(self._type or "message", "\n".join(self._data), self.last_event_id))
        self._data = []
        self._type = ""
