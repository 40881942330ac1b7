"""Compaction: a finished log moved into compressed chunks reads exactly as before, through every
read path (JSON pages, raw text, SSE replay and resume, tail, search, the append retry check),
also half compacted, also after kill -9 in the middle of a compaction; and it is redone."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api import append, client_for, finish, new_job, post_lines
from support.server import ServerProcess

from logstream.server import search
from logstream.server.services import Services
from logstream.server.store import chunks, queries

# Lines that the store, the wire formats and search each treat specially.
SPECIAL = [
    "",
    "   leading spaces",
    "tab\there",
    "progress 10%\rprogress 50%\rprogress 100%",
    "\x1b[32mgreen\x1b[0m ok",
    "\x1b[1mbo\x1b[0mld split match",
    "unicode: héllo wörld 漢字 🎉",
    "İstanbul KELVIN \u212a",
    "percent % underscore _ slash / backslash \\",
    "x" * 5000,
    "trailing space ",
    "ERROR: something failed",
]


def _texts(count: int, seed: int = 0) -> list[str]:
    out = []
    for n in range(count):
        k = n + seed
        out.append(SPECIAL[k % len(SPECIAL)] if k % 7 == 0 else f"line {k} step {k % 13} done")
    return out


BIG = 40_000  # lines: enough for the compaction to be caught midway (40 steps)

QUERIES = [
    ("done", "0"),
    ("DONE", "0"),
    ("DONE", "1"),
    ("step 3 ", "0"),
    ("green ok", "0"),
    ("bold split", "0"),
    ("istanbul", "0"),
    ("kelvin", "0"),
    ("\u212a", "1"),
    ("漢字", "0"),
    ("%", "0"),
    ("_ slash", "0"),
    ("no such text anywhere", "0"),
    ("error", "0"),
]


async def _capture(
    client: httpx.AsyncClient, job_id: int, count: int, *, full: bool = True
) -> dict[str, bytes]:
    """The bytes of every read path of a finished job, keyed by request (`full`: whole-log
    reads from many starting points, and every query; else a few of each)."""
    got: dict[str, bytes] = {}

    async def get(key: str, path: str, **kwargs: Any) -> None:
        async with asyncio.timeout(30):
            r = await client.get(path, **kwargs)
        got[key] = f"{r.status_code} {r.headers.get('content-type')}\n".encode() + r.content

    base = f"/api/jobs/{job_id}"
    marks = sorted({0, 1, 2, 499, 999, 1000, 1001, 1500, 2001, count - 1, count, count + 3})
    for after in marks if full else [0, 1001, count - 1500, count - 1, count]:
        for limit in (1, 7, 1000, 2500):
            await get(
                f"lines {after} {limit}", f"{base}/lines", params={"after": after, "limit": limit}
            )
        await get(f"text after {after}", f"{base}/log", params={"format": "text", "after": after})
        await get(
            f"sse resume {after}",
            f"{base}/log",
            headers={"Accept": "text/event-stream", "Last-Event-ID": str(after)},
        )
    await get("text", f"{base}/log", params={"format": "text"})
    await get("sse", f"{base}/log", headers={"Accept": "text/event-stream"})
    for last_n in (1, 10, 1000, count + 5) if full else (1, 1000):
        await get(f"text tail {last_n}", f"{base}/log", params={"format": "text", "tail": last_n})
        await get(f"sse tail {last_n}", f"{base}/log", params={"format": "sse", "tail": last_n})
    page = 1000 if full else 10_000
    after = 0  # the viewer's pages, as it walks the whole log (and its permalinks land in them)
    while True:
        r = await client.get(f"{base}/lines", params={"after": after, "limit": page})
        body = r.json()
        got[f"page {after} {page}"] = r.content
        if body["next_after"] is None:
            break
        after = body["next_after"]
    for q, case in QUERIES if full else QUERIES[4:6] + QUERIES[-2:]:
        for params in ({}, {"after": "1000"}, {"limit": "3"}, {"after": "1777", "limit": "50"}):
            await get(
                f"search {q!r} {case} {params}",
                f"{base}/search",
                params={"q": q, "case": case, **params},
            )
    return got


def _stored(db: Path, job_id: int) -> tuple[int, int]:
    """(rows in lines, lines in chunks) of a job, read from the SQLite file."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("SELECT count(*) FROM lines WHERE job_id = ?", (job_id,)).fetchone()
        in_chunks = conn.execute(
            "SELECT coalesce(sum(last_no - first_no + 1), 0) FROM chunks WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        return int(rows[0]), int(in_chunks[0])
    finally:
        conn.close()


def _assert_same(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    assert before.keys() == after.keys()
    differ = [key for key in before if before[key] != after[key]]
    assert not differ, f"{len(differ)} reads differ, e.g. {differ[:5]}"


async def _build(client: httpx.AsyncClient, count: int, batch: int, seed: int = 0) -> int:
    job = await new_job(client, "compact")
    texts = _texts(count, seed)
    for start in range(0, count, batch):
        await append(client, job, texts[start : start + batch])
    await finish(client, job, status="failed", exit_code=3)
    return int(job["id"])


async def test_every_read_path_is_the_same_compacted_and_after_kill_9_midway(
    tmp_path: Path,
) -> None:
    proc = ServerProcess(tmp_path, env={"LOGSTREAM_COMPACT": "0"})
    db = tmp_path / "logstream.db"
    proc.start()
    try:
        async with client_for(proc) as client:
            small = await _build(client, 2345, 400)  # every kind of line, odd sizes
            big = await _build(client, BIG, 5000, seed=3)
            before_small = await _capture(client, small, 2345)
            before_big = await _capture(client, big, BIG, full=False)
        assert _stored(db, big) == (BIG, 0)

        # Compaction on: the scan at start finds both jobs; kill -9 once it is part way.
        proc.stop()
        proc.env = {"LOGSTREAM_COMPACT": "1"}
        proc.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            in_lines, in_chunks = _stored(db, big)
            if in_chunks >= 2000 and in_lines > 0:
                break
            await asyncio.sleep(0.002)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
        proc.proc = None
        in_lines, in_chunks = _stored(db, big)
        assert in_lines > 0 and in_chunks > 0, (in_lines, in_chunks)  # caught it midway
        assert in_lines + in_chunks == BIG  # every line in exactly one place

        # Half compacted (and not touched further): every read is the same.
        proc.env = {"LOGSTREAM_COMPACT": "0"}
        proc.start()
        async with client_for(proc) as client:
            _assert_same(before_big, await _capture(client, big, BIG, full=False))
        assert _stored(db, big) == (in_lines, in_chunks)

        # Restarted with compaction: it is redone to the end; still the same bytes.
        proc.stop()
        proc.env = {}
        proc.start()
        deadline = time.monotonic() + 60
        while _stored(db, big)[0] or _stored(db, small)[0]:
            assert time.monotonic() < deadline, _stored(db, big)
            await asyncio.sleep(0.05)
        assert _stored(db, big) == (0, BIG)
        assert _stored(db, small) == (0, 2345)
        async with client_for(proc) as client:
            _assert_same(before_small, await _capture(client, small, 2345))
            _assert_same(before_big, await _capture(client, big, BIG, full=False))
            r = await client.get(f"/api/jobs/{small}/lines", params={"after": 2340})
            assert [row["n"] for row in r.json()["lines"]] == [2341, 2342, 2343, 2344, 2345]
    finally:
        proc.stop(signal.SIGKILL)


# --- in-process, on both stores ------------------------------------------------------------------


async def _store_reads(svc: Services, job_id: int, count: int) -> dict[str, Any]:
    got: dict[str, Any] = {}
    async with svc.engine.connect() as conn:
        for after in (0, 1, 999, 1000, 1001, 1999, 2500, count - 1, count):
            for limit in (1, 5, 999, 1000, 2000, 5000):
                got[f"lines {after} {limit}"] = [
                    tuple(r) for r in await queries.read_lines(conn, job_id, after, limit)
                ]
        full: list[tuple[Any, ...]] = []
        after = 0
        while True:  # walking pages: fewer than the limit is fine, none is the end
            page = await queries.read_lines(conn, job_id, after, 777)
            if not page:
                break
            full += [tuple(r) for r in page]
            after = page[-1][0]
        got["walk"] = full
    for q, case in QUERIES:
        for after, limit in ((0, 10_000), (1000, 10_000), (0, 3), (1777, 50)):
            result = await search.search_log(
                svc.engine, job_id, q, case=case == "1", limit=limit, after=after
            )
            got[f"search {q!r} {case} {after} {limit}"] = result
    return got


@pytest.mark.services(compact=False)
@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
async def test_store_reads_equal_uncompacted_half_and_fully_compacted(services: Services) -> None:
    svc = services
    job, token = await svc.writer.create_job("c", {})
    texts = _texts(4321)
    for start in range(0, len(texts), 500):
        await svc.writer.append(job.id, texts[start : start + 500], None)
    # A running job is never compacted.
    assert await svc.writer.compact(job.id, chunks.CODEC_ZSTD) == 0
    await svc.writer.finish(job.id, "succeeded", 0, None)
    before = await _store_reads(svc, job.id, len(texts))
    assert [r[2] for r in before["walk"]] == texts

    assert await svc.writer.compact(job.id, chunks.CODEC_ZSTD) == 1000
    assert await svc.writer.compact(job.id, chunks.CODEC_ZLIB) == 1000  # both codecs read back
    assert await _store_reads(svc, job.id, len(texts)) == before

    from logstream.server.compaction import Compactor

    compactor = Compactor(svc.engine, svc.writer, sqlite=svc.settings.is_sqlite)
    assert await compactor.compact_job(job.id) == 4321 - 2000
    assert await svc.writer.compact(job.id, chunks.CODEC_ZSTD) == 0
    assert await _store_reads(svc, job.id, len(texts)) == before

    # The retry of a batch already stored reads the chunks: skipped, or a mismatch.
    again = await svc.writer.append(job.id, texts[1990:2010], 1991)
    assert (again.skipped, again.stored) == (20, 0)
    from logstream.server.errors import Conflict

    with pytest.raises(Conflict) as caught:
        await svc.writer.append(job.id, [*texts[1990:1999], "different"], 1991)
    assert caught.value.body()["reason"] == "mismatch"
    assert token


async def test_background_compaction_after_finish_and_scan_at_start(services: Services) -> None:
    """Compaction is on by default: a finish starts it; the scan finds what was left."""
    svc = services
    assert svc.compactor is not None
    job, _token = await svc.writer.create_job("bg", {})
    await svc.writer.append(job.id, _texts(2500), None)
    await svc.writer.finish(job.id, "succeeded", 0, None)
    await asyncio.wait_for(svc.compactor.wait_idle(), 30)
    async with svc.engine.connect() as conn:
        rows = await queries.read_lines(conn, job.id, 0, 5000)
        assert [r[2] for r in rows] == _texts(2500)
        assert await queries.uncompacted_jobs(conn, 0, 10) == []

    # A job finished while compaction was off (or by another process) is found by the scan.
    await svc.compactor.stop()
    other, _ = await svc.writer.create_job("later", {})
    await svc.writer.append(other.id, _texts(10), None)
    await svc.writer.finish(other.id, "succeeded", 0, None)
    async with svc.engine.connect() as conn:
        assert await queries.uncompacted_jobs(conn, 0, 10) == [other.id]
    await svc.compactor.start()
    await asyncio.sleep(0)
    await asyncio.wait_for(svc.compactor.wait_idle(), 30)
    async with svc.engine.connect() as conn:
        assert await queries.uncompacted_jobs(conn, 0, 10) == []
        rows = await queries.read_lines(conn, other.id, 0, 100)
    assert [r[2] for r in rows] == _texts(10)


async def test_running_jobs_read_and_append_as_before(services: Services) -> None:
    """Nothing of a running job is compacted; an append retry with `first` works as before."""
    svc = services
    job, _token = await svc.writer.create_job("run", {})
    await svc.writer.append(job.id, ["a", "b"], None)
    r = await svc.writer.append(job.id, ["b", "c"], 2)
    assert (r.skipped, r.stored, r.line_count) == (1, 1, 3)
    async with svc.engine.connect() as conn:
        assert [x[2] for x in await queries.read_lines(conn, job.id, 0, 10)] == ["a", "b", "c"]


def test_chunk_format_round_trips() -> None:
    rows = [(n, 1_700_000_000_000 + n // 3, text) for n, text in enumerate(_texts(1000), 41)]
    for codec in (chunks.CODEC_ZSTD, chunks.CODEC_ZLIB):
        data = chunks.encode(rows, codec)
        assert data[0] == codec
        back = chunks.decode(41, 1040, data)
        assert back.rows == rows
        assert back.text == "\n".join(t for _n, _ts, t in rows)
    with pytest.raises(ValueError):
        assert chunks.decode(41, 1041, chunks.encode(rows)).rows  # the count is checked


async def test_prune_deletes_chunks(services: Services) -> None:
    svc = services
    assert svc.compactor is not None
    job, _ = await svc.writer.create_job("old", {})
    await svc.writer.append(job.id, _texts(3500), None)
    await svc.writer.finish(job.id, "succeeded", 0, None)
    await asyncio.wait_for(svc.compactor.wait_idle(), 30)
    total = 0
    while (gone := await svc.writer.prune_lines(job.id, 1000)) > 0:
        total += gone
    assert total == 3500
    async with svc.engine.connect() as conn:
        assert await queries.get_job(conn, job.id) is None
        assert await queries.read_lines(conn, job.id, 0, 10) == []


async def test_retry_of_last_batch_after_compaction_over_http(shared_server: ServerProcess) -> None:
    """A runner whose finish answer was lost retries its last batch: still skipped."""
    async with client_for(shared_server) as client:
        job = await new_job(client, "retry")
        await append(client, job, [f"l{n}" for n in range(1, 1501)])
        await finish(client, job)
        deadline = time.monotonic() + 30
        db = shared_server.workdir / "logstream.db"
        while _stored(db, job["id"])[0]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        r = await post_lines(client, job, [f"l{n}" for n in range(1001, 1501)], first=1001)
        assert r.status_code == 200 and r.json()["skipped"] == 500, r.text
        r = await post_lines(client, job, ["l1001", "nope"], first=1001)
        assert r.status_code == 409 and r.json()["reason"] == "mismatch", r.text


@pytest.mark.services(compact=False)
async def test_long_lines_make_smaller_chunks(services: Services) -> None:
    """A chunk holds at most ~1 M characters: a log of 10,000-character lines compacts into
    chunks of ~100 lines, and reads the same through them."""
    svc = services
    job, _ = await svc.writer.create_job("long", {})
    texts = [f"{n} " + "y" * 10_000 for n in range(1, 1201)]
    for start in range(0, 1200, 100):
        await svc.writer.append(job.id, texts[start : start + 100], None)
    await svc.writer.finish(job.id, "succeeded", 0, None)
    steps = []
    while moved := await svc.writer.compact(job.id, chunks.CODEC_ZSTD):
        steps.append(moved)
    assert sum(steps) == 1200 and max(steps) <= chunks.CHUNK_CHARS // 10_000
    async with svc.engine.connect() as conn:
        got: list[str] = []
        after = 0
        while page := await queries.read_lines(conn, job.id, after, 500):
            got += [r[2] for r in page]
            after = page[-1][0]
        assert got == texts
        assert [r[0] for r in await queries.read_lines(conn, job.id, 150, 3)] == [151, 152, 153]
        # A page holds as many lines as asked (the viewer counts on it), across short chunks.
        page = await queries.read_lines(conn, job.id, 7, 1000)
        assert [r[0] for r in page] == list(range(8, 1008))
