"""Fixtures: a real logstream server (Hypercorn in a subprocess on 127.0.0.1), TLS certs."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# scripts/test (and so CI) sets this: there, a missing PostgreSQL or Chromium is a failure,
# never a silent skip.
REQUIRE_ALL = os.environ.get("LOGSTREAM_TEST_REQUIRE_ALL") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip a test whose tool is missing on a developer's machine; fail under scripts/test."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (LOGSTREAM_TEST_REQUIRE_ALL=1: scripts/test must provide it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`logstream serve` in a subprocess; start(), stop(), restart() on the same database."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url or f"sqlite:///{workdir / 'logstream.db'}"
        self.env = env or {}
        self.certfile = certfile
        self.keyfile = keyfile
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
        env.update({"LOGSTREAM_HEARTBEAT": "15", "LOGSTREAM_LOG_LEVEL": "warning"})
        env.update(self.env)
        args = [
            sys.executable, "-m", "logstream", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--database-url", self.database_url,
        ]
        if self.certfile and self.keyfile:
            args += ["--certfile", self.certfile, "--keyfile", self.keyfile]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=self.workdir, env=env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Stop the server; returns how long it took to exit."""
        if self.proc is None:
            return 0.0
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.proc = None
        return time.monotonic() - started

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


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
    return {"certfile": str(certfile), "keyfile": str(keyfile), "context": context,
            "cafile": str(cafile)}


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


def create_job(base_url: str, name: str = "job", **kwargs: Any) -> dict[str, Any]:
    """Create a job over plain HTTP/1.1 (sync) and return its JSON (with token)."""
    response = httpx.post(f"{base_url}/api/jobs", json={"name": name}, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def auth(job: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {job['token']}"}


PG_ENV = "LOGSTREAM_TEST_POSTGRES_URL"


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

    from logstream.migrate import upgrade

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
