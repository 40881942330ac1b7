"""`logstream tail` against a real server: printing, following, exit status, server restarts."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
from support.cli import cli, spawn, wait_for
from support.server import ServerProcess, auth, create_job


def streams(url: str) -> int:
    return int(httpx.get(f"{url}/healthz").json()["streams"])


def append(url: str, job: dict[str, Any], lines: list[str]) -> None:
    httpx.post(
        f"{url}/api/jobs/{job['id']}/lines", headers=auth(job), json={"lines": lines}
    ).raise_for_status()


def finish(url: str, job: dict[str, Any], status: str, code: int | None) -> None:
    httpx.post(
        f"{url}/api/jobs/{job['id']}/finish",
        headers=auth(job),
        json={"status": status, "exit_code": code},
    ).raise_for_status()


LINES = ["one", "", "50%\r100%", "tr\u00e8s", "\x1b[32mok\x1b[0m", "six"]
EXPECTED = "".join(line + "\n" for line in LINES).encode()


def test_tail_prints_the_log_now(shared_server: ServerProcess) -> None:
    url = shared_server.url
    job = create_job(url)
    append(url, job, LINES)
    result = cli(url, "tail", str(job["id"]))
    assert (result.returncode, result.stdout, result.stderr) == (0, EXPECTED, b"")
    assert cli(url, "tail", str(job["id"]), "--tail", "2").stdout == b"\x1b[32mok\x1b[0m\nsix\n"
    assert cli(url, "tail", str(job["id"]), "--from", "5").stdout == b"\x1b[32mok\x1b[0m\nsix\n"
    result = cli(url, "tail", str(job["id"]), "--from", "2", "--tail", "1")
    assert result.returncode == 2 and b"do not go together" in result.stderr


def test_tail_follow_exits_with_the_job_status(shared_server: ServerProcess) -> None:
    url = shared_server.url
    job = create_job(url)
    append(url, job, LINES)
    finish(url, job, "succeeded", 0)
    result = cli(url, "tail", "-f", str(job["id"]))
    assert (result.returncode, result.stdout, result.stderr) == (0, EXPECTED, b"")
    result = cli(url, "tail", "--follow", "--tail", "2", str(job["id"]))
    assert (result.returncode, result.stdout) == (0, b"\x1b[32mok\x1b[0m\nsix\n")
    for status, code in (("failed", 2), ("canceled", None)):
        job = create_job(url)
        append(url, job, LINES)
        finish(url, job, status, code)
        # `--from` past the end gets 204: the status then comes from the job itself
        args = ["--from", "7"] if status == "canceled" else []
        result = cli(url, "tail", "-f", *args, str(job["id"]))
        assert result.returncode == 1
        assert result.stdout == (b"" if args else EXPECTED)
        assert f"job {job['id']} {status} (exit code {code})".encode() in result.stderr


def test_tail_follow_streams_live_lines(shared_server: ServerProcess, tmp_path: Path) -> None:
    url = shared_server.url
    job = create_job(url)
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out:
        proc = spawn(url, "tail", "-f", "--tail", "0", str(job["id"]), stdout=out)
    append(url, job, ["before"])  # may land before or after the tail connects; --tail 0 counts
    wait_for(lambda: streams(url) == 1, what="the tail to connect")
    append(url, job, ["live 1", "live 2"])
    wait_for(lambda: out_path.read_bytes().endswith(b"live 2\n"), what="live lines")
    finish(url, job, "succeeded", 0)
    assert proc.wait(10) == 0
    assert out_path.read_bytes().endswith(b"live 1\nlive 2\n")


def test_tail_follow_across_server_restarts(server: ServerProcess, tmp_path: Path) -> None:
    url = server.url
    job = create_job(url)
    sent: list[str] = []

    def more(n: int) -> None:
        batch = [f"line {len(sent) + i}\r{i}" for i in range(n)]
        append(url, job, batch)
        sent.extend(batch)

    def printed() -> bytes:
        return out_path.read_bytes()

    more(20)
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out:
        proc = spawn(url, "tail", "-f", str(job["id"]), stdout=out)
    wait_for(lambda: printed().count(b"\n") == 20, what="first lines")
    server.stop()  # graceful: the stream ends with a farewell and a retry
    server.start()
    more(15)
    wait_for(lambda: printed().count(b"\n") == 35, timeout=15, what="lines after restart")
    server.stop(signal.SIGKILL)  # abrupt: the connection just drops
    server.start()
    more(15)
    finish(url, job, "succeeded", 0)
    assert proc.wait(20) == 0
    assert printed() == "".join(line + "\n" for line in sent).encode()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert b"reconnecting after line 20" in err and b"Traceback" not in err


def test_tail_follow_gives_up_on_a_server_that_stays_away(
    server: ServerProcess, tmp_path: Path
) -> None:
    job = create_job(server.url)
    proc = spawn(
        server.url, "tail", "-f", "--give-up", "1", str(job["id"]), stdout=subprocess.DEVNULL
    )
    wait_for(lambda: streams(server.url) == 1, what="the tail to connect")
    server.stop(signal.SIGKILL)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 1
    assert b"gave up after 1 s" in err and b"Traceback" not in err
