"""`logstream token create|list|revoke` on the server's database, and the read commands
(`tail`, `jobs`) sending LOGSTREAM_TOKEN to a server that needs tokens."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.auth import bearer, make_token, tokens_server
from support.cli import assert_one_clean_line, cli, cli_env
from support.server import ServerProcess


def test_create_prints_the_token_alone_and_list_never_shows_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    # Through a shell, the way an admin would capture it.
    script = (
        f"T=$({sys.executable} -m logstream token create --role read --name alice"
        f" --expires 90d --database-url {db}) && printf '%s' \"$T\""
    )
    shell = subprocess.run(
        ["sh", "-c", script], capture_output=True, env=cli_env(), check=False, timeout=60
    )
    assert shell.returncode == 0, shell.stderr
    token = shell.stdout.decode()
    assert token.startswith("lsk_") and token.strip() == token and "\n" not in token
    assert b"created read token 'alice'" in shell.stderr and b"expires" in shell.stderr
    listed = cli(None, "token", "list", "--database-url", db)
    assert listed.returncode == 0
    out = listed.stdout.decode()
    assert "alice" in out and "read" in out and "active" in out
    assert token not in out and token not in listed.stderr.decode()


def test_revoke_and_rotate(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    make_token(db, "runner", "ci")
    taken = cli(None, "token", "create", "--role", "read", "--name", "ci", "--database-url", db)
    assert_one_clean_line(taken, "exists")
    assert cli(None, "token", "revoke", "ci", "--database-url", db).returncode == 0
    again = cli(None, "token", "revoke", "ci", "--database-url", db)
    assert_one_clean_line(again, "no live token")
    make_token(db, "runner", "ci")  # the name is free again
    out = cli(None, "token", "list", "--database-url", db).stdout.decode()
    assert out.count("ci ") == 2 and "revoked" in out and "active" in out


@pytest.mark.parametrize("bad", ["0d", "-1d", "3y", "soon"])
def test_create_refuses_a_bad_duration(tmp_path: Path, bad: str) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    result = cli(
        None, "token", "create", "--role", "read", "--name", "x", "--expires", bad,
        "--database-url", db,
    )  # fmt: skip
    assert result.returncode == 2 and b"duration" in result.stderr
    assert result.stdout == b""


def test_token_commands_work_on_postgres(pg_url: str) -> None:
    token = make_token(pg_url, "admin", "pg-admin")
    assert token.startswith("lsk_")
    out = cli(None, "token", "list", "--database-url", pg_url).stdout.decode()
    assert "pg-admin" in out and "admin" in out
    assert cli(None, "token", "revoke", "pg-admin", "--database-url", pg_url).returncode == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = tokens_server(tmp_path_factory.mktemp("cli"))
    proc.reader = make_token(proc.database_url, "read", "cli-reader")  # type: ignore[attr-defined]
    proc.admin = make_token(proc.database_url, "admin", "cli-admin")  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


def test_tail_and_jobs_send_logstream_token(server: ServerProcess) -> None:
    admin, reader = server.admin, server.reader  # type: ignore[attr-defined]
    job = httpx.post(f"{server.url}/api/jobs", json={"name": "cli"}, headers=bearer(admin)).json()
    r = httpx.post(
        f"{server.url}/api/jobs/{job['id']}/lines",
        json={"lines": ["hello", "world"]},
        headers=bearer(job["token"]),
    )
    assert r.status_code == 200
    httpx.post(
        f"{server.url}/api/jobs/{job['id']}/finish",
        json={"status": "succeeded", "exit_code": 0},
        headers=bearer(job["token"]),
    )
    jobs = cli(server.url, "jobs", LOGSTREAM_TOKEN=reader)
    assert jobs.returncode == 0, jobs.stderr
    assert b"cli" in jobs.stdout
    for args in (("tail", str(job["id"])), ("tail", "-f", str(job["id"]))):
        result = cli(server.url, *args, LOGSTREAM_TOKEN=reader)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"hello\nworld\n"
    # Without a token: one clean line, no retrying.
    assert_one_clean_line(cli(server.url, "jobs"), "401")
    assert_one_clean_line(cli(server.url, "tail", "-f", str(job["id"])), "401")
    assert_one_clean_line(cli(server.url, "jobs", LOGSTREAM_TOKEN="lsk_wrong"), "403")


def test_push_to_a_job_reads_it_with_the_jobs_own_token(server: ServerProcess) -> None:
    admin = server.admin  # type: ignore[attr-defined]
    job = httpx.post(f"{server.url}/api/jobs", json={"name": "p"}, headers=bearer(admin)).json()
    result = cli(
        server.url, "push", str(job["id"]), input=b"pushed\n", LOGSTREAM_TOKEN=job["token"]
    )
    assert result.returncode == 0, result.stderr
    lines = httpx.get(
        f"{server.url}/api/jobs/{job['id']}/lines", headers=bearer(job["token"])
    ).json()
    assert [line["text"] for line in lines["lines"]] == ["pushed"]


def test_run_creates_with_a_runner_api_token(server: ServerProcess) -> None:
    runner = make_token(server.database_url, "runner", "cli-runner")
    result = cli(
        server.url,
        "run",
        "--name",
        "ran",
        "--require-server",
        "--",
        sys.executable,
        "-c",
        "print('from the job')",
        LOGSTREAM_RUNNER_TOKEN=runner,
    )
    assert result.returncode == 0, result.stderr
    assert b"from the job" in result.stdout
