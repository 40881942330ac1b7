"""The SQLite writer in-process: small batches commit on the loop, large ones in the writer
thread; another process's write lock is waited for off the loop; the WAL is checkpointed in
the writer thread so it does not grow without bound."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from logstream.server import writer
from logstream.server.services import Services
from logstream.server.store import queries


async def _stored(svc: Services, job_id: int) -> list[str]:
    async with svc.engine.connect() as conn:
        return [row[2] for row in await queries.read_lines(conn, job_id, 0, 1_000_000)]


async def test_small_and_large_batches_keep_order(services: Services) -> None:
    job, _token = await services.writer.create_job("j", {})
    big = writer.INLINE_MAX_LINES + 1  # goes to the writer thread
    sizes = [1, big, 3, big * 3, 1]
    expected: list[str] = []
    results = []
    for size in sizes:
        texts = [f"line {len(expected) + i + 1}" for i in range(size)]
        expected += texts
        results.append(services.writer.append(job.id, texts, None))
    answers = await asyncio.gather(*results)  # queued together: batched, in order
    assert [a.last for a in answers] == [sum(sizes[: i + 1]) for i in range(len(sizes))]
    assert await _stored(services, job.id) == expected


async def test_another_process_holding_the_write_lock_is_waited_for_off_the_loop(
    services: Services, tmp_path: Path
) -> None:
    """BEGIN on the loop fails at once when the lock is taken; the batch then waits in the
    writer thread (busy timeout) while the loop goes on serving, and commits once freed."""
    job, _token = await services.writer.create_job("j", {})
    await services.writer.append(job.id, ["before"], None)
    other = sqlite3.connect(tmp_path / "services.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # what a second process writing would hold
    hold = 0.8
    threading.Timer(hold, other.rollback).start()
    started = time.monotonic()
    append = asyncio.ensure_future(services.writer.append(job.id, ["during"], None))
    ticks, worst = 0, 0.0
    while not append.done():  # the loop must keep turning meanwhile
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before)
        ticks += 1
    result = await append
    waited = time.monotonic() - started
    other.close()
    assert result.last == 2
    assert waited >= hold * 0.9, waited  # it really waited for the lock
    assert worst < hold * 0.6, f"the loop stalled for {worst:.3f} s"  # not for the whole hold
    assert ticks > 10
    assert await _stored(services, job.id) == ["before", "during"]


async def test_wal_is_checkpointed_off_the_loop(services: Services, tmp_path: Path) -> None:
    """The writer's connection does not checkpoint on commit; the writer thread does, about
    every CHECKPOINT_PAGES pages, so the WAL restarts and stays near SQLite's usual size."""
    job, _token = await services.writer.create_job("j", {})
    commits = 4 * writer.CHECKPOINT_PAGES  # ~3 pages each: ~12,000 pages without checkpoints
    for n in range(commits):
        await services.writer.append(job.id, [f"line {n + 1} " + "x" * 70], None)
    wal = (tmp_path / "services.db-wal").stat().st_size
    page = 4096
    assert wal < 3 * writer.CHECKPOINT_PAGES * page, f"WAL is {wal / 1e6:.1f} MB"
    lines = await _stored(services, job.id)
    assert len(lines) == commits and lines[-1].startswith(f"line {commits} ")
