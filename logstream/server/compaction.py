"""Compaction: a finished job's lines move into compressed chunks, a chunk per transaction.

When a job ends (its finished hint), its lines are moved from `lines` into `chunks` through the
writer, CHUNK_LINES per transaction (store/chunks.py: insert the chunk, delete its lines, so at
every commit each line is in exactly one place and every read sees all of them), oldest first.
An append therefore waits at most for one such step. A crash midway leaves a readable log,
partly in chunks, partly in lines; the scan at start (and every SCAN_INTERVAL seconds, which
also finds jobs finished through another process) finds finished jobs with rows still in
`lines` and goes on. On SQLite the freed pages go back to the file system afterwards.
With several instances each may compact a job; the steps serialise on the job's row lock and
one that finds nothing left moves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.server.errors import Unavailable
from logstream.server.live.broker import Hint
from logstream.server.store import chunks, queries
from logstream.server.writer import Writer

log = logging.getLogger(__name__)

SCAN_INTERVAL = 600.0  # seconds between scans for finished jobs not (fully) compacted
SCAN_PAGE = 500
VACUUM_PAGES = 2000  # pages given back per step on SQLite (8 MB at 4 KB pages)
RETRY_DELAY = 5.0  # after a store failure


class Compactor:
    """Compacts finished jobs in the background; start() and stop() with the services."""

    def __init__(
        self, engine: AsyncEngine, writer: Writer, *, codec: str = "zstd", sqlite: bool = True
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.codec = chunks.CODECS[codec]
        self.sqlite = sqlite
        self._wanted: set[int] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_hint(self, hint: Hint) -> None:
        """A broker listener: a job that finished is compacted next."""
        if hint.finished:
            self._wanted.add(hint.job_id)
            self._idle.clear()
            self._wake.set()

    async def start(self) -> None:
        """Start the background task (it scans first)."""
        self._task = asyncio.create_task(self._run(), name="logstream-compaction")

    async def stop(self) -> None:
        """Stop between steps (what is left is done after the next start)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_idle(self) -> None:
        """Until every job asked for so far is compacted (tests and the bench use it)."""
        await self._idle.wait()

    async def compact_job(self, job_id: int) -> int:
        """Compact one job now, step by step; returns the lines moved."""
        moved = 0
        while True:
            step = await self.writer.compact(job_id, self.codec)
            if step == 0:
                break
            moved += step
        if moved and self.sqlite:
            while await self.writer.reclaim_space(VACUUM_PAGES) > 0:
                pass
        return moved

    async def scan(self) -> int:
        """Queue every finished job with lines not yet compacted; how many."""
        found = 0
        after = 0
        while True:
            async with self.engine.connect() as conn:
                ids = await queries.uncompacted_jobs(conn, after, SCAN_PAGE)
            if not ids:
                break
            self._wanted.update(ids)
            found += len(ids)
            after = ids[-1]
        return found

    async def _run(self) -> None:
        scan_due = True
        while True:
            try:
                if scan_due:
                    if await self.scan():
                        log.info("compaction: %d finished jobs to compact", len(self._wanted))
                    scan_due = False
                while self._wanted:
                    job_id = min(self._wanted)
                    await self.compact_job(job_id)
                    self._wanted.discard(job_id)
            except Unavailable:
                return  # the writer is stopping
            except Exception as error:  # the store is away: try again a little later
                log.warning("compaction failed: %s", error)
                await asyncio.sleep(RETRY_DELAY)
                continue
            self._idle.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), SCAN_INTERVAL)
            except TimeoutError:
                scan_due = True
