"""The per-job size limit (LOGSTREAM_MAX_JOB_BYTES): a job of 3x the limit keeps its head and its
latest tail, one marker line at the last dropped number says which lines went and why, line
numbers never change, readers resume across the dropped range, the runner is told once."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from support.api import SSE, append, client_for, finish, new_job, read_sse
from support.server import ServerProcess

from logstream.runner.delivery import Delivery
from logstream.server.compaction import Compactor
from logstream.server.services import Services
from logstream.server.store import queries

LIMIT = 10_000
LINE = 99  # characters: with its LF a line is 100 bytes


def _text(n: int) -> str:
    return f"line {n:06d} ".ljust(LINE, ".")


async def _read_all(svc: Services, job_id: int, after: int = 0) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    async with svc.engine.connect() as conn:
        while page := await queries.read_lines(conn, job_id, after, 37):
            out += [tuple(r) for r in page]
            after = page[-1][0]
    return out


def _check_shape(rows: list[tuple[Any, ...]], count: int) -> int:
    """Head 1..50 (half the limit), the marker, then the latest lines to `count`; returns the
    marker's number (the last dropped line)."""
    numbers = [r[0] for r in rows]
    head = LIMIT // 2 // (LINE + 1)
    assert numbers[:head] == list(range(1, head + 1))
    assert [r[2] for r in rows[:head]] == [_text(n) for n in range(1, head + 1)]
    mark_no, _ts, mark = rows[head]
    assert mark == (
        f"[logstream: lines {head + 1}-{mark_no} dropped: the job passed"
        f" LOGSTREAM_MAX_JOB_BYTES={LIMIT} bytes; its first and its latest lines are kept]"
    )
    tail = rows[head + 1 :]
    assert [r[0] for r in tail] == list(range(mark_no + 1, count + 1))
    assert [r[2] for r in tail] == [_text(n) for n in range(mark_no + 1, count + 1)]
    stored = sum(len(r[2].encode()) + 1 for r in rows)
    assert stored <= LIMIT
    # The tail fills what the head and the marker leave, less at most one trim step.
    assert len(tail) * (LINE + 1) >= LIMIT // 2 - LIMIT // 16 - 300
    return int(mark_no)


@pytest.mark.services(max_job_bytes=LIMIT, compact=False)
@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
async def test_three_times_the_limit_keeps_head_and_tail_with_one_marker(
    services: Services,
) -> None:
    svc = services
    job, _token = await svc.writer.create_job("big", {})
    total = 3 * LIMIT // (LINE + 1)  # 300 lines, 30,000 bytes
    answers = []
    for start in range(1, total + 1, 10):
        answers.append(
            await svc.writer.append(job.id, [_text(n) for n in range(start, start + 10)], None)
        )
    assert answers[-1].line_count == total  # numbering never changes
    told = [a for a in answers if a.dropped is not None]
    assert answers[0].dropped is None and told  # said once it passed the limit
    assert told[0].to_json()["dropped"]["first"] == 51
    assert told[0].to_json()["dropped"]["max_job_bytes"] == LIMIT

    rows = await _read_all(svc, job.id)
    mark_no = _check_shape(rows, total)
    assert told[-1].dropped == (51, mark_no, LIMIT)

    # A reader that resumes anywhere in the dropped range gets the marker, then what follows.
    async with svc.engine.connect() as conn:
        for after in (50, 51, 120, mark_no - 1):
            page = await queries.read_lines(conn, job.id, after, 3)
            assert [r[0] for r in page] == [mark_no, mark_no + 1, mark_no + 2]
        page = await queries.read_lines(conn, job.id, mark_no, 2)
        assert [r[0] for r in page] == [mark_no + 1, mark_no + 2]

    # The retry of the last batch is still skipped; the log compacts and reads the same.
    again = await svc.writer.append(job.id, [_text(n) for n in range(291, 301)], 291)
    assert (again.skipped, again.stored) == (10, 0)
    await svc.writer.finish(job.id, "succeeded", 0, total)
    compactor = Compactor(svc.engine, svc.writer, sqlite=svc.settings.is_sqlite)
    await compactor.compact_job(job.id)
    assert await _read_all(svc, job.id) == rows
    async with svc.engine.connect() as conn:
        assert [r[0] for r in await queries.read_lines(conn, job.id, 120, 2)] == [
            mark_no,
            mark_no + 1,
        ]


