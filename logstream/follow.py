"""Live tails: replay from the store in pages, then follow new lines as they are committed.

Shared fan-out. For each job that has live readers in this process the hub keeps one `Feed`:
when a hint says the job grew, the feed reads the new lines from the store once (one query for
all its readers), encodes each line once, and keeps the most recent ones in a ring. Each reader
(`follow`) keeps its own cursor, "the last line I sent", and on every wake-up takes *all* the
lines after its cursor in one chunk, so a busy job costs one write per reader per wake-up, not
one per line. A reader that has fallen behind the ring (a slow client, or a replay from line 1)
pages from the store at its own pace; nothing is queued per reader, so memory stays bounded.

No line can fall between replay and live tail: a reader takes the feed's current waiter (arms
its doorbell) *before* it looks for lines, so a line committed after the look rings a bell the
reader is already holding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from . import sse, store
from .broker import Hint
from .feed import Feed, Format, JobEnd, encode_text
from .lifecycle import Lifecycle

log = logging.getLogger(__name__)



class Hub:
    """All the feeds of this process, the hints that drive them, and the shutdown signal."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        page_lines: int,
        feed_lines: int,
        heartbeat: float,
        poll_interval: float,
    ) -> None:
        self.engine = engine
        self.page_lines = page_lines
        self.feed_lines = feed_lines
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self.feeds: dict[int, Feed] = {}
        self.streams = 0
        self.closing_future: asyncio.Future[None] | None = None
        self.lifecycle: Lifecycle | None = None
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the periodic re-check that makes a lost hint cost latency, not lines."""
        self.closing_future = asyncio.get_running_loop().create_future()
        self.lifecycle = Lifecycle(self)
        async with self.engine.connect() as conn:
            self.lifecycle.head = await store.last_job_event_id(conn)
        if self.poll_interval > 0:
            self._poller = asyncio.create_task(self._poll(), name="logstream-hub-poll")
        self._ticker = asyncio.create_task(self._tick(), name="logstream-hub-tick")

    async def stop(self) -> None:
        """Tell every stream to end, stop polling, drop the feeds."""
        self.begin_shutdown()
        for task in (self._poller, self._ticker):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._poller = self._ticker = None
        for feed in list(self.feeds.values()):
            feed.close()
        self.feeds.clear()

    def begin_shutdown(self) -> None:
        """Wake every stream so it sends its farewell and ends."""
        if self.closing_future is not None and not self.closing_future.done():
            self.closing_future.set_result(None)
        for feed in list(self.feeds.values()):
            feed.ring()

    @property
    def closing(self) -> bool:
        """True once shutdown began."""
        return self.closing_future is not None and self.closing_future.done()

    def on_hint(self, hint: Hint) -> None:
        """Broker listener: pass the hint to the job's feed, if anyone here is reading it."""
        feed = self.feeds.get(hint.job_id)
        if feed is not None:
            feed.hint(hint.line_count, hint.finished)
        if self.lifecycle is not None:
            self.lifecycle.on_hint(hint)

    def acquire(self, job_id: int) -> Feed:
        """The job's feed, created on first use; pair with release()."""
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = Feed(self, job_id)
            feed.hint(0, False)
        feed.readers += 1
        return feed

    def release(self, feed: Feed) -> None:
        """A reader is done with the feed; the last one out closes it."""
        feed.readers -= 1
        if feed.readers <= 0 and self.feeds.get(feed.job_id) is feed:
            del self.feeds[feed.job_id]
            feed.close()

    async def _tick(self) -> None:
        # Wake idle streams now and then so each can send its heartbeat: one timer for all,
        # instead of a timeout per stream per wait.
        while True:
            await asyncio.sleep(self.heartbeat / 3)
            for feed in list(self.feeds.values()):
                feed.ring()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.recheck()

    async def recheck(self) -> None:
        """Look at the store for what hints may have missed: live jobs and lifecycle events."""
        try:
            async with self.engine.connect() as conn:
                states = await store.job_states(conn, list(self.feeds))
                head = await store.last_job_event_id(conn)
        except Exception:
            log.warning("re-check of live jobs failed", exc_info=True)
            return
        if self.lifecycle is not None and head > self.lifecycle.head:
            self.lifecycle.saw_event(head)
        for job_id, state in states.items():
            feed = self.feeds.get(job_id)
            if feed is not None:
                feed.hint(state.line_count, state.status in store.STATUSES_FINAL)

    def recheck_soon(self) -> None:
        """Schedule a re-check (e.g. after the broker reconnected)."""
        task = asyncio.create_task(self.recheck())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def follow(
        self,
        job_id: int,
        cursor: int,
        fmt: Format,
        *,
        live: bool,
        end: JobEnd | None,
        retry_ms: int,
    ) -> AsyncIterator[bytes]:
        """Yield the job's lines after `cursor` as encoded chunks, then follow it if `live`.

        `end` is the job's end when the caller already knows it finished. The SSE format
        closes with an `end` event; a heartbeat comment goes out whenever the stream idles.
        Never raises (a stream that raises is left hanging on HTTP/2): errors end the stream
        with a retry hint so the client reconnects and resumes by id.
        """
        assert self.closing_future is not None, "hub not started"
        feed: Feed | None = None
        waiter: asyncio.Future[None] | None = None
        rung = False  # woken by a ring and not yet waiting again (see Feed.served)
        prefetch = _Prefetch(self)
        self.streams += 1
        quiet = self.heartbeat * 2 / 3  # with ticks every heartbeat/3: silence <= heartbeat
        last_write = time.monotonic()
        try:
            if fmt == "sse":
                yield sse.retry(retry_ms)
            while True:
                if self.closing:
                    if fmt == "sse":
                        yield sse.comment("server shutting down") + sse.retry(retry_ms)
                    return
                if feed is None and end is None and live:
                    feed = self.acquire(job_id)
                if feed is not None and (waiter is None or waiter.done()):
                    rung = waiter is not None
                    waiter = feed.arm()  # kept armed while we write, re-armed once rung
                chunk: bytes | None = None
                if feed is not None:
                    got = feed.chunk_after(cursor, self.page_lines, fmt)
                    if got is not None:
                        chunk, cursor = got
                if chunk is None:
                    chunk, cursor = await self._page(job_id, cursor, fmt, prefetch)
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
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception:
            log.exception("stream of job %d failed at line %d", job_id, cursor)
            if fmt == "sse":
                yield sse.comment("stream error; reconnect to resume") + sse.retry(retry_ms)
        finally:
            prefetch.cancel()
            if waiter is not None:
                waiter.cancel()
            self.streams -= 1
            if feed is not None:
                self.release(feed)

    async def _page(
        self, job_id: int, cursor: int, fmt: Format, prefetch: _Prefetch
    ) -> tuple[bytes, int]:
        """The next page from the store, encoded; while it is sent, the one after is read."""
        rows = await prefetch.take(job_id, cursor)
        if not rows:
            return b"", cursor
        last = rows[-1][0]
        if len(rows) == self.page_lines:
            prefetch.start(job_id, last)  # a full page: more is likely; overlap I/O with sending
        if fmt == "text":
            return encode_text([text for _no, _ts, text in rows]), last
        return sse.line_events(rows), last

    async def _read(self, job_id: int, after: int) -> Sequence[Sequence[Any]]:
        async with self.engine.connect() as conn:
            return await store.read_lines(conn, job_id, after, self.page_lines)


class _Prefetch:
    """At most one page read ahead for one stream (replay of a long log)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.task: asyncio.Task[Sequence[Sequence[Any]]] | None = None
        self.after = -1

    def start(self, job_id: int, after: int) -> None:
        """Begin reading the page after `after`."""
        self.cancel()
        self.after = after
        self.task = asyncio.create_task(self.hub._read(job_id, after))

    async def take(self, job_id: int, after: int) -> Sequence[Sequence[Any]]:
        """The page after `after`: the prefetched one if it matches, else read now."""
        task, self.task = self.task, None
        if task is not None and self.after == after:
            return await task
        if task is not None:
            task.cancel()
        return await self.hub._read(job_id, after)

    def cancel(self) -> None:
        """Drop a read ahead (the stream ends or moved elsewhere)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
