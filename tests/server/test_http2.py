"""HTTP/2: h2c with prior knowledge, HTTP/2 over TLS (and HTTP/1.1 beside both); several SSE
streams multiplexed on one connection while a writer appends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from support.api import (
    TIMEOUT,
    Tail,
    all_lines,
    append,
    finish,
    new_job,
    post_text,
    read_sse,
)
from support.server import ServerProcess

HOP_BY_HOP = ("connection", "transfer-encoding", "keep-alive", "upgrade", "proxy-connection")


def h2c(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, http1=False, http2=True, timeout=TIMEOUT)


def h2_tls(server: ServerProcess, tls: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, http2=True, verify=tls["context"], timeout=TIMEOUT
    )


def h1(server: ServerProcess, tls: dict[str, Any] | None = None) -> httpx.AsyncClient:
    kwargs: dict[str, Any] = {"verify": tls["context"]} if tls else {}
    return httpx.AsyncClient(
        base_url=server.url, http1=True, http2=False, timeout=TIMEOUT, **kwargs
    )


def open_connections(client: httpx.AsyncClient) -> int:
    """How many connections the client's pool holds (httpx keeps this internal)."""
    pool = client._transport._pool  # type: ignore[attr-defined]
    return len(pool.connections)


async def append_and_tail(client: httpx.AsyncClient, version: str) -> None:
    job = await new_job(client, f"over {version}")
    r = await client.post(
        f"/api/jobs/{job['id']}/lines",
        json={"lines": ["a", "b\rc"]},
        headers={"Authorization": f"Bearer {job['token']}"},
    )
    assert r.status_code == 200 and r.http_version == version
    r = await post_text(client, job, "d\r\né\n".encode())
    assert r.status_code == 200 and r.http_version == version
    assert r.json()["line_count"] == 4
    async with Tail(client, f"/api/jobs/{job['id']}/log") as tail:
        await tail.wait(lambda t: len(t.events) >= 4, what="replayed lines")
        resp = tail.result.response
        assert resp is not None and resp.http_version == version
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-accel-buffering"] == "no"
        if version == "HTTP/2":
            for name in HOP_BY_HOP:
                assert name not in resp.headers, (name, resp.headers)
        await append(client, job, ["live"])
        await tail.wait(lambda t: len(t.events) >= 5, what="live line")
        await finish(client, job, line_count=5)
        await tail.ended()
    assert [(e.type, e.data, e.last_event_id) for e in tail.events[:5]] == [
        ("message", "a", "1"),
        ("message", "b\nc", "2"),
        ("message", "d", "3"),
        ("message", "é", "4"),
        ("message", "live", "5"),
    ]
    assert tail.events[-1].type == "end"
    assert json.loads(tail.events[-1].data)["line_count"] == 5
    assert tail.result.parser.retry is not None
    assert b"\r" not in tail.raw
    text = await client.get(f"/api/jobs/{job['id']}/log")
    assert text.http_version == version
    assert text.content == "a\nb\rc\nd\né\nlive\n".encode()


async def test_h2c_prior_knowledge(shared_server: ServerProcess) -> None:
    async with h2c(shared_server) as client:
        async with asyncio.timeout(30):
            await append_and_tail(client, "HTTP/2")
        assert open_connections(client) == 1


async def test_http11_plain(shared_server: ServerProcess) -> None:
    async with h1(shared_server) as client:
        async with asyncio.timeout(30):
            await append_and_tail(client, "HTTP/1.1")


async def test_h2_over_tls(tls_server: ServerProcess, tls: dict[str, Any]) -> None:
    assert tls_server.url.startswith("https://")
    async with h2_tls(tls_server, tls) as client:
        async with asyncio.timeout(30):
            await append_and_tail(client, "HTTP/2")
        assert open_connections(client) == 1


async def test_http11_over_tls(tls_server: ServerProcess, tls: dict[str, Any]) -> None:
    async with h1(tls_server, tls) as client:
        async with asyncio.timeout(30):
            await append_and_tail(client, "HTTP/1.1")


async def test_tls_refuses_an_untrusted_client_context(tls_server: ServerProcess) -> None:
    """Sanity check of the fixture: without the test CA the certificate is not trusted."""
    async with httpx.AsyncClient(base_url=tls_server.url, http2=True) as client:
        with pytest.raises(httpx.ConnectError):
            async with asyncio.timeout(TIMEOUT):
                await client.get("/healthz")


async def server_streams(client: httpx.AsyncClient) -> int:
    """How many log streams the server has open (from /healthz)."""
    async with asyncio.timeout(TIMEOUT):
        r = await client.get("/healthz")
    assert r.status_code == 200
    return int(r.json()["streams"])


