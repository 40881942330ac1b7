"""The append route's ASGI fast path (logstream/fastpath.py) against a real server.

The other API tests already exercise it (every append goes through it); these cover what only
the fast path does itself: assembling a body that arrives in many pieces, refusing one that
grows too large while keeping the connection usable, leaving other methods to Quart, and a
client that goes away mid-body.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from support.server import ServerProcess, auth, create_job

BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("fastpath"), env={"LOGSTREAM_MAX_BODY_BYTES": str(BODY_LIMIT)}
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _lines(base: str, job: dict[str, object]) -> list[str]:
    page = httpx.get(f"{base}/api/jobs/{job['id']}/lines", params={"limit": 10_000}).json()
    return [line["text"] for line in page["lines"]]


def _conn(server: ServerProcess) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def test_chunked_body_in_many_pieces_is_assembled(small_server: ServerProcess) -> None:
    job = create_job(small_server.url)
    conn = _conn(small_server)
    pieces = [b"one\ntw", b"o\nth", b"ree\n", b"", b"four"]
    conn.request(
        "POST",
        f"/api/jobs/{job['id']}/lines?first=1",
        body=iter([p for p in pieces if p]),
        headers={**auth(job), "Content-Type": "text/plain"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {
        "first": 1,
        "last": 4,
        "line_count": 4,
        "stored": 4,
        "skipped": 0,
        "job_status": "running",
        "cut": 0,
    }
    assert _lines(small_server.url, job) == ["one", "two", "three", "four"]


def test_body_over_the_limit_without_length_is_413_and_the_connection_lives(
    small_server: ServerProcess,
) -> None:
    job = create_job(small_server.url)
    conn = _conn(small_server)
    chunk = b"x" * 1000 + b"\n"
    conn.request(
        "POST",
        f"/api/jobs/{job['id']}/lines",
        body=iter([chunk] * 8),
        headers={**auth(job), "Content-Type": "text/plain"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    body = json.loads(response.read())
    assert body["error"] == "too_large" and body["limit"] == BODY_LIMIT
    # Same keep-alive connection: the next request is answered normally.
    conn.request(
        "POST",
        f"/api/jobs/{job['id']}/lines",
        body=json.dumps({"lines": ["ok"]}),
        headers={**auth(job), "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert json.loads(response.read())["line_count"] == 1
    assert _lines(small_server.url, job) == ["ok"]


def test_errors_are_the_same_json_as_elsewhere(small_server: ServerProcess) -> None:
    job = create_job(small_server.url)
    base = small_server.url
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines",
        content=b"{not json",
        headers={**auth(job), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert "not valid JSON" in r.json()["message"]
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines?first=x",
        content=b"a\n",
        headers={**auth(job), "Content-Type": "text/plain"},
    )
    assert r.status_code == 400 and r.json()["field"] == "first"
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines",
        content=b"a",
        headers={**auth(job), "Content-Type": "image/png"},
    )
    assert r.status_code == 415 and r.headers["content-type"] == "application/json"
    r = httpx.post(
        f"{base}/api/jobs/99999999999999999999999/lines", json={"lines": []}, headers=auth(job)
    )
    assert r.status_code == 404
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines",
        json={"lines": ["a"]},
        headers={"Authorization": "Basic abc"},
    )
    assert r.status_code == 401
    assert _lines(base, job) == []


def test_other_methods_on_the_path_go_to_quart(small_server: ServerProcess) -> None:
    job = create_job(small_server.url)
    r = httpx.put(
        f"{small_server.url}/api/jobs/{job['id']}/lines", json={"lines": ["a"]}, headers=auth(job)
    )
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"
    r = httpx.get(f"{small_server.url}/api/jobs/{job['id']}/lines")
    assert r.status_code == 200 and r.json()["lines"] == []


def test_client_leaving_mid_body_stores_nothing_and_server_carries_on(
    small_server: ServerProcess, tmp_path: Path
) -> None:
    job = create_job(small_server.url)
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=5) as sock:
        sock.sendall(
            f"POST /api/jobs/{job['id']}/lines HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {job['token']}\r\nContent-Type: text/plain\r\n"
            "Content-Length: 1000\r\n\r\npartial line\n".encode()
        )
        time.sleep(0.2)
    time.sleep(0.2)
    r = httpx.post(
        f"{small_server.url}/api/jobs/{job['id']}/lines",
        json={"lines": ["after"]},
        headers=auth(job),
    )
    assert r.status_code == 200 and r.json()["line_count"] == 1
    assert _lines(small_server.url, job) == ["after"]
    assert "Traceback" not in small_server.logs()


async def test_the_quart_test_client_takes_the_same_front_door(tmp_path: Path) -> None:
    """The fast paths are middleware on app.asgi_app: Quart's own test client reaches them."""
    from logstream.config import Settings
    from logstream.server.app import create_app
    from logstream.server.store.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'quart.db'}"
    upgrade(url)
    app = create_app(Settings.from_env({}, database_url=url, heartbeat=1.0))
    async with app.test_app() as test_app, asyncio.timeout(20):
        client = test_app.test_client()
        r = await client.post("/api/jobs", json={"name": "plain"})
        assert r.status_code == 201
        job = await r.get_json()
        headers = {"Authorization": f"Bearer {job['token']}"}
        r = await client.post(
            f"/api/jobs/{job['id']}/lines", json={"lines": ["a", "b"]}, headers=headers
        )
        assert r.status_code == 200 and (await r.get_json())["line_count"] == 2
        r = await client.post(
            f"/api/jobs/{job['id']}/lines?first=3",
            data="c\n",
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert r.status_code == 200 and (await r.get_json())["last"] == 3
        r = await client.post(
            f"/api/jobs/{job['id']}/lines", json={"lines": ["x\ny"]}, headers=headers
        )
        assert r.status_code == 400 and (await r.get_json())["field"] == "lines"
        r = await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "succeeded", "exit_code": 0},
            headers=headers,
        )
        assert r.status_code == 200
        r = await client.get(f"/api/jobs/{job['id']}/log?format=text")
        assert r.status_code == 200 and await r.get_data() == b"a\nb\nc\n"
        r = await client.get(f"/api/jobs/{job['id']}/log?format=sse&after=1")
        body = (await r.get_data()).decode()
        assert r.headers["Content-Type"] == "text/event-stream"
        assert "id: 2\ndata: b\n\nid: 3\ndata: c\n\n" in body and "event: end" in body
        r = await client.get(
            f"/api/jobs/{job['id']}/log",
            headers={"Accept": "text/event-stream", "Last-Event-ID": "3"},
        )
        assert r.status_code == 204


