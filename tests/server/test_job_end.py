"""Jobs that end without their runner's finish: cancel requests, keepalives, and the sweep that
ends jobs nobody hears from (`lost`) on SQLite and on PostgreSQL with two instances."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.api import ISO_RE, TIMEOUT, append, bearer, client_for, new_job, post_lines
from support.server import ServerProcess

from logstream.server.live import tail
from logstream.server.live.sweep import Sweeper
from logstream.server.services import Services
from logstream.server.store import queries
from logstream.server.writer import now_ms

RUNNER_TOKEN = "runner-secret-for-cancel-tests"


@pytest.fixture(scope="module")
def runner_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("cancel-auth"), env={"LOGSTREAM_RUNNER_TOKEN": RUNNER_TOKEN}
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


# --- cancel over HTTP ----------------------------------------------------------------------


async def test_a_cancel_is_told_to_the_runner_in_every_append_answer(
    shared_server: ServerProcess,
) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "to cancel")
        assert job["cancel_requested_at"] is None
        first = await post_lines(client, job, ["before"])
        assert first.json()["job_status"] == "running"
        assert first.headers["job-status"] == "running"

        r = await client.post(f"/api/jobs/{job['id']}/cancel", json={})
        assert r.status_code == 202, r.text
        asked = r.json()
        assert asked["status"] == "running" and re.match(ISO_RE, asked["cancel_requested_at"])

        # The runner hears it on its next append, and on a keepalive (no lines) alike.
        more = await post_lines(client, job, ["after the cancel"])
        assert more.status_code == 200
        assert more.json()["job_status"] == "canceling"
        assert more.headers["job-status"] == "canceling"
        keepalive = await post_lines(client, job, [])
        assert keepalive.status_code == 200, keepalive.text
        assert keepalive.json() == {
            "first": 3,
            "last": 2,
            "line_count": 2,
            "stored": 0,
            "skipped": 0,
            "job_status": "canceling",
            "cut": 0,
        }

        again = await client.post(f"/api/jobs/{job['id']}/cancel", json={})
        assert again.status_code == 202
        assert again.json()["cancel_requested_at"] == asked["cancel_requested_at"]

        done = await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "canceled", "exit_code": 143, "line_count": 2},
            headers=bearer(job["token"]),
        )
        assert done.status_code == 200, done.text
        after = await client.post(f"/api/jobs/{job['id']}/cancel", json={})
        assert after.status_code == 200 and after.json()["status"] == "canceled"
        shown = (await client.get(f"/api/jobs/{job['id']}")).json()
        assert shown["can_cancel"] is False


async def test_a_cancel_must_be_sent_as_json(shared_server: ServerProcess) -> None:
    """A foreign page can POST text/plain, a form or nothing without a CORS preflight: on an
    open server that must not cancel jobs."""
    async with client_for(shared_server) as client:
        job = await new_job(client, "not canceled from elsewhere")
        url = f"/api/jobs/{job['id']}/cancel"
        assert (await client.post(url)).status_code == 415
        plain = await client.post(url, content=b"{}", headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
        form = await client.post(url, data={"x": "1"})
        assert form.status_code == 415
        shown = (await client.get(f"/api/jobs/{job['id']}")).json()
        assert shown["cancel_requested_at"] is None
        empty = await client.post(url, headers={"Content-Type": "application/json"})
        assert empty.status_code == 202  # an empty JSON body is fine


async def test_a_job_that_ended_otherwise_cannot_be_canceled(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "done")
        await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "succeeded", "exit_code": 0},
            headers=bearer(job["token"]),
        )
        r = await client.post(f"/api/jobs/{job['id']}/cancel", json={})
        assert r.status_code == 409
        assert r.json()["reason"] == "finished" and r.json()["status"] == "succeeded"
        assert (await client.post("/api/jobs/999999/cancel", json={})).status_code == 404
        assert (await client.post("/api/jobs/abc/cancel", json={})).status_code == 404


async def test_a_keepalive_to_a_finished_job_says_it_finished(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "failed", "exit_code": 1},
            headers=bearer(job["token"]),
        )
        r = await post_lines(client, job, [])
        assert r.status_code == 409
        assert r.json()["reason"] == "finished" and r.json()["status"] == "failed"


async def test_open_servers_let_anyone_cancel_and_say_so(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        assert (await client.get(f"/api/jobs/{job['id']}")).json()["can_cancel"] is True


async def test_with_tokens_cancel_needs_the_jobs_token_or_the_runner_token(
    runner_server: ServerProcess,
) -> None:
    runner = bearer(RUNNER_TOKEN)
    async with client_for(runner_server) as client:
        job = await new_job(client, headers=runner)
        other = await new_job(client, headers=runner)
        url = f"/api/jobs/{job['id']}/cancel"
        assert (await client.post(url, json={})).status_code == 401
        assert (await client.post(url, json={}, headers=bearer(other["token"]))).status_code == 403
        shown = await client.get(f"/api/jobs/{job['id']}")
        assert shown.json()["can_cancel"] is False  # the dashboard shows no button
        with_token = await client.get(f"/api/jobs/{job['id']}", headers=bearer(job["token"]))
        assert with_token.json()["can_cancel"] is True
        assert (await client.post(url, json={}, headers=bearer(job["token"]))).status_code == 202
        second = f"/api/jobs/{other['id']}/cancel"
        assert (await client.post(second, json={}, headers=runner)).status_code == 202


# --- the sweep, in process -----------------------------------------------------------------


async def _end_event(svc: Services, job_id: int) -> bytes:
    """Read the job's SSE log until its end event; everything read."""
    seen = b""
    stream = tail.follow(svc.hub, job_id, 0, "sse", live=True, end=None, retry_ms=1000)
    try:
        async with asyncio.timeout(TIMEOUT):
            async for chunk in stream:
                seen += chunk
                if b"event: end" in seen:
                    return seen
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    raise AssertionError(f"no end event: {seen!r}")


