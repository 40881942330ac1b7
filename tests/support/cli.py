"""Running the `logstream` command against a test server, and reading what it stored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

SERVER_STACK = (
    "quart",
    "hypercorn",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "werkzeug",
    "prometheus_client",
    "re2",
)


def cli_env(server: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    if server is not None:
        env["LOGSTREAM_SERVER"] = server
    env.update(extra)
    return env


def cli(
    server: str | None,
    *args: str,
    input: bytes | None = None,
    timeout: float = 30,
    **env: str,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        input=input,
        check=False,
        capture_output=True,
        env=cli_env(server, **env),
        timeout=timeout,
    )


def spawn(
    server: str, *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """`logstream ARGS` in the background (`env`: extra variables)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "logstream", *args], env=cli_env(server, **(env or {})), **kwargs
    )


def job_id_from(stderr: bytes) -> int:
    match = re.search(rb"job (\d+): http", stderr)
    assert match, stderr
    return int(match.group(1))


def stored(server: str, job_id: int) -> list[str]:
    texts: list[str] = []
    while True:
        response = httpx.get(
            f"{server}/api/jobs/{job_id}/lines", params={"after": len(texts), "limit": 10000}
        )
        if response.status_code == 404:
            return texts  # not created yet
        page = response.json()
        texts += [row["text"] for row in page["lines"]]
        if page["next_after"] is None:
            return texts


def job(server: str, job_id: int) -> dict[str, Any]:
    return httpx.get(f"{server}/api/jobs/{job_id}").json()  # type: ignore[no-any-return]


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_one_clean_line(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# --- the client path is light ---------------------------------------------------------------
