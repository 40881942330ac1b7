from __future__ import annotations

import httpx
from support.server import ServerProcess, auth, create_job
from support.sse_oracle import SSEParser


async def test_append_then_stream_to_end(server: ServerProcess) -> None:
    job = create_job(server.url)
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post(
            f"/api/jobs/{job['id']}/lines", json={"lines": ["a", "b"]}, headers=auth(job)
        )
        assert r.json()["line_count"] == 2
        r = await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "succeeded", "exit_code": 0},
            headers=auth(job),
        )
        assert r.status_code == 200
        parser = SSEParser()
        events = []
        async with client.stream(
            "GET", f"/api/jobs/{job['id']}/log", headers={"Accept": "text/event-stream"}
        ) as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            async for chunk in resp.aiter_bytes():
                events += parser.feed(chunk)
        assert [(e.type, e.data, e.last_event_id) for e in events[:2]] == [
            ("message", "a", "1"),
            ("message", "b", "2"),
        ]
        assert events[2].type == "end"