async def _texts(svc: Services, job_id: int) -> list[str]:
    async with svc.engine.connect() as conn:
        return [row[2] for row in await queries.read_lines(conn, job_id, 0, 1000)]


async def _events(svc: Services, job_id: int) -> list[str]:
    async with svc.engine.connect() as conn:
        return [
            kind
            for _, kind, job in await queries.read_job_events(conn, 0, 1000)
            if job.id == job_id
        ]


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
@pytest.mark.services(job_timeout=1.0)
async def test_a_silent_job_ends_lost_with_a_line_and_an_end_event(services: Services) -> None:
    silent, _ = await services.writer.create_job("silent", {})
    alive, _ = await services.writer.create_job("kept alive", {})
    await services.writer.append(silent.id, ["the last thing it said"], None)
    tailing = asyncio.create_task(_end_event(services, silent.id))
    for _ in range(12):  # 2.4 s: past the timeout, with a keepalive every 0.2 s
        await services.writer.append(alive.id, [], None)
        await asyncio.sleep(0.2)
    wire = await tailing
    async with services.engine.connect() as conn:
        lost = await queries.get_job(conn, silent.id)
        kept = await queries.get_job(conn, alive.id)
    assert lost is not None and kept is not None
    assert (lost.status, lost.exit_code, lost.line_count) == ("lost", None, 2)
    assert kept.status == "running"
    texts = await _texts(services, silent.id)
    assert texts[0] == "the last thing it said"
    assert texts[1].startswith("logstream: job lost: no output and no keepalive") and (
        "LOGSTREAM_JOB_TIMEOUT" in texts[1]
    )
    assert b'event: end\ndata: {"status":"lost","exit_code":null,"line_count":2}' in wire
    assert b"data: logstream: job lost" in wire
    assert await _events(services, silent.id) == ["created", "finished"]
    # A runner that comes back finds the job ended.
    with pytest.raises(Exception, match="finished"):
        await services.writer.append(silent.id, ["too late"], None)


