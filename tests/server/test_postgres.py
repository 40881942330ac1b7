"""PostgreSQL: the broker contract on both backends, several instances sharing one store,
and a PostgreSQL restart during a tail. Needs LOGSTREAM_TEST_POSTGRES_URL (set by scripts/test).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from support.resume import append_all, check_exact, line_text, read_with_drops
from support.server import REQUIRE_ALL, ServerProcess, auth, create_job

from logstream.server.live.broker import Broker, Hint, MemoryBroker
from logstream.server.live.pgbroker import PostgresBroker, decode, encode


class Collector:
    def __init__(self) -> None:
        self.hints: list[Hint] = []
        self.arrived = asyncio.Event()

    def __call__(self, hint: Hint) -> None:
        self.hints.append(hint)
        self.arrived.set()

    async def wait_for(self, count: int, seconds: float = 5) -> list[Hint]:
        async with asyncio.timeout(seconds):
            while len(self.hints) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.hints


@pytest.fixture(params=["memory", "postgres"])
async def broker_pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broker, Broker]]:
    """Two brokers that should hear each other: one shared in memory, or two PG connections."""
    if request.param == "memory":
        shared = MemoryBroker()
        await shared.start()
        yield shared, shared
        await shared.stop()
        return
    url = request.getfixturevalue("pg_url")
    a, b = PostgresBroker(url), PostgresBroker(url)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_broker_contract_delivers_hints_once_in_order(
    broker_pair: tuple[Broker, Broker],
) -> None:
    a, b = broker_pair
    heard_a, heard_b = Collector(), Collector()
    a.listen(heard_a)
    b.listen(heard_b)
    sent = [Hint(7, n, finished=(n == 5), event_id=n if n == 5 else 0) for n in range(1, 6)]
    for hint in sent:
        await a.publish(hint)
    assert await heard_b.wait_for(5) == sent
    await asyncio.sleep(0.2)  # our own NOTIFYs must not come back a second time
    assert heard_a.hints == sent


def test_payload_round_trip_and_garbage() -> None:
    hint = Hint(123, 456789, True, 42)
    assert decode(encode(hint)) == hint
    assert decode("nonsense") is None and decode("1:2:3") is None


async def test_broker_reconnects_and_rechecks(pg_url: str) -> None:
    rechecks = asyncio.Event()
    a = PostgresBroker(pg_url, on_reconnect=rechecks.set)
    b = PostgresBroker(pg_url)
    await a.start()
    await b.start()
    try:
        heard = Collector()
        a.listen(heard)
        admin = await asyncpg.connect(pg_url)
        try:
            # Kill a's listening connection from the server side.
            await admin.execute("SELECT pg_terminate_backend($1)", a._pid)
        finally:
            await admin.close()
        async with asyncio.timeout(10):
            await rechecks.wait()
        assert a.connects == 2
        await b.publish(Hint(1, 10))
        assert (await heard.wait_for(1))[0] == Hint(1, 10)
    finally:
        await a.stop()
        await b.stop()


@pytest.fixture
def two_instances(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[ServerProcess, ...]]:
    servers = tuple(
        ServerProcess(tmp_path / name, database_url=pg_url, env={"LOGSTREAM_POLL_INTERVAL": "5"})
        for name in ("a", "b")
    )
    for server in servers:
        server.workdir.mkdir()
        server.start()
    yield servers
    for server in servers:
        server.stop()


async def test_two_instances_one_store_exact_resume_across_them(
    two_instances: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_instances
    job = create_job(a.url, "multi")
    total = 2500
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=10) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=10) as cb,
    ):
        writer = asyncio.create_task(append_all(a.url, job, total, seed=11))
        readers = [
            asyncio.create_task(read_with_drops([ca, cb], job["id"], seed=s)) for s in range(4)
        ]
        results = await asyncio.gather(writer, *readers)
    for received, drops, end in results[1:]:
        check_exact(received, total)
        assert drops >= 3
        assert end["line_count"] == total


async def test_line_reaches_other_instance_by_notify(
    two_instances: tuple[ServerProcess, ServerProcess],
) -> None:
    """The re-check poll is 5 s here, so a prompt delivery can only come from NOTIFY."""
    a, b = two_instances
    job = create_job(a.url, "notify")
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as client:
        async with client.stream(
            "GET", f"/api/jobs/{job['id']}/log", headers={"Accept": "text/event-stream"}
        ) as response:
            chunks = response.aiter_raw()
            assert b"retry:" in await anext(chunks)
            r = httpx.post(
                f"{a.url}/api/jobs/{job['id']}/lines", json={"lines": ["hello"]}, headers=auth(job)
            )
            assert r.status_code == 200
            async with asyncio.timeout(2.5):
                data = b""
                while b"hello" not in data:
                    data += await anext(chunks)
    assert b"id: 1\ndata: hello\n\n" in data


async def test_concurrent_appends_from_two_instances_stay_gap_free(
    two_instances: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_instances
    job = create_job(a.url, "race")

    async def push(url: str, tag: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for i in range(40):
                r = await client.post(
                    f"/api/jobs/{job['id']}/lines",
                    json={"lines": [f"{tag}{i}.{k}" for k in range(5)]},
                    headers=auth(job),
                )
                assert r.status_code == 200, r.text

    await asyncio.gather(push(a.url, "a"), push(b.url, "b"), push(a.url, "c"), push(b.url, "d"))
    r = httpx.get(f"{b.url}/api/jobs/{job['id']}/lines", params={"limit": 10000})
    lines = r.json()["lines"]
    assert [line["n"] for line in lines] == list(range(1, 801))
    texts = [line["text"] for line in lines]
    assert len(set(texts)) == 800
    for tag in "abcd":  # each pusher's batches are contiguous and in its order
        mine = [t for t in texts if t.startswith(tag)]
        assert mine == [f"{tag}{i}.{k}" for i in range(40) for k in range(5)]


def _restart_postgres() -> None:
    clusters = sorted(os.listdir("/etc/postgresql"))
    assert clusters, "no PostgreSQL cluster on this machine"
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.skipif(
    (shutil.which("pg_ctlcluster") is None or os.geteuid() != 0) and not REQUIRE_ALL,
    reason="restarting PostgreSQL needs pg_ctlcluster and root",
)
async def test_tail_recovers_when_postgres_restarts(
    two_instances: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_instances
    job = create_job(a.url, "pg-restart")
    total = 1500
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=10) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=10) as cb,
    ):
        writer = asyncio.create_task(append_all(a.url, job, total, seed=5, survive_restarts=True))
        reader = asyncio.create_task(read_with_drops([ca, cb], job["id"], seed=9, deadline=120))
        await asyncio.sleep(random.uniform(0.3, 0.8))
        await asyncio.to_thread(_restart_postgres)
        await writer
        received, _drops, end = await reader
    check_exact(received, total)
    assert end["line_count"] == total
    r = httpx.get(f"{b.url}/api/jobs/{job['id']}/log")
    assert r.text == "".join(line_text(n) + "\n" for n in range(1, total + 1))
