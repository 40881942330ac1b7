"""A reader's loop: replay a job's log from the store in pages, then follow it live.

Each reader keeps its own cursor, "the last line I sent", and on every wake-up takes *all* the
lines after it in one chunk from the job's shared feed, so a busy job costs one write per
reader per wake-up, not one per line. A reader that has fallen behind the feed's ring (a slow
client, or a replay from line 1) pages from the store at its own pace; nothing is queued per
reader, so memory stays bounded.

No line can fall between replay and live tail: a reader arms its doorbell with the feed
*before* it looks for lines, so a line committed after the look rings a bell the reader is
already holding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from logstream import sse
from logstream.server.live.feed import Feed, Format, JobEnd, encode_text
from logstream.server.live.hub import Hub
from logstream.server.live.streams import Grant
from logstream.server.store import driver, queries

log = logging.getLogger(__name__)


class StreamCut(Exception):
    """A text stream that cannot be completed (shutdown, a store failure): its response must
    end abnormally, never as a complete body, so the client sees an error and resumes by
    `after`. An SSE stream ends with a farewell instead (its client resumes by event id)."""


async def follow(
    hub: Hub,
    job_id: int,
    cursor: int,
    fmt: Format,
    *,
    live: bool,
    end: JobEnd | None,
    retry_ms: int,
    grant: Grant | None = None,
) -> AsyncIterator[bytes]:
    """Yield the job's lines after `cursor` as encoded chunks, then follow it if `live`.

    `end` is the job's end when the caller already knows it finished. The SSE format closes
    with an `end` event; a heartbeat comment goes out whenever the stream idles. On shutdown or
    an error an SSE stream ends with a retry hint, so the client reconnects and resumes by id
    (it never raises: a browser's EventSource must see an ended stream); a text stream raises
    StreamCut, which the app turns into an abnormal end (server/hyperhooks.py resets it on
    HTTP/2), since a text client cannot tell a complete body from a cut one otherwise.
    With a `grant` (the stream's credential may lapse), a lapse ends the stream: SSE with
    `event: signed_out` (no id, so a resume keeps its place), text with StreamCut.
    """
    streams = hub.streams
    feed: Feed | None = None
    waiter: asyncio.Future[None] | None = None
    rung = False  # woken by a ring and not yet waiting again (see Feed.served)
    prefetch = _Prefetch(hub, job_id)
    streams.count += 1
    quiet = hub.heartbeat * 2 / 3  # with ticks every heartbeat/3: silence <= heartbeat
    last_write = time.monotonic()
    if grant is not None:
        grant.job_id = job_id
        streams.grants.add(grant)
    try:
        if fmt == "sse":
            yield sse.retry(retry_ms)
        while True:
            if streams.closing:
                if fmt == "text":
                    raise StreamCut("the server is shutting down")
                yield sse.comment("server shutting down") + sse.retry(retry_ms)
                return
            if grant is not None and grant.lapsed is not None:
                if fmt == "text":
                    raise StreamCut(f"signed out ({grant.lapsed})")
                yield sse.named_event("signed_out", {"reason": grant.lapsed})
                return
            if feed is None and end is None and live:
                feed = hub.acquire(job_id)
            if feed is not None and (waiter is None or waiter.done()):
                rung = waiter is not None
                waiter = feed.arm()  # kept armed while we write, re-armed once rung
            chunk: bytes | None = None
            if feed is not None:
                got = feed.chunk_after(cursor, hub.page_lines, fmt)
                if got is not None:
                    chunk, cursor = got
            if chunk is None:
                chunk, cursor = await prefetch.page(cursor, fmt)
            if chunk:
                yield chunk
                last_write = time.monotonic()
                continue
            if end is None and feed is not None and feed.end is not None:
                end = feed.end
                if end.line_count > cursor:
                    continue  # lines the feed has not shown us yet: page them first
            if end is not None and cursor >= end.line_count:
                if fmt == "sse":
                    yield sse.named_event("end", end.to_json(), event_id=end.line_count)
                return
            if not live and end is None:
                return
            assert waiter is not None
            # The feed rings for new lines, its end, the heartbeat tick and shutdown.
            if rung and feed is not None:
                feed.served()
                rung = False
            await waiter
            if fmt == "sse" and time.monotonic() - last_write >= quiet:
                yield sse.comment("ping")
                last_write = time.monotonic()
    except StreamCut:
        raise
    except Exception as error:
        if driver.is_store_error(error):  # an outage, not a bug: one line, no traceback
            log.warning(
                "stream of job %d failed at line %d, store unavailable: %s",
                job_id,
                cursor,
                driver.describe_error(error),
            )
        else:
            log.exception("stream of job %d failed at line %d", job_id, cursor)
        if fmt == "text":
            raise StreamCut(f"reading the log failed after line {cursor}") from error
        yield sse.comment("stream error; reconnect to resume") + sse.retry(retry_ms)
    finally:
        prefetch.cancel()
        if waiter is not None:
            waiter.cancel()
        streams.count -= 1
        if grant is not None:
            streams.grants.discard(grant)
        if feed is not None:
            hub.release(feed)


class _Prefetch:
    """A stream's pages from the store, with at most one page read ahead (long replays)."""

    def __init__(self, hub: Hub, job_id: int) -> None:
        self.hub = hub
        self.job_id = job_id
        self.task: asyncio.Task[Sequence[Sequence[Any]]] | None = None
        self.after = -1

    async def page(self, cursor: int, fmt: Format) -> tuple[bytes, int]:
        """The next page from the store, encoded; while it is sent, the one after is read."""
        rows = await self._take(cursor)
        if not rows:
            return b"", cursor
        last: int = rows[-1][0]
        if len(rows) == self.hub.page_lines:
            self._start(last)  # a full page: more is likely; overlap I/O with sending
        if fmt == "text":
            return encode_text([text for _no, _ts, text in rows]), last
        return sse.line_events(rows), last

    async def _read(self, after: int) -> Sequence[Sequence[Any]]:
        async with self.hub.engine.connect() as conn:
            return await queries.read_lines(conn, self.job_id, after, self.hub.page_lines)

    def _start(self, after: int) -> None:
        self.cancel()
        self.after = after
        self.task = asyncio.create_task(self._read(after))

    async def _take(self, after: int) -> Sequence[Sequence[Any]]:
        task, self.task = self.task, None
        if task is not None and self.after == after:
            return await task
        if task is not None:
            task.cancel()
        return await self._read(after)

    def cancel(self) -> None:
        """Drop a read ahead (the stream ends or moved elsewhere)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