@pytest.mark.services(job_timeout=0, cancel_timeout=0.6)
async def test_a_cancel_its_runner_never_carries_out_ends_canceled(services: Services) -> None:
    job, _ = await services.writer.create_job("runner gone", {})
    asked = await services.writer.cancel(job.id)
    assert asked.cancel_ms is not None and asked.status == "running"
    wire = await _end_event(services, job.id)
    assert b'"status":"canceled"' in wire
    texts = await _texts(services, job.id)
    assert len(texts) == 1 and texts[0].startswith("logstream: job canceled: its runner did not")
    assert await _events(services, job.id) == ["created", "canceling", "finished"]


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
async def test_the_sweep_leaves_jobs_heard_from_meanwhile(services: Services) -> None:
    """The candidates are read without a lock; the writer re-checks each under it."""
    job, _ = await services.writer.create_job("busy", {})
    sweeper = Sweeper(services.engine, services.writer, job_timeout=0.2, cancel_timeout=100)
    await asyncio.sleep(0.3)
    async with services.engine.connect() as conn:
        assert await queries.stale_jobs(conn, now_ms() - 200, 0, 10) == [job.id]
    await services.writer.append(job.id, ["just in time"], None)
    assert (
        await services.writer.expire(
            job.id, lambda state: sweeper._verdict(state, now_ms() - 200, 0)
        )
        is None
    )
    assert await sweeper.sweep() == {}


# --- the sweep with two instances on one PostgreSQL -----------------------------------------


@pytest.mark.postgres
async def test_two_instances_sweeping_at_once_end_each_job_once(pg_url: str) -> None:
    from logstream.config import Settings

    settings = Settings.from_env(env={}, database_url=pg_url)  # default timeouts: no own sweep
    one, two = await Services.start(settings), await Services.start(settings)
    try:
        jobs = [(await one.writer.create_job(f"job {n}", {}))[0] for n in range(20)]
        for job in jobs[::2]:
            await two.writer.append(job.id, [f"line of {job.id}"], None)
        await asyncio.sleep(0.4)
        sweepers = [
            Sweeper(svc.engine, svc.writer, job_timeout=0.3, cancel_timeout=100)
            for svc in (one, two)
        ]
        ended_one, ended_two = await asyncio.gather(*(s.sweep() for s in sweepers))
        assert set(ended_one) | set(ended_two) == {job.id for job in jobs}
        assert not set(ended_one) & set(ended_two), "a job was ended twice"
        for job in jobs:
            texts = await _texts(two, job.id)
            assert sum(text.startswith("logstream: job lost") for text in texts) == 1, texts
            assert await _events(one, job.id) == ["created", "finished"]
        assert await sweepers[0].sweep() == {} and await sweepers[1].sweep() == {}
    finally:
        await one.stop()
        await two.stop()


@pytest.mark.postgres
async def test_a_tail_on_another_instance_sees_the_lost_end(tmp_path: Path, pg_url: str) -> None:
    env = {"LOGSTREAM_JOB_TIMEOUT": "1", "LOGSTREAM_POLL_INTERVAL": "5"}
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(ServerProcess(tmp_path / name, database_url=pg_url, env=env))
        servers[-1].start()
    try:
        async with client_for(servers[0]) as a, client_for(servers[1]) as b:
            job = await new_job(a, "lost across instances")
            await append(a, job, ["one", "two"])
            seen = b""
            async with asyncio.timeout(15):
                async with b.stream(
                    "GET",
                    f"/api/jobs/{job['id']}/log",
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(15),
                ) as response:
                    async for chunk in response.aiter_raw():
                        seen += chunk
                        if b"event: end" in seen:
                            break
            assert b"data: logstream: job lost" in seen
            assert b'"status":"lost"' in seen
            lines = (await b.get(f"/api/jobs/{job['id']}/lines")).json()["lines"]
            assert [line["text"] for line in lines][:2] == ["one", "two"]
            assert sum("job lost" in line["text"] for line in lines) == 1
    finally:
        for server in servers:
            server.stop()
