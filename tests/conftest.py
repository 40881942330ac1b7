"""Fixtures only: a real logstream server (Hypercorn in a subprocess on 127.0.0.1), TLS certs,
a fresh PostgreSQL database. The helpers they use live in tests/support/."""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.server import PG_ENV, ServerProcess, skip_or_fail

if TYPE_CHECKING:
    from logstream.server.services import Services


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on its own SQLite file, for one test."""
    proc = ServerProcess(tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests of a module that do not restart it (each uses its own jobs)."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A test CA (trustme) and a certificate for 127.0.0.1 and localhost."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    cafile = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return {
        "certfile": str(certfile),
        "keyfile": str(keyfile),
        "context": context,
        "cafile": str(cafile),
    }


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, tls: dict[str, Any]
) -> Iterator[ServerProcess]:
    """A server speaking HTTP/2 (and HTTP/1.1) over TLS with the test certificate."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("tls-server"), certfile=tls["certfile"], keyfile=tls["keyfile"]
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (dropped afterwards).

    Needs LOGSTREAM_TEST_POSTGRES_URL; scripts/test (and so CI) always sets it, so these tests
    never skip there. Run by hand without it, they skip with that reason.
    """
    import asyncio
    import concurrent.futures
    import uuid

    base = os.environ.get(PG_ENV)
    if not base:
        skip_or_fail(f"{PG_ENV} is not set")
    import asyncpg

    from logstream.server.store.migrate import upgrade

    name = "logstream_t_" + uuid.uuid4().hex[:12]
    admin = base.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def admin_sql(sql: str) -> None:
        # In a thread: an async fixture may be asking for this one inside a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run(sql)).result()

    admin_sql(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    upgrade(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        yield url
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Services]:
    """The server's services, started in-process on a fresh store (no HTTP).

    SQLite by default; parametrize it indirectly with "postgres" for a fresh PostgreSQL
    database, and give other settings with `@pytest.mark.services(feed_lines=64, ...)`.
    """
    from logstream.config import Settings
    from logstream.server.services import Services
    from logstream.server.store.migrate import upgrade

    marker = request.node.get_closest_marker("services")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'services.db'}"
    else:
        url = request.getfixturevalue("pg_url")  # migrated by that fixture
    settings = Settings.from_env(env={}, database_url=url, **options)
    if backend == "sqlite":
        upgrade(settings.database_url)
    svc = await Services.start(settings)
    try:
        yield svc
    finally:
        await svc.stop()
