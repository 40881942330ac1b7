"""A strict event-stream parser that follows the WHATWG HTML rules, for checking the wire.

Unlike convenience clients it reports only what a browser's EventSource would dispatch:
comments and retry-only blocks are not events; data fields join with LF; `id` sets the last
event id (kept across events that have none); CR, LF and CR LF all end a line.

It is deliberately written apart from the package's own parser (`logstream.sse.SSEParser`,
which `logstream tail -f` uses): this one is the check of that one (tests/test_sse_format.py
runs both over the same bytes), so it must not share its code or its mistakes.
"""

from __future__ import annotations

import codecs
import dataclasses


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    data: str
    last_event_id: str


class SSEParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._first = True
        self._pending_cr = False
        self._data: list[str] = []
        self._type = ""
        self._last_id = ""
        self._had_data = False
        self.retry: int | None = None
        self.comments: list[str] = []

    @property
    def last_event_id(self) -> str:
        return self._last_id

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._decoder.decode(chunk)
        if self._first and text:
            if text.startswith("\ufeff"):
                text = text[1:]
            self._first = False
        events: list[Event] = []
        for char in text:
            if self._pending_cr:
                self._pending_cr = False
                if char == "\n":
                    continue
            if char == "\r":
                self._pending_cr = True
                self._line(self._buffer, events)
                self._buffer = ""
            elif char == "\n":
                self._line(self._buffer, events)
                self._buffer = ""
            else:
                self._buffer += char
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if line == "":
            if self._had_data:
                data = "\n".join(self._data)
                events.append(Event(self._type or "message", data, self._last_id))
            self._data = []
            self._type = ""
            self._had_data = False
            return
        if line.startswith(":"):
            self.comments.append(line[1:])
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
            self._had_data = True
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry":
            if value and value.isascii() and value.isdigit():
                self.retry = int(value)
        # other fields are ignored
