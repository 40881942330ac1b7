"""Several server processes on one port (`--workers`): on SQLite they see each other's lines
through the periodic re-check (LOGSTREAM_POLL_INTERVAL), and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from support.server import ServerProcess, auth, create_job
from support.sse_oracle import SSEParser


async def test_sqlite_workers_share_lines_within_poll_interval(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path, env={"LOGSTREAM_WORKERS": "2", "LOGSTREAM_POLL_INTERVAL": "0.3"}
    )
    server.start()
    try:
        # Fresh connections land on either process; both must be serving.
        pids = set()
        async with asyncio.timeout(20):
            while len(pids) < 2:
                async with httpx.AsyncClient(base_url=server.url) as client:
                    pids.add((await client.get("/healthz")).json()["pid"])
        job = create_job(server.url, "workers")
        total = 300

        async def tail() -> list[str]:
            parser = SSEParser()
            ids: list[str] = []
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
                async with client.stream(
                    "GET", f"/api/jobs/{job['id']}/log", headers={"Accept": "text/event-stream"}
                ) as response:
                    async for chunk in response.aiter_raw():
                        for event in parser.feed(chunk):
                            if event.type == "end":
                                return ids
                            ids.append(event.last_event_id)
            return ids

        tails = [asyncio.create_task(tail()) for _ in range(8)]
        await asyncio.sleep(0.5)
        # Appends on fresh connections too, so both processes write to the one SQLite file.
        for start in range(0, total, 10):
            async with httpx.AsyncClient(base_url=server.url) as client:
                r = await client.post(
                    f"/api/jobs/{job['id']}/lines",
                    json={"lines": [f"l{n}" for n in range(start, start + 10)], "first": start + 1},
                    headers=auth(job),
                )
                assert r.status_code == 200, r.text
        httpx.post(
            f"{server.url}/api/jobs/{job['id']}/finish",
            json={"status": "succeeded", "exit_code": 0},
            headers=auth(job),
        )
        async with asyncio.timeout(20):
            results = await asyncio.gather(*tails)
        for ids in results:
            assert ids == [str(n) for n in range(1, total + 1)]
        took = await asyncio.to_thread(server.stop, signal.SIGTERM, 20.0)
        assert took < 10
    finally:
        server.stop(signal.SIGKILL)