async def test_readers_resume_across_the_dropped_range_over_http(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, env={"LOGSTREAM_MAX_JOB_BYTES": str(LIMIT)})
    proc.start()
    try:
        async with client_for(proc) as client:
            job = await new_job(client, "limited")
            total = 300
            for start in range(1, total + 1, 25):
                answer = await append(client, job, [_text(n) for n in range(start, start + 25)])
            assert answer["dropped"]["first"] == 51
            mark_no = answer["dropped"]["last"]
            await finish(client, job)
            path = f"/api/jobs/{job['id']}/log"

            full = await read_sse(client, path)
            ids = [int(e.last_event_id) for e in full.lines]
            assert ids == [*range(1, 51), mark_no, *range(mark_no + 1, total + 1)]
            assert full.end_data()["line_count"] == total

            # Resuming inside the range: the marker (id = last dropped), then after it.
            resumed = await read_sse(client, path, headers={"Last-Event-ID": "100"})
            events = resumed.lines
            assert int(events[0].last_event_id) == mark_no
            assert events[0].data.startswith("[logstream: lines 51-")
            assert int(events[1].last_event_id) == mark_no + 1
            # Resuming from the marker's id continues exactly after the gap.
            after_mark = await read_sse(client, path, headers={"Last-Event-ID": str(mark_no)})
            assert [int(e.last_event_id) for e in after_mark.lines][:2] == [
                mark_no + 1,
                mark_no + 2,
            ]
            text = await client.get(path, params={"format": "text", "after": "60"})
            assert text.text.split("\n")[0].startswith("[logstream: lines 51-")
            page = (await client.get(f"/api/jobs/{job['id']}/lines", params={"after": 60})).json()
            assert page["lines"][0]["n"] == mark_no
            assert page["lines"][1]["n"] == mark_no + 1
            r = await client.get(path, headers={**SSE, "Last-Event-ID": str(total)})
            assert r.status_code == 204
    finally:
        proc.stop(signal.SIGKILL)


def test_the_runner_says_it_once() -> None:
    told: list[str] = []
    delivery = Delivery.__new__(Delivery)
    delivery.job_id = 7
    delivery.warn = told.append
    delivery.told_dropped = False
    delivery._note_dropped({"first": 1, "last": 10})
    answer = {"dropped": {"first": 51, "last": 120, "max_job_bytes": LIMIT}}
    delivery._note_dropped(answer)
    delivery._note_dropped(answer)
    assert len(told) == 1
    assert "size limit of 10000 bytes" in told[0] and "lines from 51 on" in told[0]


def test_logstream_run_prints_the_size_limit_once(tmp_path: Path) -> None:
    """The runner is told in the append answers and says it once, on stderr; the command's
    own output is not affected."""
    from support.cli import cli, job, job_id_from

    proc = ServerProcess(tmp_path, env={"LOGSTREAM_MAX_JOB_BYTES": str(LIMIT)})
    proc.start()
    try:
        script = (
            "import sys, time\n"
            "for n in range(1, 601):\n"
            "    print(f'out {n:04d} ' + '.' * 90, flush=True)\n"
            "    if n % 50 == 0: time.sleep(0.15)\n"
        )
        result = cli(proc.url, "run", "--", sys.executable, "-c", script)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(b"\n") == 600
        assert result.stderr.count(b"size limit") == 1, result.stderr
        assert f"size limit of {LIMIT} bytes".encode() in result.stderr
        info = job(proc.url, job_id_from(result.stderr))
        assert info["line_count"] == 600
    finally:
        proc.stop(signal.SIGKILL)


async def test_a_feed_that_reads_across_the_dropped_range_restarts_its_ring() -> None:
    """A feed behind a trim reads rows with a gap: its ring (consecutive lines only) restarts
    after it, so a reader before the gap pages the marker from the store."""
    from logstream.server.live.feed import Feed

    feed = Feed(None, 1, page_lines=100, feed_lines=100)  # type: ignore[arg-type]
    feed._add([(1, 0, "a"), (2, 0, "b"), (3, 0, "c")])
    feed.known = 3
    assert feed.chunk_after(1, 100, "text") == (b"b\nc\n", 3)
    feed._add([(4, 0, "d"), (10, 0, "marker"), (11, 0, "k")])
    assert (feed.base, feed.texts, feed.known) == (10, ["marker", "k"], 11)
    assert feed.chunk_after(3, 100, "text") is None  # before the ring: from the store
    assert feed.chunk_after(9, 100, "text") == (b"marker\nk\n", 11)
    assert feed.chunk_after(10, 100, "sse") == (b"id: 11\ndata: k\n\n", 11)