async def test_a_stream_body_that_fails_still_ends_the_response() -> None:
    """PITFALLS 2: an unfinished HTTP/2 body hangs the browser; the fast path always ends it."""
    from logstream.server.http.asgi import _stream

    sent: list[dict[str, object]] = []
    never = asyncio.Event()

    async def receive() -> dict[str, object]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(dict(message))

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 100\n\n"
        raise RuntimeError("boom")

    await asyncio.wait_for(_stream(200, [], body(), receive, send), 5)
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]
    assert sent[-1]["more_body"] is False


async def test_a_client_leaving_cancels_only_its_stream() -> None:
    from logstream.server.http.asgi import _stream

    left = asyncio.Event()
    closed: list[bool] = []

    async def receive() -> dict[str, object]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        pass

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b": ping\n\n"
                await asyncio.sleep(0.01)
        finally:
            closed.append(True)

    task = asyncio.create_task(_stream(200, [], body(), receive, send))
    await asyncio.sleep(0.05)
    left.set()
    await asyncio.wait_for(task, 5)  # returns normally: the disconnect is not an error
    assert closed == [True] and not task.cancelled()


def test_driver_errors_are_503_and_bugs_500() -> None:
    """The hot paths call the drivers directly, so their own exceptions (not SQLAlchemy's
    wrappers) must still read as "store unavailable": a PostgreSQL restart is a 503, not a 500."""
    import sqlite3

    import asyncpg
    from sqlalchemy.exc import InvalidRequestError

    from logstream.server.http.routes import error_answer as _error_answer
    from logstream.server.store.driver import is_store_error

    for error in (
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
        sqlite3.OperationalError("disk I/O error"),
        ConnectionRefusedError(),
    ):
        assert is_store_error(error)
        status, body = _error_answer(error)
        assert status == 503 and body["error"] == "unavailable"
    for bug in (ValueError("bug"), InvalidRequestError("bug")):
        assert not is_store_error(bug)
        assert _error_answer(bug)[0] == 500
