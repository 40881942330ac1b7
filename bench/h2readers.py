"""SSE readers over HTTP/2 (TLS, ALPN h2) with the `h2` library on raw asyncio connections.

Each connection carries several streams (one GET per reader). The body of an HTTP/2 stream has
no chunk framing, so the same sinks as for HTTP/1.1 take the DATA frames' payload directly.
Flow control windows are opened wide (16 MiB per stream, 1 GiB per connection) and every DATA
frame is acknowledged, so the client never throttles the server.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from .readers import LINGER_RST, ReaderSet, Sink

STREAM_WINDOW = 1 << 24
CONNECTION_WINDOW = 1 << 30


class H2SseConnection(asyncio.Protocol):
    """One TLS connection speaking HTTP/2, holding one SSE stream per path."""

    def __init__(
        self, authority: str, paths: Sequence[str], sinks: Sequence[Sink], rset: ReaderSet
    ) -> None:
        self.authority = authority.encode()
        self.paths = paths
        self.sinks = list(sinks)
        self.rset = rset
        self.transport: asyncio.Transport | None = None
        self.conn: h2.connection.H2Connection | None = None
        self.by_stream: dict[int, int] = {}
        self.finished: set[int] = set()
        self.ready: set[int] = set()
        self.alpn: str | None = None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            except OSError:
                pass
        ssl_object = transport.get_extra_info("ssl_object")
        self.alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if self.alpn != "h2":
            for i in range(len(self.paths)):
                self.rset.on_failed(f"ALPN chose {self.alpn!r}, not h2")
                self._done(i)
            transport.close()
            return
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        conn = self.conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        conn.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            }
        )
        conn.increment_flow_control_window(CONNECTION_WINDOW)
        for i, path in enumerate(self.paths):
            stream_id = conn.get_next_available_stream_id()
            self.by_stream[stream_id] = i
            conn.send_headers(
                stream_id,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", self.authority),
                    (b":path", path.encode()),
                    (b"accept", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
                end_stream=True,
            )
        transport.write(conn.data_to_send())

    def _done(self, index: int) -> None:
        if index not in self.finished:
            self.finished.add(index)
            self.rset.on_done()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        conn = self.conn
        if conn is None:
            return
        events = conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                index = self.by_stream[event.stream_id]
                sink = self.sinks[index]
                sink.feed(event.data, now)
                if event.flow_controlled_length:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if sink.end_seen:
                    self._done(index)
            elif isinstance(event, h2.events.ResponseReceived):
                index = self.by_stream[event.stream_id]
                status = dict(event.headers).get(b":status", b"0")
                if status == b"200":
                    self.ready.add(index)
                    self.rset.on_ready()
                else:
                    self.rset.on_failed(f"status {status!r}")
                    self._done(index)
            elif isinstance(event, h2.events.StreamEnded):
                self._done(self.by_stream[event.stream_id])
            elif isinstance(event, h2.events.StreamReset):
                index = self.by_stream[event.stream_id]
                if index not in self.ready:
                    self.rset.on_failed(f"stream reset {event.error_code!r}")
                self._done(index)
            elif isinstance(event, h2.events.ConnectionTerminated):
                for index in range(len(self.paths)):
                    self._done(index)
        out = conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
        if len(self.finished) == len(self.paths) and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for index in range(len(self.paths)):
            if index not in self.ready and index not in self.finished:
                self.rset.on_failed(f"connection lost: {exc!r}")
            self._done(index)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_h2_streams(
    host: str,
    port: int,
    context: ssl.SSLContext,
    paths: Sequence[str],
    sink_factory: Callable[[int, ReaderSet], Sink],
    connections: int,
    *,
    timeout: float = 60.0,
) -> tuple[ReaderSet, list[H2SseConnection], list[Sink], float]:
    """Open len(paths) streams spread evenly over `connections` TLS connections."""
    loop = asyncio.get_running_loop()
    rset = ReaderSet(len(paths))
    sinks = [sink_factory(i, rset) for i in range(len(paths))]
    started = time.monotonic()
    groups = [list(range(c, len(paths), connections)) for c in range(connections)]
    protos = [
        H2SseConnection(
            f"{host}:{port}", [paths[i] for i in group], [sinks[i] for i in group], rset
        )
        for group in groups
        if group
    ]

    async def connect(proto: H2SseConnection) -> None:
        await loop.create_connection(lambda: proto, host, port, ssl=context, server_hostname=host)

    await asyncio.wait_for(asyncio.gather(*(connect(p) for p in protos)), timeout)
    if not await rset.wait_ready(max(0.1, timeout - (time.monotonic() - started))):
        raise TimeoutError(f"only {rset.ready} of {len(paths)} HTTP/2 streams answered")
    return rset, protos, sinks, time.monotonic() - started


def client_context(cafile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    return context
