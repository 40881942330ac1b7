"""The long-lived objects of a running server, created and closed together."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.config import Settings
from logstream.server import metrics
from logstream.server.auth import Access
from logstream.server.compaction import Compactor
from logstream.server.live.broker import Broker, MemoryBroker
from logstream.server.live.hub import Hub
from logstream.server.live.sweep import Sweeper
from logstream.server.masks import MaskCache
from logstream.server.store import queries
from logstream.server.store.db import create_engine
from logstream.server.writer import Writer

TOKEN_CACHE_SIZE = 10_000


@dataclasses.dataclass
class Services:
    """Engine, broker, writer, hub, sweep and access checks of one server process."""

    settings: Settings
    engine: AsyncEngine
    broker: Broker
    writer: Writer
    hub: Hub
    masks: MaskCache
    sweeper: Sweeper
    access: Access
    _tokens: dict[int, str] = dataclasses.field(default_factory=dict)
    compactor: Compactor | None = None
    _gauges: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        """Open the store, start the writer and the hub, connect the broker to the hub."""
        engine = create_engine(settings.database_url, pool_size=settings.pool_size)
        masks = MaskCache(engine, settings.mask_patterns, settings.runner_token)
        hub = Hub(
            engine,
            page_lines=settings.page_lines,
            feed_lines=settings.feed_lines,
            heartbeat=settings.heartbeat,
            poll_interval=settings.poll_interval,
        )
        broker: Broker
        if settings.is_sqlite:
            broker = MemoryBroker()
        else:
            from logstream.server.live.pgbroker import PostgresBroker

            broker = PostgresBroker(settings.database_url, on_reconnect=hub.recheck_soon)
        broker.listen(hub.on_hint)
        writer = Writer(engine, broker, max_job_bytes=settings.max_job_bytes)
        sweeper = Sweeper(
            engine,
            writer,
            job_timeout=settings.job_timeout,
            cancel_timeout=settings.cancel_timeout,
        )
        await broker.start()
        await hub.start()
        await writer.start()
        await sweeper.start()
        access = Access(engine, settings)
        if settings.auth == "tokens":
            access.start(hub)
        compactor = None
        if settings.compact:
            compactor = Compactor(
                engine, writer, codec=settings.compact_codec, sqlite=settings.is_sqlite
            )
            broker.listen(compactor.on_hint)
            await compactor.start()
        svc = cls(
            settings, engine, broker, writer, hub, masks, sweeper, access, compactor=compactor
        )
        if metrics.multiprocess():
            svc._gauges = asyncio.create_task(metrics.report_live(svc.live_counts))
        return svc

    def live_counts(self) -> tuple[int, int]:
        """Open streams and live feeds in this process (the /metrics gauges)."""
        return self.hub.streams.count, len(self.hub.feeds)

    async def stop(self) -> None:
        """End streams, stop the compactor, the sweep and the access watch, drain the writer,
        close the broker and the pool."""
        if self.compactor is not None:
            await self.compactor.stop()
        if self._gauges is not None:
            self._gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauges
        await self.access.stop()
        await self.hub.stop()
        await self.sweeper.stop()
        await self.writer.stop()
        metrics.flush()  # with several workers, the files keep this one's last counts
        await self.broker.stop()
        await self.engine.dispose()

    async def token_hash(self, job_id: int) -> str | None:
        """A job's token hash; cached, since it never changes."""
        cached = self._tokens.get(job_id)
        if cached is not None:
            return cached
        async with self.engine.connect() as conn:
            found = await queries.get_token_hash(conn, job_id)
        if found is not None:
            if len(self._tokens) >= TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[job_id] = found
        return found
