"""SSE readers on raw asyncio (Protocol) connections: cheap counters and full verifiers.

A *counter* never decodes the body: it scans the raw bytes (chunk-size lines and all) for the
`\\nid: ` markers, so a read of many events costs a few C-level searches. Every event's id line
starts with `\\nid: ` (after the previous event's blank line or after a chunk-size line's CRLF),
and a text line never holds LF, so the markers are exact. Per read it checks that the first id
is the one after the last id seen, and that the number of markers equals last - first + 1, so a
gap or a duplicate between reads or at a read's edges is caught; the latency of the *oldest*
event of each read is taken from its `t=` stamp (an upper bound for the others in that read).

A *verifier* de-chunks the body, splits it into events on blank lines and checks every id and
every byte of every text; its latency figures cover every event it received.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from .common import line_text
from .httpc import Dechunker

ID_MARK = b"\nid: "
END_MARK = b"event: end"
LINGER_RST = struct.pack("ii", 1, 0)
MAX_ERRORS = 10


class ReaderSet:
    """Readers that are waited on together: all ready, all done, all reached line N."""

    def __init__(self, size: int) -> None:
        self.size = size
        loop = asyncio.get_running_loop()
        self.ready = 0
        self.failed = 0
        self.done = 0
        self._ready_future: asyncio.Future[None] = loop.create_future()
        self._done_future: asyncio.Future[None] = loop.create_future()
        # Reach tracking: how many readers have seen line `reach_target`, and when the last did.
        self.reach_target: int | None = None
        self.reached = 0
        self.reach_last_ns = 0
        self._reach_future: asyncio.Future[None] | None = None
        self.errors: list[str] = []

    def expect(self, size: int) -> None:
        """Grow the set (readers are opened in batches)."""
        self.size = size
        self._check()

    def on_ready(self) -> None:
        self.ready += 1
        self._check()

    def on_failed(self, why: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(why)
        self._check()

    def on_done(self) -> None:
        self.done += 1
        self._check()

    def _check(self) -> None:
        if self.ready + self.failed >= self.size and not self._ready_future.done():
            self._ready_future.set_result(None)
        if self.done >= self.size and not self._done_future.done():
            self._done_future.set_result(None)

    def reset_ready(self) -> None:
        """Wait for a new batch: the future resolves when ready + failed reaches size again."""
        if self._ready_future.done():
            self._ready_future = asyncio.get_running_loop().create_future()
        self._check()

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._ready_future), timeout)
            return True
        except TimeoutError:
            return False

    async def wait_done(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._done_future), timeout)
            return True
        except TimeoutError:
            return False

    def arm_reach(self, target: int) -> asyncio.Future[None]:
        """Start counting readers that have received line `target`."""
        self.reach_target = target
        self.reached = 0
        self.reach_last_ns = 0
        self._reach_future = asyncio.get_running_loop().create_future()
        return self._reach_future

    def on_reach(self, now: int) -> None:
        self.reached += 1
        self.reach_last_ns = now
        if self.reached >= self.size and self._reach_future and not self._reach_future.done():
            self._reach_future.set_result(None)


class SseCounter:
    """Counts events by scanning raw bytes for `\\nid: `; checks ids are consecutive."""

    __slots__ = (
        "next",
        "count",
        "bytes",
        "rest",
        "end_id",
        "end_seen",
        "gaps",
        "dups",
        "bad",
        "errors",
        "block_lat",
        "last_ns",
        "rset",
        "reached_target",
    )

    def __init__(
        self, rset: ReaderSet | None = None, first: int = 1, block_latency: bool = True
    ) -> None:
        self.next = first  # the id expected next
        self.count = 0
        self.bytes = 0
        self.rest = b""
        self.end_id: int | None = None
        self.end_seen = False
        self.gaps = 0
        self.dups = 0
        self.bad = 0
        self.errors: list[str] = []
        self.block_lat: list[int] | None = [] if block_latency else None
        self.last_ns = 0  # when the last line event arrived
        self.rset = rset
        self.reached_target = -1

    def _error(self, why: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(why)

    def feed(self, data: bytes, now: int) -> None:
        self.bytes += len(data)
        buf = self.rest + data if self.rest else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.rest = buf
            return
        stop = cut + 1  # the block ends before the blank line's second LF: it starts the rest
        self.rest = buf[stop:]
        n = buf.count(ID_MARK, 0, stop)
        if not n:
            return
        first = buf.find(ID_MARK, 0, stop)
        first_nl = buf.index(b"\n", first + 5)
        first_id = int(buf[first + 5 : first_nl])
        last = buf.rfind(ID_MARK, 0, stop)
        if last == first:
            last_nl, last_id = first_nl, first_id
        else:
            last_nl = buf.index(b"\n", last + 5)
            last_id = int(buf[last + 5 : last_nl])
        if buf.startswith(END_MARK, last_nl + 1):
            # The end event (always the last thing sent) carries id: <line_count>.
            self.end_seen = True
            self.end_id = last_id
            n -= 1
            if not n:
                return
            last = buf.rfind(ID_MARK, 0, last)
            last_nl = buf.index(b"\n", last + 5)
            last_id = int(buf[last + 5 : last_nl])
        if first_id != self.next:
            if first_id > self.next:
                self.gaps += 1
                self._error(f"gap: expected {self.next}, got {first_id}")
            else:
                self.dups += 1
                self._error(f"duplicate: expected {self.next}, got {first_id}")
        if last_id - first_id + 1 != n:
            self.bad += 1
            self._error(f"{n} events for ids {first_id}..{last_id}")
        self.next = last_id + 1
        self.count += n
        self.last_ns = now
        lat = self.block_lat
        if lat is not None and buf.startswith(b"data: t=", first_nl + 1):
            start = first_nl + 9
            lat.append(now - int(buf[start : buf.index(b" ", start)]))
        rset = self.rset
        if rset is not None and rset.reach_target is not None:
            if last_id >= rset.reach_target and self.reached_target != rset.reach_target:
                self.reached_target = rset.reach_target
                rset.on_reach(now)

    @property
    def ok(self) -> bool:
        return not (self.gaps or self.dups or self.bad)


class SseVerifier:
    """Parses every event of a de-framed SSE body; checks every id and text; all latencies."""

    __slots__ = (
        "next",
        "count",
        "bytes",
        "buf",
        "end_id",
        "end_seen",
        "gaps",
        "dups",
        "bad",
        "bad_text",
        "errors",
        "lat",
        "last_ns",
        "rset",
        "reached_target",
        "check_text",
    )

    def __init__(
        self, rset: ReaderSet | None = None, first: int = 1, check_text: bool = True
    ) -> None:
        self.next = first
        self.count = 0
        self.bytes = 0
        self.buf = b""
        self.end_id: int | None = None
        self.end_seen = False
        self.gaps = 0
        self.dups = 0
        self.bad = 0
        self.bad_text = 0
        self.errors: list[str] = []
        self.lat: list[int] = []
        self.last_ns = 0
        self.rset = rset
        self.reached_target = -1
        self.check_text = check_text

    def _error(self, why: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(why)

    def feed(self, payload: bytes, now: int) -> None:
        self.bytes += len(payload)
        buf = self.buf + payload if self.buf else payload
        events = buf.split(b"\n\n")
        self.buf = events.pop()
        nxt = self.next
        lat = self.lat
        got = 0
        for event in events:
            if event[:4] != b"id: ":
                if event[:7] == b"retry: " or event[:1] == b":":
                    continue
                self.bad += 1
                self._error(f"unexpected event {event[:60]!r}")
                continue
            nl = event.find(b"\n")
            no = int(event[4:nl])
            if event[nl + 1 : nl + 7] != b"data: ":
                if event.startswith(END_MARK, nl + 1):
                    self.end_seen = True
                    self.end_id = no
                    continue
                self.bad += 1
                self._error(f"event {no} has no data line")
                continue
            if no != nxt:
                if no > nxt:
                    self.gaps += 1
                    self._error(f"gap: expected {nxt}, got {no}")
                else:
                    self.dups += 1
                    self._error(f"duplicate: expected {nxt}, got {no}")
            nxt = no + 1
            got += 1
            text = event[nl + 7 :]
            if text[:2] == b"t=":
                t = int(text[2 : text.index(b" ")])
                lat.append(now - t)
                if self.check_text and text != line_text(t, no):
                    self.bad_text += 1
                    self._error(f"line {no}: unexpected text {text[:90]!r}")
            elif self.check_text:
                self.bad_text += 1
                self._error(f"line {no}: unexpected text {text[:90]!r}")
        self.next = nxt
        if got:
            self.count += got
            self.last_ns = now
            rset = self.rset
            if rset is not None and rset.reach_target is not None:
                if nxt - 1 >= rset.reach_target and self.reached_target != rset.reach_target:
                    self.reached_target = rset.reach_target
                    rset.on_reach(now)

    @property
    def ok(self) -> bool:
        return not (self.gaps or self.dups or self.bad or self.bad_text)


Sink = SseCounter | SseVerifier


class H1SseStream(asyncio.Protocol):
    """One HTTP/1.1 connection holding one SSE GET; hands the body to its sink."""

    def __init__(
        self, request: bytes, sink: Sink, rset: ReaderSet, *, close_on_end: bool = True
    ) -> None:
        self.request = request
        self.sink = sink
        self.rset = rset
        self.close_on_end = close_on_end
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.head_done = False
        self.status = 0
        self.finished = False
        self.closed_early = False
        self.dechunker: Dechunker | None = None
        self.framed = isinstance(sink, SseVerifier)  # a verifier needs the de-chunked payload

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Close with RST: thousands of readers must not leave TIME_WAIT ports behind.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if not self.head_done:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.head_done = True
            first_line = head.split(b"\r\n", 1)[0].split(b" ")
            self.status = int(first_line[1]) if len(first_line) > 1 else 0
            if self.status != 200:
                self.rset.on_failed(f"status {self.status}: {head[:200]!r}")
                self._finish()
                return
            if self.framed:
                if b"chunked" in head.lower():
                    self.dechunker = Dechunker()
            self.rset.on_ready()
            if not data:
                return
        if self.dechunker is not None:
            data = self.dechunker.feed(data)
        self.sink.feed(data, now)
        if self.sink.end_seen and not self.finished:
            self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.rset.on_done()
        if self.close_on_end and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self.closed_early = True
            if not self.head_done:
                self.rset.on_failed(f"closed before the answer: {exc!r}")
            self.finished = True
            self.rset.on_done()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def sse_request(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


async def open_h1_streams(
    host: str,
    port: int,
    paths: Sequence[str],
    sink_factory: Callable[[int, ReaderSet], Sink],
    *,
    batch: int = 500,
    concurrency: int = 250,
    local_hosts: Sequence[str] = (),
    timeout: float = 120.0,
    rset: ReaderSet | None = None,
) -> tuple[ReaderSet, list[H1SseStream], float]:
    """Open one SSE stream per path, `batch` at a time; returns (set, streams, seconds).

    Waits for each batch to get its 200 answers before the next (bounded by `timeout` overall).
    `local_hosts` spreads the client ends over several loopback addresses (127.0.0.N).
    """
    loop = asyncio.get_running_loop()
    rset = rset or ReaderSet(0)
    streams: list[H1SseStream] = []
    started = time.monotonic()
    deadline = started + timeout
    gate = asyncio.Semaphore(concurrency)

    async def open_one(i: int) -> None:
        sink = sink_factory(i, rset)
        proto = H1SseStream(sse_request(host, port, paths[i]), sink, rset)
        streams.append(proto)
        kwargs: dict[str, Any] = {}
        if local_hosts:
            kwargs["local_addr"] = (local_hosts[i % len(local_hosts)], 0)
        async with gate:
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: proto, host, port, **kwargs),
                    max(0.1, deadline - time.monotonic()),
                )
            except (TimeoutError, OSError) as error:
                rset.on_failed(f"connect: {error!r}")
                proto.finished = True
                rset.on_done()

    base = rset.size
    for start in range(0, len(paths), batch):
        stop = min(len(paths), start + batch)
        rset.expect(base + stop)
        rset.reset_ready()
        await asyncio.gather(*(open_one(i) for i in range(start, stop)))
        if not await rset.wait_ready(max(0.1, deadline - time.monotonic())):
            raise TimeoutError(
                f"only {rset.ready} of {stop} streams answered within {timeout} s"
                f" ({rset.failed} failed: {rset.errors[:3]})"
            )
    return rset, streams, time.monotonic() - started


def close_streams(streams: Sequence[H1SseStream]) -> None:
    for stream in streams:
        stream.abort()


def summarize_sinks(sinks: Sequence[Sink]) -> dict[str, Any]:
    """Gaps, duplicates and other problems over all readers, with a few examples."""
    errors: list[str] = []
    for sink in sinks:
        errors.extend(sink.errors[:2])
        if len(errors) >= MAX_ERRORS:
            break
    return {
        "readers": len(sinks),
        "events": sum(s.count for s in sinks),
        "gaps": sum(s.gaps for s in sinks),
        "duplicates": sum(s.dups for s in sinks),
        "inconsistent": sum(s.bad for s in sinks),
        "bad_text": sum(getattr(s, "bad_text", 0) for s in sinks),
        "examples": errors[:MAX_ERRORS],
    }
