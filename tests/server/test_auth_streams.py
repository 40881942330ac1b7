"""Open streams end when their credential does: a revoked token, an expired or ended session.

The server re-checks every LOGSTREAM_AUTH_RECHECK seconds (0.5 here): the stream gets
`event: signed_out` (no id: a resume keeps its place) and closes; a reconnect is refused, which
closes a browser's EventSource for good.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.api import Tail, append, client_for
from support.auth import bearer, make_token, revoke, tokens_server
from support.server import ServerProcess

# The re-check runs every 0.5 s; a lapse must be seen well within "a few seconds".
BOUND = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = tokens_server(tmp_path_factory.mktemp("streams"), LOGSTREAM_SESSION_TTL="3")
    proc.admin = make_token(proc.database_url, "admin", "admin")  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


def _admin(server: ServerProcess) -> str:
    return server.admin  # type: ignore[attr-defined,no-any-return]


async def _job(client: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    r = await client.post("/api/jobs", json={"name": "t"}, headers=bearer(_admin(server)))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _signed_out(tail: Tail) -> dict[str, Any] | None:
    found = [e for e in tail.events if e.type == "signed_out"]
    return json.loads(found[0].data) if found else None


@pytest.mark.parametrize("where", ["log", "events"])
async def test_revoking_a_token_ends_its_open_streams(server: ServerProcess, where: str) -> None:
    name = f"reader-{where}"
    token = make_token(server.database_url, "read", name)
    async with client_for(server) as client:
        job = await _job(client, server)
        path = f"/api/jobs/{job['id']}/log" if where == "log" else "/api/events"
        async with Tail(client, path, headers=bearer(token)) as tail:
            await tail.started()
            if where == "log":
                await append(client, job, ["before"])
                await tail.wait(lambda t: len(t.result.lines) == 1, what="the line")
            revoke(server.database_url, name)  # another process: only the store knows
            revoked_at = time.monotonic()  # committed (the CLI alone takes seconds when busy)
            await tail.ended(timeout=BOUND + 2)
            took = time.monotonic() - revoked_at
            assert _signed_out(tail) == {"reason": "revoked"}
            assert took < BOUND, took
            # The signed_out event carries no id: the last line's number is kept.
            if where == "log":
                assert tail.result.parser.last_event_id == "1"
        r = await client.get(path, headers={**bearer(token), "Accept": "text/event-stream"})
        assert r.status_code == 403 and r.json()["reason"] == "revoked"


def test_a_text_follow_is_cut_on_revocation(server: ServerProcess) -> None:
    """A text client cannot get an event: its body ends abnormally (not like a whole log)."""
    token = make_token(server.database_url, "read", "text-reader")
    received = b""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        job = http.post("/api/jobs", json={"name": "t"}, headers=bearer(_admin(server))).json()
        r = http.post(
            f"/api/jobs/{job['id']}/lines", json={"lines": ["one"]}, headers=bearer(job["token"])
        )
        assert r.status_code == 200
        with http.stream(
            "GET", f"/api/jobs/{job['id']}/log?follow=1", headers=bearer(token)
        ) as response:
            assert response.status_code == 200
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                for chunk in response.iter_raw():
                    received += chunk
                    if received == b"one\n":
                        revoke(server.database_url, "text-reader")
    assert received == b"one\n"  # nothing written into the log's text


async def test_an_expiring_session_ends_its_stream_and_cannot_reconnect(
    server: ServerProcess,
) -> None:
    reader = make_token(server.database_url, "read", "session-reader")
    async with client_for(server) as client:
        job = await _job(client, server)
        r = await client.post("/api/session", json={"token": reader})
        assert r.status_code == 200
        cookie = {"Cookie": f"logstream_session={r.cookies['logstream_session']}"}
        expires = r.json()["expires_at"]
        async with Tail(client, f"/api/jobs/{job['id']}/log", headers=cookie) as tail:
            await tail.started()
            await append(client, job, ["live"])
            await tail.wait(lambda t: len(t.result.lines) == 1, what="the line")
            await tail.ended(timeout=3 + BOUND)
            assert _signed_out(tail) == {"reason": "expired"}
        assert expires
        r = await client.get(
            f"/api/jobs/{job['id']}/log", headers={**cookie, "Accept": "text/event-stream"}
        )
        assert r.status_code == 401


async def test_signing_out_ends_the_sessions_streams(server: ServerProcess) -> None:
    reader = make_token(server.database_url, "read", "leaver")
    async with client_for(server) as client:
        job = await _job(client, server)
        r = await client.post("/api/session", json={"token": reader})
        cookie = {"Cookie": f"logstream_session={r.cookies['logstream_session']}"}
        async with Tail(client, f"/api/jobs/{job['id']}/log", headers=cookie) as tail:
            await tail.started()
            r = await client.delete(
                "/api/session", headers={**cookie, "Sec-Fetch-Site": "same-origin"}
            )
            assert r.status_code == 200
            await tail.ended(timeout=BOUND)
            assert _signed_out(tail) == {"reason": "signed_out"}


async def test_a_job_token_stream_and_a_live_token_stream_stay_open(
    server: ServerProcess,
) -> None:
    reader = make_token(server.database_url, "read", "stayer")
    async with client_for(server) as client:
        job = await _job(client, server)
        path = f"/api/jobs/{job['id']}/log"
        async with (
            Tail(client, path, headers=bearer(reader)) as by_token,
            Tail(client, path, headers=bearer(job["token"])) as by_job,
        ):
            await by_token.started()
            await by_job.started()
            await asyncio.sleep(1.5)  # three re-checks
            await append(client, job, ["still here"])
            for tail in (by_token, by_job):
                await tail.wait(lambda t: len(t.result.lines) == 1, what="the line")
                assert not tail.closed and _signed_out(tail) is None


@pytest.mark.postgres
async def test_a_revocation_through_one_instance_ends_a_stream_on_another(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = tokens_server(tmp_path_factory.mktemp("pg-a"))
    second = tokens_server(tmp_path_factory.mktemp("pg-b"))
    first.database_url = second.database_url = pg_url
    admin = make_token(pg_url, "admin", "pg-admin")
    reader = make_token(pg_url, "read", "pg-reader")
    first.start()
    second.start()
    try:
        async with client_for(first) as one, client_for(second) as two:
            r = await one.post("/api/jobs", json={"name": "pg"}, headers=bearer(admin))
            job = r.json()
            async with Tail(two, f"/api/jobs/{job['id']}/log", headers=bearer(reader)) as tail:
                await tail.started()
                await append(one, job, ["across"])
                await tail.wait(lambda t: len(t.result.lines) == 1, what="the line")
                r = await one.delete("/api/tokens/pg-reader", headers=bearer(admin))
                assert r.status_code == 200
                await tail.ended(timeout=BOUND)
                assert _signed_out(tail) == {"reason": "revoked"}
            # What ended the stream there ends requests there at once: no cached answer.
            r = await two.get("/api/jobs", headers=bearer(reader))
            assert r.status_code == 403
    finally:
        first.stop(signal.SIGKILL)
        second.stop(signal.SIGKILL)
