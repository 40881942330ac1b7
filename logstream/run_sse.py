"""Reading an event stream on the client side (WHATWG HTML, "Server-sent events"). Pure; no I/O.

The parser follows the browser's rules, so `logstream tail -f` sees exactly what an
EventSource would: CR, LF and CR LF all end a line (also when split across chunks); a leading
BOM is dropped; comments and blocks without data dispatch nothing; data fields join with LF;
`id` sets the last event id, kept across events that have none. Our log lines never contain LF
but may contain CR, which the server sends as separate data fields: `line_text` maps back.
"""

from __future__ import annotations

import codecs
import dataclasses
import re

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
