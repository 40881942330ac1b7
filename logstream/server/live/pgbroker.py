"""Hints across processes and hosts with PostgreSQL LISTEN/NOTIFY.

One dedicated asyncpg connection per process both listens and notifies (not one per
subscriber: the hub fans hints out in-process). A hint published here is delivered to local
listeners at once and sent as a NOTIFY for the other processes; our own NOTIFYs coming back are
skipped by backend pid. Notifications carry only hints, so if the connection drops, hints sent
meanwhile are lost: the broker reconnects with backoff and then calls `on_reconnect`, which the
hub answers by re-checking every live job in the store, so subscribers miss no lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from logstream.server import metrics
from logstream.server.live.broker import Hint, Listener
from logstream.server.store.driver import PG_NOTIFY, PG_PING

log = logging.getLogger(__name__)

CHANNEL = "logstream_hints"


def encode(hint: Hint) -> str:
    """A hint as a NOTIFY payload: `job:line_count:finished:event_id`."""
    return f"{hint.job_id}:{hint.line_count}:{int(hint.finished)}:{hint.event_id}"


def decode(payload: str) -> Hint | None:
    """Parse a payload; None for anything malformed (a stray NOTIFY on our channel)."""
    try:
        job, count, finished, event = payload.split(":")
        return Hint(int(job), int(count), finished == "1", int(event))
    except ValueError:
        return None


def asyncpg_dsn(url: str) -> str:
    """The libpq-style DSN asyncpg wants, from a SQLAlchemy URL."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresBroker:
    """LISTEN/NOTIFY broker; `start()` connects (and keeps reconnecting) in the background."""

    PING_EVERY = 5.0
    PING_TIMEOUT = 3.0

    def __init__(
        self,
        database_url: str,
        *,
        on_reconnect: Callable[[], None] | None = None,
        max_backoff: float = 2.0,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._listeners: list[Listener] = []
        self.on_reconnect = on_reconnect
        self._max_backoff = max_backoff
        self._conn: Any = None
        self._pid: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event | None = None
        self._send_lock: asyncio.Lock | None = None
        self.connects = 0

    async def start(self) -> None:
        """Connect now (so a bad URL fails start-up), then watch the connection."""
        self._lost = asyncio.Event()
        self._send_lock = asyncio.Lock()
        await self._connect()
        self._task = asyncio.create_task(self._keep_connected(), name="logstream-pg-broker")

    async def stop(self) -> None:
        """Stop reconnecting and close the connection."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._close()

    def listen(self, listener: Listener) -> None:
        """Call `listener` for every hint, local or from another process."""
        self._listeners.append(listener)

    async def publish(self, hint: Hint) -> None:
        """Deliver locally now; NOTIFY the others. A failed NOTIFY costs them latency only."""
        self._deliver(hint)
        conn = self._conn
        if conn is None:
            return
        assert self._send_lock is not None
        try:
            async with self._send_lock:
                await conn.execute(PG_NOTIFY, CHANNEL, encode(hint))
        except Exception:
            log.warning("NOTIFY failed; other processes will see job %d by re-check", hint.job_id)
            self._mark_lost()

    # --- internals ----------------------------------------------------------------------------

    def _deliver(self, hint: Hint) -> None:
        for listener in self._listeners:
            try:
                listener(hint)
            except Exception:
                log.exception("hint listener failed")

    def _on_notify(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == self._pid:
            return  # our own NOTIFY: already delivered locally
        hint = decode(payload)
        if hint is not None:
            self._deliver(hint)

    def _on_terminate(self, _conn: Any) -> None:
        self._mark_lost()

    def _mark_lost(self) -> None:
        if self._lost is not None:
            self._lost.set()

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn, timeout=10)
        conn.add_termination_listener(self._on_terminate)
        await conn.add_listener(CHANNEL, self._on_notify)
        self._pid = conn.get_server_pid()
        self._conn = conn
        self.connects += 1
        assert self._lost is not None
        self._lost.clear()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()

    async def _ping(self) -> None:
        # A connection can die without a FIN or RST (a partition, a failover): ask it.
        conn = self._conn
        if conn is None:
            self._mark_lost()
            return
        assert self._send_lock is not None
        try:
            async with self._send_lock:
                await asyncio.wait_for(conn.execute(PG_PING), self.PING_TIMEOUT)
        except Exception:
            self._mark_lost()

    async def _keep_connected(self) -> None:
        assert self._lost is not None
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.PING_EVERY)
            except TimeoutError:
                await self._ping()
                continue
            log.warning("LISTEN connection lost; reconnecting")
            await self._close()
            backoff = 0.05
            while True:
                try:
                    await self._connect()
                    break
                except Exception as error:
                    log.warning("reconnect failed (%s); retrying in %.2fs", error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
            log.info("LISTEN connection back; re-checking live jobs")
            metrics.BROKER_RECONNECTS.inc()
            if self.on_reconnect is not None:
                self.on_reconnect()
