"""Retention under load: the worst append latency while a big finished log is pruned.

`python -m bench.prune [--lines N]` (in-process, SQLite, default settings): builds a finished job
of N lines, then prunes it while one runner appends a line every 10 ms to another job, and
prints the prune's duration and rate, the appends' latency (p50 / p99 / max) during the prune,
and the database file's size before and after (it shrinks: incremental auto-vacuum).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from logstream.config import Settings
from logstream.server import retention
from logstream.server.services import Services
from logstream.server.store.migrate import upgrade


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


async def main(lines: int) -> None:
    """Build, then prune with a paced appender beside it; print the figures."""
    folder = Path(tempfile.mkdtemp(prefix="logstream-prune-"))
    db = folder / "prune.db"
    settings = Settings.from_env(env={}, database_url=f"sqlite:///{db}")
    upgrade(settings.database_url)
    svc = await Services.start(settings)
    try:
        big, _ = await svc.writer.create_job("big", {})
        started = time.monotonic()
        batch = 5000
        for first in range(1, lines + 1, batch):
            count = min(batch, lines - first + 1)
            await svc.writer.append(
                big.id, [f"line {first + i} " + "x" * 70 for i in range(count)], None
            )
        await svc.writer.finish(big.id, "succeeded", 0, None)
        async with svc.engine.begin() as conn:
            await conn.execute(
                text("UPDATE jobs SET finished_ms = 0 WHERE id = :id"), {"id": big.id}
            )
        print(f"built {lines:,} lines in {time.monotonic() - started:.1f} s")
        async with svc.engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        before = _size(db)
        live, _ = await svc.writer.create_job("live", {})
        latencies: list[float] = []
        done = asyncio.Event()

        async def appender() -> None:
            n = 0
            while not done.is_set():
                n += 1
                sent = time.perf_counter()
                await svc.writer.append(live.id, [f"live {n}"], None)
                latencies.append(time.perf_counter() - sent)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(appender())
        started = time.monotonic()
        report = await retention.prune(svc, 1.0)
        took = time.monotonic() - started
        done.set()
        await task
        async with svc.engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        after = _size(db)
        ms = sorted(x * 1000 for x in latencies)
        p99 = ms[int(len(ms) * 0.99) - 1] if ms else 0.0
        print(f"pruned {report.lines:,} lines in {took:.1f} s ({report.lines / took:,.0f} lines/s)")
        print(
            f"appends during the prune: {len(ms)}, latency p50 {statistics.median(ms):.1f} /"
            f" p99 {p99:.1f} / max {ms[-1]:.1f} ms"
        )
        print(f"database files: {before / 1e6:,.0f} MB before, {after / 1e6:,.1f} MB after")
    finally:
        await svc.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    asyncio.run(main(parser.parse_args().lines))
