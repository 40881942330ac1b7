"""The sweep: running jobs whose runner went away end, instead of running forever.

A runner appends while its command prints and sends a keepalive (an empty append) every 30 s
while it is silent; either records `last_seen_ms` on the job. Every few seconds each server
process asks the store for running jobs not heard from for LOGSTREAM_JOB_TIMEOUT (and for
jobs asked to cancel that their runner has not finished within LOGSTREAM_CANCEL_TIMEOUT) and
hands each to the writer, which re-checks it under the job's row lock before ending it with
one last line saying why and the status `lost` (or `canceled`). Tails get their `end` event
from the finish hint like any other end.

Several processes (workers, instances on one PostgreSQL) all sweep: the re-check under the
lock makes it idempotent, so a job is ended once, by whichever gets there first; the others
find it finished and leave it. Timestamps are each process's wall clock: clocks a few seconds
apart only move the moment by that much.
"""

from __future__ import annotations

import asyncio
import logging
import random

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.protocol import STATUS_LOST
from logstream.server import metrics
from logstream.server.store import queries
from logstream.server.store.queries import JobState, iso
from logstream.server.writer import Writer, now_ms

log = logging.getLogger(__name__)

# How many stale jobs one pass ends at most (the next pass takes the rest).
PASS_LIMIT = 200
# The longest pause between passes; shorter timeouts sweep more often (a fifth of them).
MAX_INTERVAL = 15.0
MIN_INTERVAL = 0.05


class Sweeper:
    """Ends running jobs not heard from for `job_timeout` s, or not finished `cancel_timeout`
    s after a cancel request. `job_timeout` 0: only the cancels are swept."""

    def __init__(
        self, engine: AsyncEngine, writer: Writer, *, job_timeout: float, cancel_timeout: float
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.job_timeout = job_timeout
        self.cancel_timeout = cancel_timeout
        shortest = min(t for t in (job_timeout, cancel_timeout) if t > 0)
        self.interval = max(MIN_INTERVAL, min(MAX_INTERVAL, shortest / 5))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sweeping in the background."""
        self._task = asyncio.create_task(self._loop(), name="logstream-sweep")

    async def stop(self) -> None:
        """Stop sweeping (a pass under way is cancelled; its writes are shielded)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            # Jitter: instances started together do not sweep in lockstep.
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))
            try:
                await self.sweep()
            except Exception as error:  # the next pass tries again
                log.warning("sweep of stale jobs failed: %s: %s", type(error).__name__, error)

    async def sweep(self) -> dict[int, str]:
        """One pass: end every stale job; returns {job id: status} of those this pass ended."""
        now = now_ms()
        lost_before = now - int(self.job_timeout * 1000) if self.job_timeout > 0 else None
        cancel_before = now - int(self.cancel_timeout * 1000)
        async with self.engine.connect() as conn:
            stale = await queries.stale_jobs(conn, lost_before, cancel_before, PASS_LIMIT)
        ended: dict[int, str] = {}
        for job_id in stale:
            status = await self.writer.expire(
                job_id, lambda state: self._verdict(state, lost_before, cancel_before)
            )
            if status is not None:
                ended[job_id] = status
                metrics.JOBS_ENDED_BY_SERVER.labels(status=status).inc()
                log.info("job %d ended as %s by the sweep", job_id, status)
        return ended

    def _verdict(
        self, state: JobState, lost_before: int | None, cancel_before: int
    ) -> tuple[str, str] | None:
        """Under the job's lock: end it (status, why) or leave it (heard from meanwhile).
        A job asked to cancel ends canceled either way: that is what its user asked for."""
        seen = state.last_seen_ms
        silent = lost_before is not None and seen is not None and seen < lost_before
        if state.cancel_ms is not None and (state.cancel_ms < cancel_before or silent):
            return (
                "canceled",
                f"logstream: job canceled: its runner did not end it after the cancel request"
                f" (at {iso(state.cancel_ms)}; LOGSTREAM_CANCEL_TIMEOUT is"
                f" {self.cancel_timeout:g} s)",
            )
        if silent:
            return (
                STATUS_LOST,
                f"logstream: job lost: no output and no keepalive from its runner for"
                f" {self.job_timeout:g} s (last heard from at {iso(seen)};"
                f" LOGSTREAM_JOB_TIMEOUT)",
            )
        return None
