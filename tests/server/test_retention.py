"""Retention: finished jobs past LOGSTREAM_RETENTION are deleted in short transactions, on both
stores; running jobs never; the newest N per name are kept; SQLite gives the space back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from support.server import ServerProcess, auth, create_job

from logstream.server import retention
from logstream.server.services import Services
from logstream.server.store import queries

DAY_MS = 86_400_000


async def _job(svc: Services, name: str, lines: int, *, age_days: float | None) -> int:
    """A job with `lines` lines, finished `age_days` ago (None: still running)."""
    job, _token = await svc.writer.create_job(name, {})
    for start in range(0, lines, 1000):
        await svc.writer.append(
            job.id, [f"{name} {n}" for n in range(start, min(lines, start + 1000))], None
        )
    if age_days is not None:
        await svc.writer.finish(job.id, "succeeded", 0, None)
        async with svc.engine.begin() as conn:
            await conn.execute(
                text("UPDATE jobs SET finished_ms = :t WHERE id = :id"),
                {"t": int(time.time() * 1000 - age_days * DAY_MS), "id": job.id},
            )
    return job.id


async def _exists(svc: Services, job_id: int) -> bool:
    async with svc.engine.connect() as conn:
        return await queries.get_job(conn, job_id) is not None


async def _line_count(svc: Services, job_id: int) -> int:
    """Lines stored for the job, as rows of `lines` or in its compacted chunks."""
    async with svc.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT count(*) FROM lines WHERE job_id = :id"), {"id": job_id}
        )
        in_chunks = await conn.execute(
            text("SELECT coalesce(sum(last_no - first_no + 1), 0) FROM chunks WHERE job_id = :id"),
            {"id": job_id},
        )
        return int(rows.scalar_one()) + int(in_chunks.scalar_one())


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
async def test_prune_deletes_old_finished_jobs_only(services: Services) -> None:
    old = await _job(services, "deploy", 4500, age_days=40)  # more than two chunks of lines
    old_other_name = await _job(services, "build", 10, age_days=35)
    newest_deploy = await _job(services, "deploy", 10, age_days=31)  # kept by keep_per_name=1
    recent = await _job(services, "test", 10, age_days=1)
    running = await _job(services, "nightly", 10, age_days=None)
    async with services.engine.begin() as conn:  # a running job created long ago stays
        await conn.execute(text("UPDATE jobs SET created_ms = 0 WHERE id = :id"), {"id": running})

    dry = await retention.prune(services, 30 * 86400, keep_per_name=1, dry_run=True)
    assert (dry.jobs, dry.lines) == (1, 4500)  # "build" and the newest "deploy" are kept
    assert await _exists(services, old)  # a dry run deletes nothing

    report = await retention.prune(services, 30 * 86400, keep_per_name=1)
    assert (report.jobs, report.lines) == (1, 4500)
    assert not await _exists(services, old) and await _line_count(services, old) == 0
    report = await retention.prune(services, 30 * 86400)  # no longer keeping one per name
    assert (report.jobs, report.lines) == (2, 20)
    for gone in (old_other_name, newest_deploy):
        assert not await _exists(services, gone)
        assert await _line_count(services, gone) == 0
    for kept, count in ((recent, 10), (running, 10)):
        assert await _exists(services, kept)
        assert await _line_count(services, kept) == count
    again = await retention.prune(services, 30 * 86400)
    assert again.jobs == 0  # idempotent: a second sweep (another instance) finds nothing


@pytest.mark.services(compact=False)  # rows, not chunks: the prune frees many pages
async def test_sqlite_gives_the_space_back(services: Services, tmp_path: Path) -> None:
    db = tmp_path / "services.db"
    job_id = await _job(services, "big", 60_000, age_days=40)
    keep = await _job(services, "small", 100, age_days=1)

    def size() -> int:
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.stat().st_size

    before = size()
    await retention.prune(services, 30 * 86400)
    after = size()
    assert not await _exists(services, job_id) and await _exists(services, keep)
    assert after < before / 3, (before, after)


def test_the_prune_command_works_beside_a_running_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        job = create_job(server.url, "old")
        httpx.post(
            f"{server.url}/api/jobs/{job['id']}/lines",
            json={"lines": ["a", "b"]},
            headers=auth(job),
        ).raise_for_status()
        httpx.post(
            f"{server.url}/api/jobs/{job['id']}/finish",
            json={"status": "failed"},
            headers=auth(job),
        ).raise_for_status()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
        args = [sys.executable, "-m", "logstream", "prune", "--database-url", server.database_url]

        def dry_run(age: str) -> str:
            result = subprocess.run(
                [*args, "--older-than", age, "--dry-run"],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            return result.stdout.decode().strip()

        assert dry_run("1h") == "would delete 0 jobs (0 lines)"  # not an hour old
        assert dry_run("0.001s") == "would delete 1 jobs (2 lines)"
        time.sleep(1.2)
        done = subprocess.run(
            [*args, "--older-than", "1s"], env=env, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().strip() == "deleted 1 jobs (2 lines)"
        assert httpx.get(f"{server.url}/api/jobs/{job['id']}").status_code == 404
        assert httpx.post(f"{server.url}/api/jobs", json={"name": "after"}).status_code == 201
        bad = subprocess.run(
            [*args, "--older-than", "soon"], env=env, capture_output=True, timeout=60, check=False
        )
        assert bad.returncode != 0 and b"not a duration" in bad.stderr
        assert b"Traceback" not in bad.stderr
    finally:
        server.stop()


def test_the_server_sweeps_by_logstream_retention(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        job = create_job(server.url, "short-lived")
        httpx.post(
            f"{server.url}/api/jobs/{job['id']}/finish",
            json={"status": "succeeded"},
            headers=auth(job),
        ).raise_for_status()
        kept = create_job(server.url, "still running")
    finally:
        server.stop()
    time.sleep(1.1)
    server.env = {"LOGSTREAM_RETENTION": "1s"}
    server.start()  # the first sweep runs at start
    try:
        deadline = time.monotonic() + 15
        while httpx.get(f"{server.url}/api/jobs/{job['id']}").status_code != 404:
            assert time.monotonic() < deadline, "the sweep did not delete the old job"
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/api/jobs/{kept['id']}").status_code == 200
    finally:
        server.stop()
