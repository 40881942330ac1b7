"""Operations: /metrics (read back by prometheus-client's own parser, one process and several),
/healthz and /readyz, and start-up failures as one clear line."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.api import SSE, append, bearer, client_for, new_job
from support.cli import assert_one_clean_line, cli
from support.server import ServerProcess, free_port

METRICS_TOKEN = "metrics-reader-token"
RUNNER_TOKEN = "runner-token-for-metrics"

FAMILIES = {
    "logstream_appends": "counter",
    "logstream_lines": "counter",
    "logstream_append_seconds": "histogram",
    "logstream_writer_batch_operations": "histogram",
    "logstream_writer_commit_seconds": "histogram",
    "logstream_store_errors": "counter",
    "logstream_broker_reconnects": "counter",
    "logstream_jobs_ended_by_server": "counter",
    "logstream_open_streams": "gauge",
    "logstream_live_feeds": "gauge",
}


def parse(text: str) -> dict[str, Any]:
    """name -> family, by prometheus-client's parser (strict about the text format)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    name = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for found in families[name].samples:
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
            return float(found.value)
    raise AssertionError(f"no sample {sample} {labels}")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("metrics-auth"),
        env={"LOGSTREAM_RUNNER_TOKEN": RUNNER_TOKEN, "LOGSTREAM_METRICS_TOKEN": METRICS_TOKEN},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


async def test_metrics_parse_and_count_what_happened(server: ServerProcess) -> None:
    async with client_for(server) as client:
        job = await new_job(client, "measured")
        for n in range(5):
            await append(client, job, [f"line {n}.{i}" for i in range(3)])
        async with client.stream("GET", f"/api/jobs/{job['id']}/log", headers=SSE) as stream:
            chunks = stream.aiter_raw()  # (kept: a dropped iterator closes the stream)
            await chunks.__anext__()  # the stream is open (its retry: arrived)
            r = await client.get("/metrics")
            await chunks.aclose()
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = parse(r.text)
    for name, kind in FAMILIES.items():
        assert families[name].type == kind, name
    assert value(families, "logstream_appends_total") == 5
    assert value(families, "logstream_lines_total") == 15
    assert value(families, "logstream_append_seconds_count") == 5
    assert value(families, "logstream_writer_batch_operations_count") >= 6  # the create too
    assert value(families, "logstream_writer_commit_seconds_count") >= 6
    assert value(families, "logstream_store_errors_total", where="writer") == 0
    assert value(families, "logstream_store_errors_total", where="request") == 0
    assert value(families, "logstream_broker_reconnects_total") == 0
    assert value(families, "logstream_open_streams") == 1
    assert value(families, "logstream_live_feeds") == 1


async def test_metrics_need_a_metrics_or_runner_token_when_tokens_are_on(
    token_server: ServerProcess,
) -> None:
    async with client_for(token_server) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=bearer("wrong"))).status_code == 403
        for token in (METRICS_TOKEN, RUNNER_TOKEN):
            r = await client.get("/metrics", headers=bearer(token))
            assert r.status_code == 200 and "logstream_appends" in parse(r.text)
        # Health checks stay open for load balancers.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_metrics_of_several_workers_add_up(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"LOGSTREAM_WORKERS": "2"})
    server.start()
    try:
        pids: set[int] = set()
        appended = 0
        async with asyncio.timeout(30):
            async with client_for(server) as first:
                job = await new_job(first, "workers")
            while len(pids) < 2 or appended < 10:
                # A fresh connection each time lands on either worker.
                async with client_for(server) as client:
                    pids.add((await client.get("/healthz")).json()["pid"])
                    await append(client, job, ["x"])
                    appended += 1
        # Each worker moves its counts to the shared files every second: whichever worker
        # answers a scrape then counts both.
        await asyncio.sleep(1.5)
        for _ in range(4):
            async with client_for(server) as client:
                families = parse((await client.get("/metrics")).text)
            assert value(families, "logstream_appends_total") == appended
            assert value(families, "logstream_lines_total") == appended
            assert value(families, "logstream_append_seconds_count") == appended
    finally:
        server.stop()


async def test_healthz_is_liveness_and_readyz_asks_the_store(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["ok"] is True
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"ok": True}


async def test_readyz_is_503_when_the_store_fails(tmp_path: Path, monkeypatch: Any) -> None:
    from logstream.config import Settings
    from logstream.server.app import create_app
    from logstream.server.store import queries

    async def broken(conn: Any) -> None:
        raise OSError("connection refused")

    from logstream.server.store.migrate import upgrade

    settings = Settings.from_env(env={}, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(settings.database_url)
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        assert (await client.get("/readyz")).status_code == 200
        monkeypatch.setattr(queries, "ping", broken)
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert (await r.get_json())["error"] == "unavailable"
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
        families = parse(await (await client.get("/metrics")).get_data(as_text=True))
        assert value(families, "logstream_store_errors_total", where="request") >= 1


# --- start-up failures -------------------------------------------------------------------------


def _serve(*args: str, **env: str) -> Any:
    return cli(None, "serve", "--port", str(env.pop("port", free_port())), *args, **env)


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("--database-url", f"sqlite:///{tmp_path / 'p.db'}", port=str(port))
    assert_one_clean_line(result, f"cannot listen on 127.0.0.1:{port}", "in use")


def test_an_unreachable_store_is_one_line_without_its_password() -> None:
    dead = free_port()
    result = _serve("--database-url", f"postgresql://bob:s3cret@127.0.0.1:{dead}/logs")
    err = assert_one_clean_line(result, "unreachable", f"postgresql://bob:***@127.0.0.1:{dead}")
    assert "s3cret" not in err


def test_a_store_without_the_schema_says_what_to_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = _serve("--database-url", url, LOGSTREAM_AUTO_MIGRATE="0")
    assert_one_clean_line(result, "no logstream schema", "logstream db upgrade")


@pytest.mark.postgres
def test_a_postgres_behind_on_migrations_says_what_to_run(pg_url: str) -> None:
    import asyncpg

    async def downgrade() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE alembic_version SET version_num = '0001'")
        finally:
            await conn.close()

    asyncio.run(downgrade())
    result = _serve("--database-url", pg_url)
    assert_one_clean_line(result, "schema revision 0001", "needs", "logstream db upgrade")


@pytest.mark.parametrize("direct", [True, False], ids=["buckets", "observe-at-flush"])
def test_a_tally_flushes_what_observe_would_have_recorded(direct: bool) -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from logstream.server.metrics import Tally

    registry = CollectorRegistry()
    buckets = (0.001, 0.01, 0.1)
    tallied = Histogram("tallied", "t", buckets=buckets, registry=registry)
    observed = Histogram("observed", "o", buckets=buckets, registry=registry)
    tally = Tally(tallied)
    if not direct:
        tally._direct = False  # as if a release had changed the histogram's internals
    values = [0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 3.0, 0.0]
    for v in values[:5]:
        tally.observe(v)
    tally.flush()
    for v in values[5:]:
        tally.observe(v)
    tally.flush()
    tally.flush()  # nothing new: no change
    for v in values:
        observed.observe(v)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        family = next(f for f in registry.collect() if f.name == name)
        return [
            (s.name.replace(name, ""), s.labels, s.value)
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert samples("tallied") == samples("observed")
    counter = Counter("things", "c", registry=registry)
    count = Tally(counter)
    count.inc()
    count.inc(4)
    count.flush()
    assert registry.get_sample_value("things_total") == 5
