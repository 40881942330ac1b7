"""A log server that is away never breaks the build: `run` runs the command anyway, exits with
its status after a short bounded wait, keeps what was not delivered, and `resend` sends it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from support.cli import cli, job, job_id_from, spawn, stored
from support.server import ServerProcess, free_port


def _kept(result_stderr: bytes) -> Path:
    text = result_stderr.decode()
    marker = "logstream resend "
    assert marker in text, text
    return Path(text.split(marker, 1)[1].split()[0])


def test_run_with_no_server_runs_the_command_and_keeps_its_output(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = cli(
        url,
        "run",
        "--give-up",
        "1",
        "--",
        "sh",
        "-c",
        "echo built; echo tested; exit 3",
        LOGSTREAM_OUTBOX_DIR=str(tmp_path),
    )
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr  # the command's own status
    assert result.stdout == b"built\ntested\n"  # it ran, its output on the terminal as always
    assert "Traceback" not in result.stderr.decode()
    assert took < 15, took  # bounded by --give-up, not the old 300 s
    kept = _kept(result.stderr)
    assert kept.parent == tmp_path and oct(kept.stat().st_mode & 0o777) == "0o600"
    record = json.loads(kept.read_text())
    assert record["lines"] == ["built", "tested"] and record["finish"] == ["failed", 3]
    assert record["job_id"] is None  # never created


def test_the_default_wait_after_the_command_is_short() -> None:
    result = cli(None, "run", "--help")
    assert b"[default: 30.0]" in result.stdout or b"default: 30" in result.stdout


def test_resend_delivers_a_kept_file_once(server: ServerProcess, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    result = cli(
        down,
        "run",
        "--give-up",
        "0.5",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo l$i; done",
        LOGSTREAM_OUTBOX_DIR=str(tmp_path),
    )
    assert result.returncode == 0
    kept = _kept(result.stderr)
    sent = cli(None, "resend", "--server", server.url, str(kept))
    assert sent.returncode == 0, sent.stderr
    assert not kept.exists()
    job_id = int(sent.stderr.decode().split("to job ")[1].split(";")[0])
    assert stored(server.url, job_id) == ["l1", "l2", "l3"]
    assert job(server.url, job_id)["status"] == "succeeded"


def test_a_server_arriving_halfway_gets_the_whole_log(tmp_path: Path) -> None:
    port = free_port()
    later = ServerProcess(tmp_path, port=port)
    script = "for i in $(seq 1 30); do echo line $i; sleep 0.1; done"
    proc = spawn(
        f"http://127.0.0.1:{port}",
        "run",
        "--give-up",
        "20",
        "--",
        "sh",
        "-c",
        script,
        env={"LOGSTREAM_OUTBOX_DIR": str(tmp_path)},
    )
    try:
        time.sleep(1.0)  # the command runs while no server listens
        later.start()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.decode().splitlines() == [f"line {i}" for i in range(1, 31)]
        job_id = job_id_from(err)
        assert stored(later.url, job_id) == [f"line {i}" for i in range(1, 31)]
        assert job(later.url, job_id)["status"] == "succeeded"
    finally:
        if proc.poll() is None:
            proc.kill()
        later.stop(signal.SIGKILL)


@pytest.mark.parametrize("flag", [[], ["--require-server"]])
def test_a_bad_server_url_is_still_an_error(flag: list[str]) -> None:
    result = cli("http://", "run", *flag, "--", "true")
    assert result.returncode == 125
