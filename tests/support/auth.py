"""Helpers for the tests of tokens and sessions: tokens made with the real CLI, a server with
LOGSTREAM_AUTH=tokens, signing in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from support.cli import cli
from support.server import ServerProcess

ENV_RUNNER = "env-runner-token-for-tests"


def make_token(database_url: str, role: str, name: str, expires: str | None = None) -> str:
    """`logstream token create` against the server's database; the token it printed."""
    args = ["token", "create", "--role", role, "--name", name, "--database-url", database_url]
    if expires is not None:
        args += ["--expires", expires]
    result = cli(None, *args)
    assert result.returncode == 0, result.stderr.decode()
    token = result.stdout.decode()
    assert token.endswith("\n") and token.count("\n") == 1, token
    return token.strip()


def revoke(database_url: str, name: str) -> None:
    """`logstream token revoke NAME`."""
    result = cli(None, "token", "revoke", name, "--database-url", database_url)
    assert result.returncode == 0, result.stderr.decode()


def tokens_server(workdir: Path, **env: str) -> ServerProcess:
    """A server (not started) that needs tokens, re-checking credentials every 0.5 s."""
    settings = {
        "LOGSTREAM_AUTH": "tokens",
        "LOGSTREAM_RUNNER_TOKEN": ENV_RUNNER,
        "LOGSTREAM_AUTH_RECHECK": "0.5",
    }
    settings.update(env)
    return ServerProcess(workdir, env=settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(base_url: str, token: str, **kwargs: Any) -> httpx.Response:
    """POST /api/session with the token (in the body)."""
    return httpx.post(f"{base_url}/api/session", json={"token": token}, timeout=10, **kwargs)


def session_cookie(response: httpx.Response) -> str:
    """The session cookie's value a sign-in answer set."""
    value = response.cookies.get("logstream_session")
    assert value, response.headers
    return value


def wait_until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
