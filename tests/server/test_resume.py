"""Exact resume: readers that drop and reconnect with Last-Event-ID get every line exactly once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support.resume import N_LINES, append_all, check_exact, line_text, read_with_drops
from support.server import ServerProcess, auth, create_job
from support.sse_oracle import SSEParser


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_random_drops_resume_exactly(server: ServerProcess, http2: bool) -> None:
    job = create_job(server.url, "resume")
    async with httpx.AsyncClient(
        base_url=server.url, http1=not http2, http2=http2, timeout=10
    ) as client:
        writer = asyncio.create_task(append_all(server.url, job, N_LINES, seed=1))
        readers = [
            asyncio.create_task(read_with_drops(client, job["id"], seed=seed)) for seed in range(3)
        ]
        results = await asyncio.gather(writer, *readers)
    for received, drops, end in results[1:]:
        check_exact(received, N_LINES)
        assert drops >= 5  # the test really did reconnect many times
        assert end == {"status": "succeeded", "exit_code": 0, "line_count": N_LINES}


async def test_resume_across_server_restart(server: ServerProcess) -> None:
    job = create_job(server.url, "restart")
    total = 2000
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        writer = asyncio.create_task(
            append_all(server.url, job, total, seed=7, survive_restarts=True)
        )
        reader = asyncio.create_task(read_with_drops(client, job["id"], seed=3, deadline=90))
        await asyncio.sleep(0.6)
        await asyncio.to_thread(server.restart)
        await asyncio.sleep(0.6)
        await asyncio.to_thread(server.restart)
        await writer
        received, drops, end = await reader
    check_exact(received, total)
    assert end["line_count"] == total
    # The stored log is exactly what was sent, in order, after two restarts.
    r = httpx.get(f"{server.url}/api/jobs/{job['id']}/log")
    assert r.text == "".join(line_text(n) + "\n" for n in range(1, total + 1))


async def test_finished_job_reconnect_gets_204(server: ServerProcess) -> None:
    job = create_job(server.url)
    headers = auth(job)
    httpx.post(f"{server.url}/api/jobs/{job['id']}/lines", json={"lines": ["x"]}, headers=headers)
    httpx.post(
        f"{server.url}/api/jobs/{job['id']}/finish",
        json={"status": "failed", "exit_code": 2},
        headers=headers,
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get(
            f"/api/jobs/{job['id']}/log",
            headers={"Accept": "text/event-stream", "Last-Event-ID": "1"},
        )
        assert r.status_code == 204
        # Without Last-Event-ID (a first connect), the end event is still delivered, with an id
        # so that the browser's automatic reconnect carries Last-Event-ID and gets the 204.
        r = await client.get(
            f"/api/jobs/{job['id']}/log",
            params={"after": 1},
            headers={"Accept": "text/event-stream"},
        )
        events = SSEParser().feed(r.content)
        assert [(e.type, e.last_event_id) for e in events] == [("end", "1")]
