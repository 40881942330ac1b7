"""The job lifecycle feed (/api/events): jobs created and finished, and running jobs growing.

Lifecycle events are rows of `job_events`, so their ids are resumable: a dashboard that
reconnects with Last-Event-ID gets every creation and finish it missed. Growth is not stored
per append (that would double the write load); it travels as `progress` events without an id,
at most once a second, built from the hints this process sees. A dashboard that missed some
growth catches up from the next progress event or from /api/jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream import sse
from logstream.server.live.broker import Hint
from logstream.server.live.streams import Grant, Streams
from logstream.server.store import queries

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0
MAX_TRACKED = 10_000


class Events:
    """Wakes /api/events streams on new lifecycle events and tracks line-count growth."""

    def __init__(
        self, engine: AsyncEngine, streams: Streams, *, page_lines: int, heartbeat: float
    ) -> None:
        self.engine = engine
        self.streams = streams
        self.page_lines = page_lines
        self.heartbeat = heartbeat
        self.head = 0
        self.version = 0
        # job_id -> (line_count, version of the change)
        self.progress: dict[int, tuple[int, int]] = {}
        self._waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_hint(self, hint: Hint) -> None:
        """Record growth; ring the bell for a new lifecycle event."""
        if not hint.finished and hint.line_count > 0:
            known = self.progress.get(hint.job_id)
            if known is None or hint.line_count > known[0]:
                self.version += 1
                self.progress[hint.job_id] = (hint.line_count, self.version)
                if len(self.progress) > MAX_TRACKED:
                    self._prune()
        if hint.event_id > self.head:
            self.saw_event(hint.event_id)

    def saw_event(self, event_id: int) -> None:
        """The store has lifecycle events up to `event_id`: wake the streams."""
        self.head = max(self.head, event_id)
        waiter, self._waiter = self._waiter, asyncio.get_running_loop().create_future()
        if not waiter.done():
            waiter.set_result(None)

    def _prune(self) -> None:
        oldest = self.version - MAX_TRACKED // 2
        self.progress = {k: v for k, v in self.progress.items() if v[1] > oldest}

    def changed_since(self, version: int) -> list[dict[str, int]]:
        """Jobs whose line count grew after `version`."""
        return [
            {"id": job_id, "line_count": count}
            for job_id, (count, changed) in self.progress.items()
            if changed > version
        ]

    async def stream(
        self, cursor: int, retry_ms: int, grant: Grant | None = None
    ) -> AsyncIterator[bytes]:
        """Lifecycle events after `cursor`, then live; never raises (see tail.follow). A lapsed
        `grant` ends it with `event: signed_out` (it wakes at least every PROGRESS_INTERVAL)."""
        streams = self.streams
        seen = self.version
        last_write = time.monotonic()
        streams.count += 1
        if grant is not None:
            streams.grants.add(grant)
        try:
            yield sse.retry(retry_ms)
            while True:
                if streams.closing:
                    yield sse.comment("server shutting down") + sse.retry(retry_ms)
                    return
                if grant is not None and grant.lapsed is not None:
                    yield sse.named_event("signed_out", {"reason": grant.lapsed})
                    return
                waiter = self._waiter
                async with self.engine.connect() as conn:
                    rows = await queries.read_job_events(conn, cursor, self.page_lines)
                if rows:
                    out = []
                    for event_id, kind, job in rows:
                        payload = job.to_json()
                        payload["kind"] = kind
                        out.append(sse.named_event("job", payload, event_id=event_id))
                    cursor = rows[-1][0]
                    yield b"".join(out)
                    last_write = time.monotonic()
                    continue
                await asyncio.wait(
                    (waiter, streams.closing_future),
                    timeout=PROGRESS_INTERVAL,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if self.version > seen:
                    changed = self.changed_since(seen)
                    seen = self.version
                    if changed:
                        yield sse.named_event("progress", {"jobs": changed})
                        last_write = time.monotonic()
                        continue
                if time.monotonic() - last_write >= self.heartbeat:
                    yield sse.comment("ping")
                    last_write = time.monotonic()
        except Exception:
            log.exception("lifecycle stream failed after event %d", cursor)
            yield sse.comment("stream error; reconnect to resume") + sse.retry(retry_ms)
        finally:
            streams.count -= 1
            if grant is not None:
                streams.grants.discard(grant)
