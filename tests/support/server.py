"""A real logstream server for tests: `logstream serve` in a subprocess on 127.0.0.1, and the
small helpers every server test uses (create a job, its auth header, skip-or-fail)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

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
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.host = host
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
            sys.executable,
            "-m",
            "logstream",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
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


def create_job(base_url: str, name: str = "job", **kwargs: Any) -> dict[str, Any]:
    """Create a job over plain HTTP/1.1 (sync) and return its JSON (with token)."""
    response = httpx.post(f"{base_url}/api/jobs", json={"name": name}, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def auth(job: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {job['token']}"}


PG_ENV = "LOGSTREAM_TEST_POSTGRES_URL"
