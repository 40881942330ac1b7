"""A job canceled on the server stops `logstream run`'s command and `push`'s reading;
keepalives keep a silent command's job from ending as lost; `tail -f` of a lost job fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.cli import cli, job, job_id_from, spawn, stored, wait_for
from support.server import ServerProcess

# A command that says its pid, prints a line, then waits (optionally deaf to SIGTERM).
WAITER = """
import os, signal, sys, time
if "{deaf}" == "yes":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("pid", os.getpid(), flush=True)
print("working", flush=True)
time.sleep(60)
print("never", flush=True)
"""


@pytest.fixture(scope="module")
def short_timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Jobs are lost after 1.5 s of silence here."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("short-timeout"), env={"LOGSTREAM_JOB_TIMEOUT": "1.5"}
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _start_waiter(
    url: str, tmp_path: Path, *flags: str, deaf: bool = False
) -> tuple[subprocess.Popen[bytes], int, int]:
    script = WAITER.format(deaf="yes" if deaf else "no")
    out = open(tmp_path / "out", "wb")  # noqa: SIM115 (the child keeps it)
    proc = spawn(
        url, "run", "--keepalive", "0.3", *flags, "--", sys.executable, "-c", script, stdout=out
    )
    out.close()
    assert proc.stderr is not None
    new = job_id_from(proc.stderr.readline())
    texts = wait_for(lambda: (t := stored(url, new)) and len(t) >= 2 and t, what="first lines")
    assert texts[1] == "working"
    return proc, new, int(texts[0].split()[1])


@pytest.mark.parametrize("deaf", [False, True], ids=["sigterm", "sigkill-after-grace"])
def test_a_cancel_stops_the_command_and_ends_the_job_canceled(
    shared_server: ServerProcess, tmp_path: Path, deaf: bool
) -> None:
    url = shared_server.url
    proc, new, pid = _start_waiter(url, tmp_path, "--cancel-grace", "0.5", deaf=deaf)
    r = httpx.post(f"{url}/api/jobs/{new}/cancel", json={})
    assert r.status_code == 202, r.text
    code = proc.wait(15)
    expected = 128 + (signal.SIGKILL if deaf else signal.SIGTERM)
    assert code == expected
    assert _gone(pid)
    info = job(url, new)
    assert (info["status"], info["exit_code"]) == ("canceled", expected)
    texts = stored(url, new)
    assert texts[:2] == [f"pid {pid}", "working"]
    assert texts[2].startswith("logstream: the job was canceled on the server; stopping")
    assert "never" not in texts
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "canceled on the server" in err and "Traceback" not in err


def test_push_stops_reading_and_finishes_canceled(shared_server: ServerProcess) -> None:
    url = shared_server.url
    proc = spawn(url, "push", "--name", "piped", "--keepalive", "0.3", stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    new = job_id_from(proc.stderr.readline())
    proc.stdin.write(b"one\ntwo\n")
    proc.stdin.flush()
    wait_for(lambda: stored(url, new) == ["one", "two"], what="piped lines")
    assert httpx.post(f"{url}/api/jobs/{new}/cancel", json={}).status_code == 202
    assert proc.wait(10) == 1  # the input is still open: push stopped by itself
    proc.stdin.close()
    info = job(url, new)
    assert info["status"] == "canceled"
    assert stored(url, new) == ["one", "two"]
    assert "was canceled on the server" in proc.stderr.read().decode()


def test_keepalives_keep_a_silent_command_from_being_lost(
    short_timeout_server: ServerProcess,
) -> None:
    url = short_timeout_server.url
    script = "import time; print('start', flush=True); time.sleep(4); print('end')"
    result = cli(url, "run", "--keepalive", "0.3", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    info = job(url, job_id_from(result.stderr))
    assert info["status"] == "succeeded"
    assert stored(url, info["id"]) == ["start", "end"]


def test_without_keepalives_the_job_is_lost_and_tail_fails(
    short_timeout_server: ServerProcess,
) -> None:
    url = short_timeout_server.url
    created = httpx.post(f"{url}/api/jobs", json={"name": "abandoned"}).json()
    started = time.monotonic()
    result = cli(url, "tail", "-f", str(created["id"]), timeout=20)
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert result.stdout.decode().startswith("logstream: job lost: no output and no keepalive")
    assert "lost" in result.stderr.decode()
    assert job(url, created["id"])["status"] == "lost"
