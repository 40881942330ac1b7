"""One live job's recent lines, read from the store once and shared by all its readers here.

See tail.py for how readers use a feed, and ARCHITECTURE.md for why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream import sse
from logstream.protocol import STATUSES_FINAL
from logstream.server.store import driver, queries

log = logging.getLogger(__name__)

Format = Literal["sse", "text"]

# Wake-ups are coalesced under load: a feed rings its readers at most once per linger, so
# that with many readers each one writes more lines less often instead of spending the core on
# one write per batch. The linger is the larger of readers * LINGER_PER_READER and
# ROUND_SHARE times the time the last ring took to be served (from the ring until every reader
# it woke was waiting again), capped at MAX_LINGER: when writing to every reader takes longer
# (a slower or busier machine), rings space out so that appends and new streams still get
# their share of the loop.
LINGER_PER_READER = 50e-6
ROUND_SHARE = 2.0
MAX_LINGER = 0.15
# A ring wakes this many readers per turn of the event loop: between slices the loop serves
# other sockets (an append waiting behind a ring of 10,000 readers would wait for all of them).
RING_SLICE = 128


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

    def __init__(
        self, engine: AsyncEngine, job_id: int, *, page_lines: int, feed_lines: int
    ) -> None:
        self.engine = engine
        self.job_id = job_id
        self.page_lines = page_lines
        self.feed_lines = feed_lines
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
        self._loop = asyncio.get_running_loop()
        # Readers waiting for the next ring, one future each: a reader that is cancelled while
        # waiting cancels only its own (no shield, no shared future to protect).
        self._sleepers: list[asyncio.Future[None]] = []
        self._fetching: asyncio.Task[None] | None = None
        self._chunk_key: tuple[int, int] = (0, 0)
        self._chunk: bytes = b""
        self._last_ring = 0.0
        self._round_start = 0.0
        self._round_size = 0  # readers the last ring woke
        self._round_left = 0  # of those, how many must still wait again for it to count served
        self.round_time = 0.0
        self._ring_pending: asyncio.TimerHandle | None = None

    # --- for readers ------------------------------------------------------------------------

    def arm(self) -> asyncio.Future[None]:
        """A doorbell for one reader: resolved the next time the feed rings (new lines, the
        end, a heartbeat tick or shutdown). Arm before looking for lines, so none falls between.
        """
        future = self._loop.create_future()
        self._sleepers.append(future)
        return future

    def served(self) -> None:
        """A reader the last ring woke has written what it had and waits again."""
        if self._round_left > 0:
            self._round_left -= 1
            if self._round_left == 0:
                self.round_time = time.monotonic() - self._round_start

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

    # --- fed by hints ----------------------------------------------------------------------

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
        try:
            while True:
                if self.known < 0:
                    async with self.engine.connect() as conn:
                        states = await queries.job_states(conn, [self.job_id])
                    state = states.get(self.job_id)
                    if state is None:
                        self.known = 0
                        self.end = JobEnd("deleted", None, 0)
                        self.ring()
                        return
                    self.known = state.line_count
                    self.base = state.line_count + 1
                    self.target = max(self.target, state.line_count)
                    if state.status in STATUSES_FINAL:
                        self.end_pending = True
                    self.ring()
                if self.target > self.known:
                    async with self.engine.connect() as conn:
                        rows = await queries.read_lines(
                            conn, self.job_id, self.known, self.page_lines
                        )
                    if rows:
                        self._add(rows)
                        self._ring_soon()
                        await asyncio.sleep(0)
                        continue
                    # A hint ran ahead of the store (should not happen); do not spin.
                    self.target = self.known
                if self.end_pending and self.end is None:
                    async with self.engine.connect() as conn:
                        states = await queries.job_states(conn, [self.job_id])
                    state = states.get(self.job_id)
                    if state is None:
                        self.end = JobEnd("deleted", None, self.known)
                    elif state.line_count > self.known:
                        self.target = state.line_count
                        continue
                    elif state.status in STATUSES_FINAL:
                        self.end = JobEnd(state.status, state.exit_code, state.line_count)
                    else:
                        self.end_pending = False
                    self.ring()
                if self.target <= self.known:
                    return
        except Exception as error:
            # The store hiccuped: readers keep their cursors; the next hint or re-check retries.
            if driver.is_store_error(error):  # an outage, not a bug: one line, no traceback
                log.warning(
                    "feed %d could not read new lines, store unavailable: %s",
                    self.job_id,
                    driver.describe_error(error),
                )
            else:
                log.exception("feed %d could not read new lines", self.job_id)
        finally:
            self._fetching = None

    def _add(self, rows: Sequence[Sequence[Any]]) -> None:
        first = rows[0][0]
        if first != self.known + 1 or rows[-1][0] - first + 1 != len(rows):
            # A gap: the size limit dropped lines this feed had not read yet (their marker is
            # stored at the last dropped number). The ring holds consecutive lines only, so it
            # restarts after the last gap; readers before it page from the store.
            start = len(rows) - 1
            while start > 0 and rows[start - 1][0] == rows[start][0] - 1:
                start -= 1
            rows = rows[start:]
            self.texts.clear()
            self.events.clear()
            self.base = rows[0][0]
            self._chunk_key = (0, 0)
        for no, _ts, text in rows:
            self.texts.append(text)
            self.events.append(sse.line_event(no, text))
        self.known = rows[-1][0]
        limit = self.feed_lines
        if len(self.texts) > limit + limit // 4:  # trim in steps, not on every batch
            excess = len(self.texts) - limit
            del self.texts[:excess]
            del self.events[:excess]
            self.base += excess

    def _ring_soon(self) -> None:
        """Ring now, or, if the last ring was very recent and many readers wait, a bit later."""
        if self._ring_pending is not None:
            return  # the pending ring will show these lines too
        linger = min(
            MAX_LINGER, max(self.readers * LINGER_PER_READER, ROUND_SHARE * self.round_time)
        )
        delay = self._last_ring + linger - time.monotonic()
        if delay <= 0:
            self.ring()
        else:
            self._ring_pending = asyncio.get_running_loop().call_later(delay, self.ring)

    def ring(self) -> None:
        """Wake every reader waiting on this feed (new lines, the end, a tick or shutdown)."""
        if self._ring_pending is not None:
            self._ring_pending.cancel()
            self._ring_pending = None
        now = time.monotonic()
        if self._round_left * 10 > self._round_size:
            # Most of the last ring is not served yet: it takes at least this long.
            self.round_time = max(self.round_time, now - self._round_start)
        self._last_ring = self._round_start = now
        sleepers, self._sleepers = self._sleepers, []
        self._round_size = sum(1 for future in sleepers if not future.done())
        # Served when all but 1% are waiting again: a few readers stuck on slow sockets do not
        # hold the measurement up.
        self._round_left = self._round_size - self._round_size // 100
        self._wake(sleepers, 0)

    def _wake(self, sleepers: list[asyncio.Future[None]], start: int) -> None:
        stop = start + RING_SLICE
        for future in sleepers[start:stop]:
            if not future.done():
                future.set_result(None)
        if stop < len(sleepers):
            self._loop.call_soon(self._wake, sleepers, stop)

    def close(self) -> None:
        """Stop fetching; the hub drops this feed."""
        if self._fetching is not None:
            self._fetching.cancel()
        self.ring()
