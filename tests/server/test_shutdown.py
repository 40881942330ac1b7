"""SIGTERM with open streams: every stream says goodbye (comment + retry) and the server exits."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from support.server import ServerProcess, create_job
from support.sse_oracle import SSEParser

# Generous: the point is "ends by itself, soon", not a speed figure (bench/ measures speed).
PROMPT = 10.0


async def _hold_stream(
    client: httpx.AsyncClient, job_id: int, opened: asyncio.Event, counter: list[int], total: int
) -> tuple[bool, int | None]:
    parser = SSEParser()
    clean_end = False
    counted = False
    async with client.stream(
        "GET", f"/api/jobs/{job_id}/log", headers={"Accept": "text/event-stream"}
    ) as response:
        assert response.status_code == 200
        try:
            async for chunk in response.aiter_raw():
                parser.feed(chunk)
                if not counted and parser.retry is not None:
                    counted = True
                    counter[0] += 1
                    if counter[0] == total:
                        opened.set()
            clean_end = True  # the body ended properly (final chunk / END_STREAM)
        except httpx.RemoteProtocolError:
            clean_end = False
    counted = False
    return clean_end and any("shutting down" in c for c in parser.comments), parser.retry


async def test_sigterm_ends_open_streams_promptly(tmp_path: Path) -> None:
    # httpx's HTTP/2 client lets one idle stream hold the connection's read lock until data
    # arrives, so other streams' headers wait for the next heartbeat: keep heartbeats short.
    server = ServerProcess(tmp_path, env={"LOGSTREAM_HEARTBEAT": "0.5"})
    server.start()
    try:
        job = create_job(server.url, "held")
        n1, n2 = 150, 50
        opened1, opened2 = asyncio.Event(), asyncio.Event()
        c1, c2 = [0], [0]
        limits = httpx.Limits(max_connections=n1 + 10)
        async with (
            httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as h1,
            httpx.AsyncClient(base_url=server.url, http1=False, http2=True, timeout=30) as h2,
        ):
            tasks = [
                asyncio.create_task(_hold_stream(h1, job["id"], opened1, c1, n1)) for _ in range(n1)
            ]
            tasks += [
                asyncio.create_task(_hold_stream(h2, job["id"], opened2, c2, n2)) for _ in range(n2)
            ]
            async with asyncio.timeout(30):
                await opened1.wait()
                await opened2.wait()
            took = await asyncio.to_thread(server.stop, signal.SIGTERM, 30.0)
            async with asyncio.timeout(PROMPT):
                results = await asyncio.gather(*tasks)
        assert took < PROMPT, f"server took {took:.1f}s to exit"
        assert all(ok for ok, _ in results), "a stream did not end with the shutdown farewell"
        assert all(retry == 2000 for _, retry in results)
        assert "Traceback" not in server.logs()
    finally:
        server.stop(signal.SIGKILL)
