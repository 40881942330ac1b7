"""Exact-resume checks: append a numbered log, read it with random drops, check every line once."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx

from support.server import auth
from support.sse_oracle import SSEParser

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
        while True:
            try:
                r = await client.post(
                    f"/api/jobs/{job['id']}/finish",
                    json={"status": "succeeded", "exit_code": 0, "line_count": total},
                    headers=auth(job),
                )
            except httpx.TransportError:
                if not survive_restarts:
                    raise
                await asyncio.sleep(0.1)
                continue
            if r.status_code == 503 and survive_restarts:
                await asyncio.sleep(0.1)  # the finish met the outage: a runner retries it too
                continue
            break
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
