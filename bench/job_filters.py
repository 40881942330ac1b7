"""The filtered job list (`GET /api/jobs?status=...&name=...&meta.KEY=...`) on a big store,
without and with migration 0009's indexes (ix_jobs_name_id, ix_jobs_status_id).

`python -m bench.job_filters [--jobs N] [--postgres URL]` (in-process, no HTTP): fills a fresh
store with N jobs (200 names, 0.2% running, 8% failed, 2% canceled, the rest succeeded; meta
with a branch, 60% `main`, and a host), then times `queries.list_jobs` for one page (limit 51,
as the route asks) of each filter, the median and the worst of 15 runs, with the two indexes
dropped and then created again (PostgreSQL ANALYZEd each time, as autovacuum would; SQLite
without statistics, as logstream leaves it). `--postgres` also runs it on a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.config import Settings
from logstream.server.store import queries
from logstream.server.store.db import create_engine
from logstream.server.store.migrate import upgrade
from logstream.server.store.queries import JobFilter

NAMES = 200
RUNS = 15
# (what, filter, page): page 2 starts below the newest running jobs, at the stuck old ones.
FILTERS: list[tuple[str, JobFilter, int]] = [
    ("no filter", JobFilter(), 1),
    ("status=running (0.2%)", JobFilter(statuses=("running",)), 1),
    ("status=running, page 2 (old ones)", JobFilter(statuses=("running",)), 2),
    ("status=failed (8%)", JobFilter(statuses=("failed",)), 1),
    ("status=failed,canceled", JobFilter(statuses=("failed", "canceled")), 1),
    ("name=build-7 (0.5%)", JobFilter(name="build-7"), 1),
    ("name=build-7&status=failed", JobFilter(name="build-7", statuses=("failed",)), 1),
    ("meta.branch=main (60%)", JobFilter(meta=(("branch", "main"),)), 1),
    ("meta.branch=feature-3 (0.08%)", JobFilter(meta=(("branch", "feature-3"),)), 1),
    ("name=build-7&meta.branch=main", JobFilter(name="build-7", meta=(("branch", "main"),)), 1),
    ("name=nobody (no match)", JobFilter(name="nobody"), 1),
]


def _rows(count: int) -> list[dict[str, object]]:
    rng = random.Random(4)
    now = int(time.time() * 1000) - count * 60_000
    rows = []
    for n in range(count):
        roll = rng.random()
        status = "succeeded" if roll < 0.898 else "failed" if roll < 0.978 else "canceled"
        if n >= count - count // 700 or rng.random() < 0.0005:
            status = "running"  # the newest jobs, and a few stuck old ones
        branch = "main" if rng.random() < 0.6 else f"feature-{rng.randrange(500)}"
        meta = {"branch": branch, "host": f"runner-{rng.randrange(20)}", "command": ["make"]}
        rows.append(
            {
                "name": f"build-{rng.randrange(NAMES)}",
                "meta": json.dumps(meta, separators=(",", ":")),
                "status": status,
                "exit_code": None if status == "running" else int(status != "succeeded"),
                "line_count": rng.randrange(5000),
                "token_hash": "0" * 64,
                "created_ms": now + n * 60_000,
                "finished_ms": None if status == "running" else now + n * 60_000 + 30_000,
            }
        )
    return rows


async def _fill(engine: AsyncEngine, count: int) -> None:
    insert = text(
        "INSERT INTO jobs (name, meta, status, exit_code, line_count, token_hash, created_ms,"
        " finished_ms) VALUES (:name, :meta, :status, :exit_code, :line_count, :token_hash,"
        " :created_ms, :finished_ms)"
    )
    rows = _rows(count)
    async with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            await conn.execute(insert, rows[start : start + 10_000])


async def _indexes(engine: AsyncEngine, present: bool) -> None:
    async with engine.begin() as conn:
        if present:
            await conn.execute(text("CREATE INDEX ix_jobs_name_id ON jobs (name, id)"))
            await conn.execute(text("CREATE INDEX ix_jobs_status_id ON jobs (status, id)"))
        else:
            await conn.execute(text("DROP INDEX ix_jobs_name_id"))
            await conn.execute(text("DROP INDEX ix_jobs_status_id"))
        if engine.dialect.name == "postgresql":
            # (autovacuum's statistics there; logstream runs no ANALYZE on SQLite)
            await conn.execute(text("ANALYZE"))


async def _time(
    engine: AsyncEngine, where: JobFilter, before: int | None
) -> tuple[float, float, int]:
    times = []
    found = 0
    for _ in range(RUNS):
        started = time.perf_counter()
        async with engine.connect() as conn:
            found = len(await queries.list_jobs(conn, 51, before, where))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), found


async def bench(url: str, count: int, label: str) -> None:
    """Fill the store at `url`, then print each filter's time without and with the indexes."""
    settings = Settings.from_env(env={}, database_url=url)
    upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        started = time.monotonic()
        await _fill(engine, count)
        print(f"{label}: {count:,} jobs in {time.monotonic() - started:.1f} s")
        results: dict[bool, list[tuple[float, float, int]]] = {}
        for present in (False, True):
            await _indexes(engine, present)
            # Page 2 of the running jobs: below the newest ones (see _rows).
            below = count - count // 700 + 1
            results[present] = [
                await _time(engine, where, below if page == 2 else None)
                for _, where, page in FILTERS
            ]
        header = f"{'without: median / max':>22}  {'with: median / max':>19}"
        print(f"  {'filter':34} {'rows':>4}  {header}")
        rows = zip(FILTERS, results[False], results[True], strict=True)
        for (name, _, _), before, after in rows:
            print(
                f"  {name:34} {after[2]:>4}  {before[0]:>11.2f} / {before[1]:>7.2f} ms"
                f"  {after[0]:>8.2f} / {after[1]:>7.2f} ms"
            )
    finally:
        await engine.dispose()


async def main(count: int, postgres: str | None) -> None:
    """SQLite in a temporary folder; PostgreSQL in a fresh database when given its URL."""
    folder = Path(tempfile.mkdtemp(prefix="logstream-filters-"))
    await bench(f"sqlite:///{folder / 'filters.db'}", count, "SQLite")
    if postgres:
        import asyncpg

        admin = postgres.replace("postgresql+asyncpg://", "postgresql://")
        name = "logstream_bench_" + uuid.uuid4().hex[:8]
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = admin.rsplit("/", 1)[0] + "/" + name
            await bench(url, count, "PostgreSQL")
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--postgres", default=None, help="an admin URL, e.g. postgresql://...")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.postgres))
