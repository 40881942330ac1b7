"""Exact resume: readers that drop and reconnect with Last-Event-ID get every line exactly once."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest

from conftest import ServerProcess, auth, create_job
from sse_parser import SSEParser

N_LINES = 3000


def line_text(n: int) -> str:
    # Vary the content so a misplaced line is visible: CR, ANSI, leading space, empty lines.
    kinds = [f"line {n}", f"  {n}: indented", f"\x1b[3{n % 8}m{n}\x1b[0m", "", f"{n}%\r{n}!"]
    return kinds[n % len(kinds)]


async def append_all(
    base_url: str, job: dict[str, Any], total: int, *, seed: int, survive_restarts: bool = False
) -> None:
    """Append lines 1..total in random batches; retry with `first` across server outages."""
    rng = random.Random(seed)
    sent = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while sent < total:
            size = min(total - sent, rng.randint(1, 60))
            batch = [line_text(n) for n in range(sent + 1, sent + size + 1)]
            try:
                r = await client.post(
                    f"/api/jobs/{job['id']}/lines",
                    json={"lines": batch, "first": sent + 1},
                    headers=auth(job),
                )
            except httpx.TransportError:
                if not survive_restarts:
                    raise
                await asyncio.sleep(0.1)
                continue
            if r.status_code == 503 and survive_restarts:
                await asyncio.sleep(0.1)  # the store is restarting: retry the same batch
                continue
            assert r.status_code == 200, r.text
            assert r.json()["line_count"] == sent + size
            sent += size
            await asyncio.sleep(rng.random() * 0.004)
        r = await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "succeeded", "exit_code": 0, "line_count": total},
            headers=auth(job),
        )
        assert r.status_code == 200, r.text


async def read_with_drops(
    client: httpx.AsyncClient | list[httpx.AsyncClient],
    job_id: int,
    *,
    seed: int,
    deadline: float = 60.0,
) -> tuple[list[tuple[int, str]], int, dict[str, Any]]:
    """Read the whole log, dropping the connection at random points; returns (lines, drops, end).

    Given several clients (one per server instance), each reconnect picks one at random.
    """
    rng = random.Random(seed)
    clients = client if isinstance(client, list) else [client]
    received: list[tuple[int, str]] = []
    last_id: str | None = None
    drops = 0
    async with asyncio.timeout(deadline):
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            budget = rng.randint(1, 400)
            parser = SSEParser()
            client = rng.choice(clients)
            try:
                async with client.stream(
                    "GET", f"/api/jobs/{job_id}/log", headers=headers
                ) as response:
                    if response.status_code == 204:
                        # Everything was received before the drop and the job has ended since:
                        # 204 says "stop"; the job resource tells how it ended.
                        job = (await client.get(f"/api/jobs/{job_id}")).json()
                        end = {k: job[k] for k in ("status", "exit_code", "line_count")}
                        return received, drops, end
                    if response.status_code == 503:
                        await asyncio.sleep(0.1)  # the store is restarting: try again
                        drops += 1
                        continue
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        for event in parser.feed(chunk):
                            if event.type == "end":
                                return received, drops, json.loads(event.data)
                            received.append((int(event.last_event_id), event.data))
                            last_id = event.last_event_id
                            budget -= 1
                        if budget <= 0:
                            break  # drop the connection mid-stream
            except httpx.TransportError:
                await asyncio.sleep(0.05)  # server restarting: back off and resume
            drops += 1


def check_exact(received: list[tuple[int, str]], total: int) -> None:
    ids = [n for n, _ in received]
    assert len(ids) == len(set(ids)), "a line was delivered twice"
    assert ids == list(range(1, total + 1)), "lines missing or out of order"
    for n, data in received:
        assert data == line_text(n).replace("\r", "\n")


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_random_drops_resume_exactly(server: ServerProcess, http2: bool) -> None:
    job = create_job(server.url, "resume")
    async with httpx.AsyncClient(
        base_url=server.url, http1=not http2, http2=http2, timeout=10
    ) as client:
        writer = asyncio.create_task(append_all(server.url, job, N_LINES, seed=1))
        readers = [
            asyncio.create_task(read_with_drops(client, job["id"], seed=seed))
            for seed in range(3)
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
        f"{server.url}/api/jobs/{job['id']}/finish", json={"status": "failed", "exit_code": 2},
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
            f"/api/jobs/{job['id']}/log", params={"after": 1},
            headers={"Accept": "text/event-stream"},
        )
        events = SSEParser().feed(r.content)
        assert [(e.type, e.last_event_id) for e in events] == [("end", "1")]
