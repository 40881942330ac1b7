"""Retention: finished jobs older than LOGSTREAM_RETENTION are deleted, a little at a time.

Pruning goes through the writer in short transactions (PRUNE_CHUNK lines each), so an append
waits at most for one of them, never for a whole job of millions of lines. On SQLite the freed
pages go back to the file system afterwards (incremental auto-vacuum, set by migration 0003),
so the database file shrinks. With several instances on PostgreSQL each may sweep: the work is
idempotent (a chunk deleted twice deletes nothing), so no coordination is needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from logstream.config import Settings
from logstream.server.services import Services
from logstream.server.store import queries

log = logging.getLogger(__name__)

PRUNE_CHUNK = 1000  # lines per transaction
JOBS_PER_LOOK = 100
VACUUM_PAGES = 2000  # pages given back per step (8 MB at 4 KB pages)
SWEEP_INTERVAL = 600.0  # seconds between background sweeps


@dataclasses.dataclass
class PruneReport:
    """What a prune did (or, dry, would do)."""

    jobs: int = 0
    lines: int = 0


async def prune(
    svc: Services, older_than: float, *, keep_per_name: int = 0, dry_run: bool = False
) -> PruneReport:
    """Delete finished jobs that ended more than `older_than` seconds ago (but the newest
    `keep_per_name` of each name), their lines first, in short transactions."""
    cutoff = int((time.time() - older_than) * 1000)
    report = PruneReport()
    seen: set[int] = set()
    while True:
        async with svc.engine.connect() as conn:
            found = await queries.prunable_jobs(conn, cutoff, keep_per_name, JOBS_PER_LOOK)
        found = [(job_id, count) for job_id, count in found if job_id not in seen]
        if not found:
            break
        for job_id, count in found:
            seen.add(job_id)
            report.jobs += 1
            report.lines += count
            if dry_run:
                continue
            # One short transaction per chunk: appends queued meanwhile go in between.
            while await svc.writer.prune_lines(job_id, PRUNE_CHUNK) > 0:
                pass
    if not dry_run and report.jobs and svc.settings.is_sqlite:
        while await svc.writer.reclaim_space(VACUUM_PAGES) > 0:
            pass
    return report


async def prune_store(
    settings: Settings, older_than: float, *, keep_per_name: int = 0, dry_run: bool = False
) -> PruneReport:
    """`logstream prune`: start the store's services, prune, stop (migrating SQLite first)."""
    if settings.should_auto_migrate:
        from logstream.server.store.migrate import upgrade

        upgrade(settings.database_url)
    svc = await Services.start(settings)
    try:
        return await prune(svc, older_than, keep_per_name=keep_per_name, dry_run=dry_run)
    finally:
        await svc.stop()


async def sweep_forever(svc: Services) -> None:
    """Prune by the configured retention now and every SWEEP_INTERVAL seconds."""
    retention = svc.settings.retention_seconds
    assert retention is not None
    while True:
        try:
            report = await prune(svc, retention, keep_per_name=svc.settings.retention_keep)
            if report.jobs:
                log.info("retention: deleted %d jobs (%d lines)", report.jobs, report.lines)
        except Exception as error:  # the store is away: the next sweep tries again
            log.warning("retention sweep failed: %s", error)
        await asyncio.sleep(SWEEP_INTERVAL)
