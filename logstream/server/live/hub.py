"""The live side of one process: a feed per job with live readers, the hints that drive them,
the periodic re-check that makes a lost hint cost latency instead of lines, and shutdown.

Shared fan-out. For each job that has live readers in this process the hub keeps one `Feed`:
when a hint says the job grew, the feed reads the new lines from the store once (one query for
all its readers), encodes each line once, and keeps the most recent ones in a ring. How a
reader uses it is in tail.py.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.protocol import STATUSES_FINAL
from logstream.server.live.broker import Hint
from logstream.server.live.events import Events
from logstream.server.live.feed import Feed
from logstream.server.live.streams import Streams
from logstream.server.store import driver, queries

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
        self.streams = Streams()
        self._events: Events | None = None
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._recheck_failing = False  # logged once when re-checks start failing, once at the end

    async def start(self) -> None:
        """Start the periodic re-check that makes a lost hint cost latency, not lines."""
        self.streams.start()
        self._events = Events(
            self.engine, self.streams, page_lines=self.page_lines, heartbeat=self.heartbeat
        )
        async with self.engine.connect() as conn:
            self._events.head = await queries.last_job_event_id(conn)
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
        self.streams.close()
        for feed in list(self.feeds.values()):
            feed.ring()

    @property
    def events(self) -> Events:
        """The lifecycle feed of /api/events."""
        assert self._events is not None, "hub not started"
        return self._events

    def on_hint(self, hint: Hint) -> None:
        """Broker listener: pass the hint to the job's feed, if anyone here is reading it."""
        feed = self.feeds.get(hint.job_id)
        if feed is not None:
            feed.hint(hint.line_count, hint.finished)
        if self._events is not None:
            self._events.on_hint(hint)

    def acquire(self, job_id: int) -> Feed:
        """The job's feed, created on first use; pair with release()."""
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = Feed(
                self.engine, job_id, page_lines=self.page_lines, feed_lines=self.feed_lines
            )
            feed.hint(0, False)
        feed.readers += 1
        return feed

    def wake(self, job_id: int) -> None:
        """Ring the job's feed, if anyone here reads it (its readers re-check their state)."""
        feed = self.feeds.get(job_id)
        if feed is not None:
            feed.ring()

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
                states = await queries.job_states(conn, list(self.feeds))
                head = await queries.last_job_event_id(conn)
        except Exception as error:
            # Once a second during an outage: one line when it starts, one when it ends.
            if not self._recheck_failing:
                self._recheck_failing = True
                if driver.is_store_error(error):
                    log.warning(
                        "re-check of live jobs failed, store unavailable: %s",
                        driver.describe_error(error),
                    )
                else:
                    log.warning("re-check of live jobs failed", exc_info=True)
            return
        if self._recheck_failing:
            self._recheck_failing = False
            log.warning("re-check of live jobs works again")
        if self._events is not None and head > self._events.head:
            self._events.saw_event(head)
        for job_id, state in states.items():
            feed = self.feeds.get(job_id)
            if feed is not None:
                feed.hint(state.line_count, state.status in STATUSES_FINAL)

    def recheck_soon(self) -> None:
        """Schedule a re-check (e.g. after the broker reconnected)."""
        task = asyncio.create_task(self.recheck())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
