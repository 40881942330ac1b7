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
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from . import sse, store
from .broker import Hint
from .lifecycle import Lifecycle

log = logging.getLogger(__name__)

Format = Literal["sse", "text"]


@dataclasses.dataclass(frozen=True)
class JobEnd:
    """How a job ended: what the `end` event carries."""

    status: str
    exit_code: int | None
    line_count: int

    def to_json(self) -> dict[str, object]:
        """The `end` event's data."""
        return dataclasses.asdict(self)


def encode_text(texts: list[str]) -> bytes:
    """Lines in the raw text format: each ends with LF."""
    return ("\n".join(texts) + "\n").encode("utf-8")


class Feed:
    """The recent lines of one live job, read once and shared by all its readers here."""

    def __init__(self, hub: Hub, job_id: int) -> None:
        self.hub = hub
        self.job_id = job_id
        self.readers = 0
        # Ring: lines base .. base+len(texts)-1. `known` is the last line read into the ring;
        # -1 until the first look at the store.
        self.base = 1
        self.texts: list[str] = []
        self.events: list[bytes] = []
        self.known = -1
        self.target = 0
        self.end: JobEnd | None = None
        self.end_pending = False
        self._waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fetching: asyncio.Task[None] | None = None
        self._chunk_key: tuple[int, int] = (0, 0)
        self._chunk: bytes = b""

    # --- for readers ------------------------------------------------------------------------

    def waiter(self) -> asyncio.Future[None]:
        """The doorbell: resolved the next time the feed gains lines or ends."""
        return self._waiter

    def chunk_after(self, cursor: int, limit: int, fmt: Format) -> tuple[bytes, int] | None:
        """The encoded lines after `cursor` (at most `limit`) and the new cursor.

        None when the ring cannot answer (the reader is behind it, or the feed has not looked
        at the store yet): the reader pages from the store instead.
        """
        if self.known < 0 or cursor + 1 < self.base:
            return None
        if cursor >= self.known:
            return b"", cursor
        start = cursor + 1 - self.base
        stop = min(self.known - self.base + 1, start + limit)
        if fmt == "text":
            return encode_text(self.texts[start:stop]), self.base + stop - 1
        key = (start + self.base, stop + self.base)
        if key != self._chunk_key:
            # Readers that keep up share the same cursor: join their chunk once for all.
            self._chunk_key = key
            self._chunk = b"".join(self.events[start:stop])
        return self._chunk, self.base + stop - 1

    # --- fed by the hub ---------------------------------------------------------------------

    def hint(self, line_count: int, finished: bool) -> None:
        """The job has `line_count` lines (and may have ended): fetch what is new."""
        if line_count > self.target:
            self.target = line_count
        if finished:
            self.end_pending = True
        if self._fetching is None and (
            self.known < 0 or self.target > self.known or (self.end_pending and self.end is None)
        ):
            self._fetching = asyncio.create_task(self._fetch(), name=f"feed-{self.job_id}")

    async def _fetch(self) -> None:
        hub = self.hub
        try:
            while True:
                if self.known < 0:
                    async with hub.engine.connect() as conn:
                        states = await store.job_states(conn, [self.job_id])
                    state = states.get(self.job_id)
                    if state is None:
                        self.known = 0
                        self.end = JobEnd("deleted", None, 0)
                        self._ring()
                        return
                    self.known = state.line_count
                    self.base = state.line_count + 1
                    self.target = max(self.target, state.line_count)
                    if state.status in store.STATUSES_FINAL:
                        self.end_pending = True
                    self._ring()
                if self.target > self.known:
                    async with hub.engine.connect() as conn:
                        rows = await store.read_lines(
                            conn, self.job_id, self.known, hub.page_lines
                        )
                    if rows:
                        self._add(rows)
                        self._ring()
                        await asyncio.sleep(0)
                        continue
                    # A hint ran ahead of the store (should not happen); do not spin.
                    self.target = self.known
                if self.end_pending and self.end is None:
                    async with hub.engine.connect() as conn:
                        states = await store.job_states(conn, [self.job_id])
                    state = states.get(self.job_id)
                    if state is None:
                        self.end = JobEnd("deleted", None, self.known)
                    elif state.line_count > self.known:
                        self.target = state.line_count
                        continue
                    elif state.status in store.STATUSES_FINAL:
                        self.end = JobEnd(state.status, state.exit_code, state.line_count)
                    else:
                        self.end_pending = False
                    self._ring()
                if self.target <= self.known:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store hiccuped: readers keep their cursors; the next hint or re-check retries.
            log.exception("feed %d could not read new lines", self.job_id)
        finally:
            self._fetching = None

    def _add(self, rows: list[tuple[int, int, str]]) -> None:
        for no, _ts, text in rows:
            self.texts.append(text)
            self.events.append(sse.line_event(no, text))
        self.known = rows[-1][0]
        excess = len(self.texts) - self.hub.feed_lines
        if excess > 0:
            del self.texts[:excess]
            del self.events[:excess]
            self.base += excess

    def _ring(self) -> None:
        waiter, self._waiter = self._waiter, asyncio.get_running_loop().create_future()
        if not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop fetching; the hub drops this feed."""
        if self._fetching is not None:
            self._fetching.cancel()
        self._ring()


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

    async def start(self) -> None:
        """Start the periodic re-check that makes a lost hint cost latency, not lines."""
        self.closing_future = asyncio.get_running_loop().create_future()
        self.lifecycle = Lifecycle(self)
        async with self.engine.connect() as conn:
            self.lifecycle.head = await store.last_job_event_id(conn)
        if self.poll_interval > 0:
            self._poller = asyncio.create_task(self._poll(), name="logstream-hub-poll")

    async def stop(self) -> None:
        """Tell every stream to end, stop polling, drop the feeds."""
        self.begin_shutdown()
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
            self._poller = None
        for feed in list(self.feeds.values()):
            feed.close()
        self.feeds.clear()

    def begin_shutdown(self) -> None:
        """Wake every stream so it sends its farewell and ends."""
        if self.closing_future is not None and not self.closing_future.done():
            self.closing_future.set_result(None)

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
        self.streams += 1
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
                waiter = feed.waiter() if feed is not None else None
                chunk: bytes | None = None
                if feed is not None:
                    got = feed.chunk_after(cursor, self.page_lines, fmt)
                    if got is not None:
                        chunk, cursor = got
                if chunk is None:
                    chunk, cursor = await self._page(job_id, cursor, fmt)
                if chunk:
                    yield chunk
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
                done, _ = await asyncio.wait(
                    (waiter, self.closing_future),
                    timeout=self.heartbeat,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done and fmt == "sse":
                    yield sse.comment("ping")
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception:
            log.exception("stream of job %d failed at line %d", job_id, cursor)
            if fmt == "sse":
                yield sse.comment("stream error; reconnect to resume") + sse.retry(retry_ms)
        finally:
            self.streams -= 1
            if feed is not None:
                self.release(feed)

    async def _page(self, job_id: int, cursor: int, fmt: Format) -> tuple[bytes, int]:
        async with self.engine.connect() as conn:
            rows = await store.read_lines(conn, job_id, cursor, self.page_lines)
        if not rows:
            return b"", cursor
        if fmt == "text":
            return encode_text([text for _no, _ts, text in rows]), rows[-1][0]
        return b"".join(sse.line_event(no, text) for no, _ts, text in rows), rows[-1][0]
