"""Hypercorn's HTTP/2 protocol, hardened against stream abuse (CVE-2023-44487 and the limit).

Stock Hypercorn starts the app for every HEADERS frame, even one the client resets in the same
packet: a rapid-reset flood queues tens of thousands of requests for the store, and reset
streams pile up in the priority tree until the 1001st insert raises and kills the connection
without GOAWAY (as does h2's own TooManyStreamsError at SETTINGS_MAX_CONCURRENT_STREAMS,
hypercorn #335). `GuardedH2Protocol` changes four things:

- A stream the client resets within the same read as its HEADERS is never started: no task,
  no store work (the app side, server/http/asgi.py, drops a stream reset a little later
  before it asks the store anything).
- Premature resets (the client resets a stream before it was answered, or within PREMATURE
  seconds of opening it) are counted per connection by a token bucket (RESET_BURST, refilled
  at RESET_RATE per second); past it the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is
  closed. A browser leaving a page resets streams open for a while: those are not counted.
- A stream past the advertised MAX_CONCURRENT_STREAMS gets RST_STREAM(REFUSED_STREAM), which
  clients retry, and the streams already open go on.
- What one read brings is fed to h2 in slices of SLICE_BYTES with a turn of the event loop
  between them, so a connection that floods frames cannot hold the loop for a whole read.

Relies on Hypercorn 0.17 to 0.18 (`hypercorn.protocol.H2Protocol`: `handle`, `_handle_events`,
`_create_stream`, `_priority_updated`, `streams` (whose HTTPStream has `state` and a wall-clock
`start_time`), `stream_buffers`, `priority`, `connection`, and
`hypercorn.protocol.ProtocolWrapper` looking the class up by that module name) and on h2 4
(the inbound stream limit is read from `local_settings.max_concurrent_streams`). `install()`
checks that the hooks are there and refuses to start otherwise; pyproject pins Hypercorn below
0.19 so an upgrade is a deliberate step that reruns tests/server/test_h2_abuse.py. Only the
asyncio worker is supported (the turn of the loop is `asyncio.sleep(0)`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import h2.events
import h2.settings
import hypercorn.protocol
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState
from priority.priority import PriorityTree, TooManyStreamsError

log = logging.getLogger(__name__)

# A reset this soon (s) after the stream opened is premature: its work was wasted.
PREMATURE = 1.0
# A page reloaded or left while its requests are in flight resets a few dozen young streams at
# once, and not many times a second; a flood resets thousands per second. (Netty allows 200
# resets per 30 s; Envoy acts on a connection after 500 streams, half of them reset early.)
RESET_BURST = 200
RESET_RATE = 20.0  # premature resets per second, refilled into the burst
# About 60 HEADERS+RST_STREAM pairs: a few ms of h2's parsing between two turns of the loop.
SLICE_BYTES = 4096
# How often (s) at most a connection closed for abuse is logged (the count goes with it).
LOG_EVERY = 10.0

_HOOKS = ("handle", "_handle_events", "_create_stream", "_priority_updated", "_flush")


class _UnenforcedLimit(h2.settings.Settings):
    """Settings whose MAX_CONCURRENT_STREAMS is advertised but not enforced by h2 itself.

    h2 answers a stream past the limit by raising TooManyStreamsError, which ends the whole
    connection; the protocol refuses that one stream instead (RST_STREAM REFUSED_STREAM).
    """

    @property
    def max_concurrent_streams(self) -> int:
        """What h2 checks inbound streams against: no limit (the protocol checks)."""
        return 2**32 + 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _AbuseLog:
    """Process-wide, rate-limited warning for connections closed for abuse."""

    def __init__(self) -> None:
        self.pending = 0
        self.last = -LOG_EVERY

    def closed(self, client: tuple[str, int] | None) -> None:
        """Count one closed connection; log when the last log line is old enough."""
        self.pending += 1
        now = time.monotonic()
        if now - self.last >= LOG_EVERY:
            log.warning(
                "HTTP/2: closed %d connection(s) for too many stream resets "
                "(GOAWAY ENHANCE_YOUR_CALM), latest from %s",
                self.pending,
                client,
            )
            self.pending = 0
            self.last = now


_abuse_log = _AbuseLog()


class GuardedH2Protocol(H2Protocol):
    """H2Protocol with cheap resets, a reset rate limit and refused (not fatal) extra streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream_limit = int(self.config.h2_max_concurrent_streams)
        # Same values (sent by initiate()), but h2 no longer ends the connection at the limit.
        values = cast(dict[SettingCodes, int], dict(self.connection.local_settings.items()))
        self.connection.local_settings = _UnenforcedLimit(client=False, initial_values=values)
        # Room for the open streams plus reset ones the send task has not dropped yet (the
        # stock tree holds 1000: the insert past it raised and killed the connection).
        self.tree_limit = 2 * self.stream_limit + 100
        self.priority = PriorityTree(maximum_streams=self.tree_limit + 1)
        self.reset_tokens = float(RESET_BURST)
        self.reset_refilled = time.monotonic()
        self.calmed = False
        self.last_started = 0  # the highest stream handed to the app, for GOAWAY

    async def handle(self, event: Event) -> None:
        """Feed received data to h2 slice by slice (a loop turn between); drop it once closed."""
        if not isinstance(event, RawData):
            await super().handle(event)
            return
        data = event.data
        for start in range(0, len(data), SLICE_BYTES):
            if self.calmed or self.closed:
                return  # the connection is closing: what the client still sends is not read
            if start:
                await asyncio.sleep(0)
            await super().handle(RawData(data=data[start : start + SLICE_BYTES]))

    def _spend_reset(self) -> bool:
        """Take one reset from the connection's budget; False once it is spent."""
        now = time.monotonic()
        self.reset_tokens = min(
            float(RESET_BURST), self.reset_tokens + (now - self.reset_refilled) * RESET_RATE
        )
        self.reset_refilled = now
        self.reset_tokens -= 1
        return self.reset_tokens >= 0

    async def _calm_down(self) -> None:
        """GOAWAY(ENHANCE_YOUR_CALM) and close: the client resets streams faster than allowed."""
        self.calmed = True
        self.connection.close_connection(
            error_code=ErrorCodes.ENHANCE_YOUR_CALM,
            last_stream_id=max(self.last_started, max(self.streams, default=0)),
        )
        await self._flush()
        _abuse_log.closed(self.client)
        await self.send(Closed())

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        """Drop streams reset in this same read, refuse those past the limit, then go on."""
        reset_here = {
            event.stream_id
            for event in events
            if isinstance(event, h2.events.StreamReset) and event.remote_reset
        }
        dropped: set[int] = set()
        kept: list[h2.events.Event] = []
        started = 0
        open_streams = len(self.streams)
        for event in events:
            stream_id = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.StreamReset) and event.remote_reset:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    open_streams -= 1
                if _premature(stream) and not self._spend_reset():
                    await self._calm_down()  # what is left of the read is not acted upon
                    return
            if isinstance(event, h2.events.RequestReceived):
                if stream_id in reset_here:
                    dropped.add(event.stream_id)  # reset before it could start: never start it
                    continue
                if open_streams >= self.stream_limit or len(self.stream_buffers) >= self.tree_limit:
                    self.connection.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                    dropped.add(event.stream_id)
                    continue
                open_streams += 1
                started = max(started, event.stream_id)
            elif stream_id in dropped:
                if isinstance(event, h2.events.DataReceived):
                    # Its data still counts against the connection's window: give it back.
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                continue  # its data, end, reset or priority: nothing was started for it
            kept.append(event)
        await super()._handle_events(kept)
        self.last_started = max(self.last_started, started)

    async def _priority_updated(self, event: h2.events.PriorityUpdated) -> None:
        """Reprioritise open streams only, under open streams only.

        Hypercorn adds a tree node for a PRIORITY naming any other stream and never removes it;
        enough of those fill the tree, and the next stream's insert raises and ends the
        connection. HTTP/2 priorities are advisory (RFC 9113 deprecates them).
        """
        if event.stream_id not in self.stream_buffers:
            return
        if event.depends_on and event.depends_on not in self.stream_buffers:
            event.depends_on = 0
        try:
            await super()._priority_updated(event)
        except TooManyStreamsError:
            pass


def _premature(stream: object | None) -> bool:
    """Whether a client's reset of `stream` wasted the server's work on it.

    True for a stream reset in the read that opened it (None), one not answered yet (under
    load a flood's streams wait longer than PREMATURE for the store), or a young one.
    """
    if stream is None or getattr(stream, "state", None) is ASGIHTTPState.REQUEST:
        return True
    started = getattr(stream, "start_time", None)
    return not isinstance(started, float) or time.time() - started < PREMATURE


def install() -> None:
    """Make Hypercorn use GuardedH2Protocol for every HTTP/2 connection of this process."""
    missing = [name for name in _HOOKS if not hasattr(H2Protocol, name)]
    if missing or getattr(hypercorn.protocol, "H2Protocol", None) is None:
        raise RuntimeError(
            f"h2guard: this Hypercorn lacks {missing or 'protocol.H2Protocol'}; "
            "check the supported versions in logstream/server/h2guard.py"
        )
    # ProtocolWrapper looks the class up in this module on every new connection.
    setattr(hypercorn.protocol, "H2Protocol", GuardedH2Protocol)  # noqa: B010
