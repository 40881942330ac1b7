"""The CLI's filters and views: `jobs --status/--name/--meta/--watch`, `tail NAME`,
`tail --timestamps`, `tail --since`, `push --tee`."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
from support.cli import assert_one_clean_line, cli, job_id_from, spawn, stored, wait_for
from support.server import ServerProcess, auth

STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_job(url: str, name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    r = httpx.post(f"{url}/api/jobs", json={"name": name, "meta": meta or {}})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def append(url: str, job: dict[str, Any], lines: list[str]) -> None:
    httpx.post(
        f"{url}/api/jobs/{job['id']}/lines", headers=auth(job), json={"lines": lines}
    ).raise_for_status()


def finish(url: str, job: dict[str, Any], status: str = "succeeded") -> None:
    httpx.post(
        f"{url}/api/jobs/{job['id']}/finish",
        headers=auth(job),
        json={"status": status, "exit_code": 0 if status == "succeeded" else 1},
    ).raise_for_status()


def ids_listed(result: subprocess.CompletedProcess[bytes]) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [int(line.split()[0]) for line in result.stdout.decode().splitlines()[1:]]


def test_jobs_filters_by_status_name_and_meta(shared_server: ServerProcess) -> None:
    url = shared_server.url
    name = unique("filtered")
    a = new_job(url, name, {"branch": "main"})
    b = new_job(url, name, {"branch": "dev"})
    c = new_job(url, name + "-other", {"branch": "main"})
    finish(url, a, "failed")
    finish(url, c, "succeeded")
    assert ids_listed(cli(url, "jobs", "--name", name)) == [b["id"], a["id"]]
    assert ids_listed(cli(url, "jobs", "--name", name, "--status", "failed")) == [a["id"]]
    result = cli(url, "jobs", "--name", name, "--status", "failed", "--status", "running")
    assert ids_listed(result) == [b["id"], a["id"]]
    result = cli(url, "jobs", "--name", name, "--meta", "branch=main", "--limit", "5")
    assert ids_listed(result) == [a["id"]]
    result = cli(url, "jobs", "--meta", "branch=main", "--status", "succeeded", "--json")
    assert c["id"] in [job["id"] for job in json.loads(result.stdout)]
    assert_one_clean_line(cli(url, "jobs", "--status", "done"), "status must be one of")
    result = cli(url, "jobs", "--meta", "branch")
    assert result.returncode == 2 and b"KEY=VALUE" in result.stderr


def test_jobs_watch_prints_the_list_again_when_it_changes(shared_server: ServerProcess) -> None:
    url = shared_server.url
    name = unique("watched")
    proc = spawn(url, "jobs", "--watch", "--interval", "0.2", "--name", name)
    assert proc.stdout is not None
    seen: list[bytes] = []

    def read_until(word: bytes) -> None:
        while not seen or word not in seen[-1]:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, b"".join(seen)
            seen.append(line)

    try:
        read_until(b"DURATION")  # the first (empty) list is on screen
        job = new_job(url, name)
        read_until(b"running")
        finish(url, job)
        read_until(b"succeeded")
        time.sleep(0.5)  # a few more refreshes, which print nothing: nothing changed
    finally:
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    out = (b"".join(seen) + rest).decode()
    tables = out.split("\n\n")
    assert len(tables) == 3, out  # empty, then running, then succeeded: each printed once
    assert tables[0].split() == ["ID", "NAME", "STATUS", "LINES", "DURATION"]
    assert tables[1].splitlines()[1].split()[:3] == [str(job["id"]), name, "running"]
    assert tables[2].splitlines()[1].split()[:3] == [str(job["id"]), name, "succeeded"]
    result = cli(url, "jobs", "--watch", "--json")
    assert result.returncode == 2 and b"do not go together" in result.stderr


def test_tail_by_name_takes_the_newest_job_of_that_name(shared_server: ServerProcess) -> None:
    url = shared_server.url
    name = unique("deploy")
    old, new = new_job(url, name), new_job(url, name)
    append(url, old, ["old"])
    append(url, new, ["new", "newer"])
    finish(url, new)
    result = cli(url, "tail", name)
    assert (result.returncode, result.stdout) == (0, b"new\nnewer\n"), result.stderr
    result = cli(url, "tail", "-f", "--tail", "1", name)
    assert (result.returncode, result.stdout) == (0, b"newer\n")
    assert_one_clean_line(cli(url, "tail", unique("nobody")), "no job is named")
    assert cli(url, "tail", "0").returncode == 2


def test_tail_timestamps(shared_server: ServerProcess, tmp_path: Any) -> None:
    url = shared_server.url
    job = new_job(url, unique("stamped"))
    append(url, job, ["one", "", "\x1b[1mtwo\x1b[0m"])
    result = cli(url, "tail", "--timestamps", str(job["id"]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split("\n")
    assert lines[-1] == "" and len(lines) == 4
    for line, text in zip(lines, ["one", "", "\x1b[1mtwo\x1b[0m"], strict=False):
        assert re.fullmatch(f"{STAMP} {re.escape(text)}", line), line
    result = cli(url, "tail", "-t", "--tail", "1", str(job["id"]))
    assert re.fullmatch(f"{STAMP} \x1b\\[1mtwo\x1b\\[0m\n", result.stdout.decode())
    # Following: the lines already there, then live ones, each once and stamped.
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out:
        proc = spawn(url, "tail", "-f", "-t", "--from", "2", str(job["id"]), stdout=out)
        wait_for(lambda: out_path.read_bytes().count(b"\n") >= 2, what="the first lines")
        append(url, job, [f"live {n}" for n in range(1500)])
        wait_for(lambda: out_path.read_bytes().count(b"\n") >= 1502, what="live lines")
        finish(url, job)
        assert proc.wait(20) == 0
    lines = out_path.read_text().splitlines()
    texts = [line.split(" ", 1)[1] for line in lines]
    assert texts == ["", "\x1b[1mtwo\x1b[0m", *[f"live {n}" for n in range(1500)]]
    assert all(re.match(STAMP + " ", line) for line in lines)


def test_tail_since_starts_at_the_lines_of_that_last_while(server: ServerProcess) -> None:
    url = server.url
    job = new_job(url, "since")
    append(url, job, [f"line {n}" for n in range(1, 101)])
    # Lines 1-60 were stored an hour ago, 61-80 twenty minutes ago, the rest five minutes ago
    # (so no window boundary is near, however slowly the test runs).
    with sqlite3.connect(server.workdir / "logstream.db") as db:
        db.execute("UPDATE lines SET ts_ms = ts_ms - 3600000 WHERE no <= 60")
        db.execute("UPDATE lines SET ts_ms = ts_ms - 1200000 WHERE no > 60 AND no <= 80")
        db.execute("UPDATE lines SET ts_ms = ts_ms - 300000 WHERE no > 80")
    expected = "".join(f"line {n}\n" for n in range(81, 101)).encode()
    assert cli(url, "tail", "--since", "10m", str(job["id"])).stdout == expected
    expected = "".join(f"line {n}\n" for n in range(61, 101)).encode()
    assert cli(url, "tail", "--since", "30m", str(job["id"])).stdout == expected
    assert cli(url, "tail", "--since", "2h", "since").stdout.count(b"\n") == 100
    assert cli(url, "tail", "--since", "1m", "since").stdout == b""
    finish(url, job)
    result = cli(url, "tail", "-f", "-t", "--since", "10m", "since")
    assert result.returncode == 0 and result.stdout.count(b"\n") == 20
    assert result.stdout.decode().splitlines()[0].endswith(" line 81")
    result = cli(url, "tail", "--since", "soon", "since")
    assert result.returncode == 2 and b"--since" in result.stderr
    result = cli(url, "tail", "--since", "1m", "--tail", "3", "since")
    assert result.returncode == 2 and b"do not go together" in result.stderr


def test_push_tee_copies_the_input_to_stdout(shared_server: ServerProcess) -> None:
    url = shared_server.url
    data = b"a\nb\r\n\x1b[31mred\x1b[0m\n50%\r100%\nno end"
    result = cli(url, "push", "--name", unique("tee"), "--tee", "--finish", "succeeded", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert stored(url, job_id_from(result.stderr)) == [
        "a",
        "b",
        "\x1b[31mred\x1b[0m",
        "50%\r100%",
        "no end",
    ]
    result = cli(url, "push", "--name", unique("quiet"), input=b"x\n")
    assert result.returncode == 0 and result.stdout == b""


def test_push_tee_echoes_as_it_reads(shared_server: ServerProcess) -> None:
    proc = spawn(
        shared_server.url, "push", "--name", unique("tee live"), "--tee", stdin=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"first\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"first\n"  # before the input has ended
    proc.stdin.close()
    assert proc.wait(20) == 0


def test_watch_redraws_a_terminal_and_rides_out_an_absent_server() -> None:
    from logstream.runner.client import ServerError, Unreachable
    from logstream.runner.tail import watch_jobs

    answers: list[Any] = [
        [{"id": 1, "name": "a", "status": "running", "line_count": 0, "duration": None}],
        Unreachable("cannot reach it"),
        Unreachable("cannot reach it"),
        [{"id": 1, "name": "a", "status": "failed", "line_count": 3, "duration": 2.0}],
        KeyboardInterrupt(),
    ]

    def fetch() -> list[dict[str, Any]]:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    shown: list[str] = []
    warned: list[str] = []
    watch_jobs(fetch, shown.append, warned.append, interval=0.01, screen=True, title="t")
    assert not answers
    assert warned == ["cannot reach it; retrying every 0.01 s"]  # said once
    screens = [text for text in shown if text.startswith("\x1b[H\x1b[2J")]
    assert len(screens) == 2 and all("Every 0.01s: t" in text for text in screens)
    assert "running" in shown[1] and "failed" in shown[3]

    def refused() -> list[dict[str, Any]]:
        raise ServerError(400, "status must be one of ...")

    with pytest.raises(ServerError):
        watch_jobs(refused, shown.append, warned.append, interval=0.01, screen=False, title="t")