async def multiplexed_streams(
    client: httpx.AsyncClient,
    writer: httpx.AsyncClient,
    monitor: httpx.AsyncClient,
    streams: int = 5,
    rounds: int = 20,
) -> None:
    job = await new_job(writer, "multiplexed")
    await append(writer, job, ["head 1", "head 2"])
    before = await server_streams(monitor)
    tails = [Tail(client, f"/api/jobs/{job['id']}/log") for _ in range(streams)]
    for tail in tails:
        await tail.__aenter__()
    try:
        # Wait until the server runs all the streams. (Not until each has shown its first
        # bytes: httpcore 1.0.9 can leave a stream's received frames queued while another
        # stream's task holds its read lock, blocked on an idle connection, until more data
        # arrives; the appends below provide that data.)
        async with asyncio.timeout(TIMEOUT):
            while await server_streams(monitor) < before + streams:
                await asyncio.sleep(0.02)
        assert open_connections(client) == 1, "the streams must share one connection"
        for r in range(rounds):
            await append(writer, job, [f"r{r} x", f"r{r} y"])
        await finish(writer, job, line_count=2 + 2 * rounds)
        for tail in tails:
            await tail.ended(timeout=20)
    finally:
        for tail in tails:
            await tail.__aexit__(None, None, None)
    total = 2 + 2 * rounds
    expected = ["head 1", "head 2"] + [f"r{r} {s}" for r in range(rounds) for s in "xy"]
    for tail in tails:
        resp = tail.result.response
        assert resp is not None and resp.http_version == "HTTP/2"
        lines = tail.result.lines
        assert [e.data for e in lines] == expected
        assert [e.last_event_id for e in lines] == [str(n) for n in range(1, total + 1)]
        assert tail.events[-1].type == "end"
    assert [row["text"] for row in await all_lines(writer, job["id"])] == expected


async def test_five_sse_streams_on_one_h2c_connection(shared_server: ServerProcess) -> None:
    async with h2c(shared_server) as client, h2c(shared_server) as writer:
        async with asyncio.timeout(40):
            await multiplexed_streams(client, writer, writer)


async def test_five_sse_streams_on_one_tls_connection(
    tls_server: ServerProcess, tls: dict[str, Any]
) -> None:
    async with h2_tls(tls_server, tls) as client, h2_tls(tls_server, tls) as writer:
        async with asyncio.timeout(40):
            await multiplexed_streams(client, writer, writer)


async def test_streams_and_writes_share_one_tls_connection(
    tls_server: ServerProcess, tls: dict[str, Any]
) -> None:
    """Readers and the writer on the very same HTTP/2 connection."""
    async with h2_tls(tls_server, tls) as client, h1(tls_server, tls) as monitor:
        async with asyncio.timeout(40):
            await multiplexed_streams(client, client, monitor, streams=5, rounds=10)
        assert open_connections(client) == 1


async def test_concurrent_appends_over_tls_h2(
    tls_server: ServerProcess, tls: dict[str, Any]
) -> None:
    async with h2_tls(tls_server, tls) as client:
        job = await new_job(client, "h2 appends")

        async def worker(w: int) -> None:
            for r in range(5):
                answer = await append(client, job, [f"w{w} r{r} {k}" for k in range(4)])
                assert answer["stored"] == 4

        async with asyncio.timeout(30):
            await asyncio.gather(*(worker(w) for w in range(10)))
        rows = await all_lines(client, job["id"])
        assert [row["n"] for row in rows] == list(range(1, 201))
        assert len({row["text"] for row in rows}) == 200
        assert open_connections(client) == 1


async def test_h2_error_answers_are_json(tls_server: ServerProcess, tls: dict[str, Any]) -> None:
    async with h2_tls(tls_server, tls) as client:
        async with asyncio.timeout(TIMEOUT):
            job = await new_job(client, "errors")
            r = await client.get("/api/jobs/987654321/log", headers={"Accept": "text/event-stream"})
            assert r.http_version == "HTTP/2" and r.status_code == 404
            assert r.json()["error"] == "not_found"
            r = await client.get(
                f"/api/jobs/{job['id']}/log",
                headers={"Accept": "text/event-stream", "Last-Event-ID": "x"},
            )
            assert r.status_code == 400
            r = await client.post(
                f"/api/jobs/{job['id']}/lines",
                json={"lines": ["x"]},
                headers={"Authorization": "Bearer wrong"},
            )
            assert r.status_code == 403
            # The connection survived the refusals.
            r = await client.post(
                f"/api/jobs/{job['id']}/lines",
                json={"lines": ["x"]},
                headers={"Authorization": f"Bearer {job['token']}"},
            )
            assert r.status_code == 200 and r.http_version == "HTTP/2"
        assert open_connections(client) == 1


async def test_h2_finished_job_204_on_resume(
    tls_server: ServerProcess, tls: dict[str, Any]
) -> None:
    async with h2_tls(tls_server, tls) as client:
        job = await new_job(client, "resume h2")
        await append(client, job, ["a"])
        await finish(client, job)
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(
                f"/api/jobs/{job['id']}/log",
                headers={"Accept": "text/event-stream", "Last-Event-ID": "1"},
            )
        assert r.status_code == 204 and r.http_version == "HTTP/2"
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        assert [e.type for e in result.events] == ["message", "end"]
