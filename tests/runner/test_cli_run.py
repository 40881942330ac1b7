"""`logstream run` against a real server: output, exit codes, partial lines, faults, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import cli, job, job_id_from, spawn, stored, wait_for
from support.server import ServerProcess

BOTH_STREAMS = """
import sys
sys.stdout.write("out 1\\nout 2\\n"); sys.stdout.flush()
sys.stderr.write("err 1\\n"); sys.stderr.flush()
sys.stdout.write("out \\u00e9 3\\r\\n" + ("out end" if "{end}" == "none" else "out end\\n"))
sys.stdout.flush()
sys.stderr.write("err end" if "{end}" == "none" else "err end\\n")
sys.exit({code})
"""


@pytest.mark.parametrize("end", ["none", "newline"])
def test_run_streams_stdout_and_stderr_and_passes_the_exit_code(
    shared_server: ServerProcess, end: str
) -> None:
    script = BOTH_STREAMS.format(end=end, code=3)
    result = cli(shared_server.url, "run", "--", sys.executable, "-c", script)
    assert result.returncode == 3, result.stderr
    newline = b"" if end == "none" else b"\n"
    # the terminal gets the output unchanged
    assert result.stdout == "out 1\nout 2\nout \u00e9 3\r\nout end".encode() + newline
    assert result.stderr.endswith(b"err 1\nerr end" + newline)
    assert result.stderr.count(b"\n") == 2 + (end == "newline")  # the job URL line, then ours
    new = job_id_from(result.stderr)
    lines = stored(shared_server.url, new)
    outs = ["out 1", "out 2", "out \u00e9 3", "out end"]
    assert [t for t in lines if t.startswith("out")] == outs
    assert [t for t in lines if t.startswith("err")] == ["err 1", "err end"]
    assert len(lines) == 6
    info = job(shared_server.url, new)
    assert (info["status"], info["exit_code"], info["line_count"]) == ("failed", 3, 6)


@pytest.mark.parametrize(
    ("command", "code", "status"),
    [
        (["true"], 0, "succeeded"),
        (["sh", "-c", "echo bye; exit 7"], 7, "failed"),
        (["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM, "failed"),
        (["no-such-command-xyz"], 127, "failed"),
    ],
)
def test_run_exit_codes(
    shared_server: ServerProcess, command: list[str], code: int, status: str
) -> None:
    result = cli(shared_server.url, "run", "--", *command)
    assert result.returncode == code, result.stderr
    assert b"Traceback" not in result.stderr
    info = job(shared_server.url, job_id_from(result.stderr))
    assert (info["status"], info["exit_code"]) == (status, code)
    if code == 127:
        assert stored(shared_server.url, info["id"]) == [
            "logstream: cannot run no-such-command-xyz: command not found"
        ]


def test_a_line_in_progress_is_sent_before_the_command_ends(shared_server: ServerProcess) -> None:
    url = shared_server.url
    proc = spawn(url, "run", "--", "sh", "-c", "echo first; printf 'Continue? '; sleep 2; echo yes")
    assert proc.stderr is not None
    new = job_id_from(proc.stderr.readline())
    wait_for(lambda: stored(url, new) == ["first", "Continue? "], timeout=3, what="partial line")
    assert proc.poll() is None  # still sleeping: the prompt went out without its line end
    assert proc.wait(10) == 0
    assert stored(url, new) == ["first", "Continue? ", "yes"]
    assert proc.stdout is not None and proc.stdout.read() == b"first\nContinue? yes\n"


def test_tty_keeps_colors(shared_server: ServerProcess) -> None:
    script = (
        "import sys; print('tty' if sys.stdout.isatty() else 'pipe');"
        "print('\\x1b[31mred\\x1b[0m'); sys.stderr.write('err\\n')"
    )
    result = cli(shared_server.url, "run", "--tty", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"tty\n\x1b[31mred\x1b[0m\nerr\n"
    assert stored(shared_server.url, job_id_from(result.stderr)) == [
        "tty",
        "\x1b[31mred\x1b[0m",
        "err",
    ]
    plain = cli(shared_server.url, "run", "--", sys.executable, "-c", script)
    assert plain.stdout.startswith(b"pipe\n")


def test_ctrl_c_cancels_the_job(shared_server: ServerProcess, tmp_path: Path) -> None:
    url = shared_server.url
    with open(tmp_path / "out", "wb") as out:
        proc = spawn(url, "run", "--", "sh", "-c", "echo ready; sleep 30; echo never", stdout=out)
    assert proc.stderr is not None
    new = job_id_from(proc.stderr.readline())
    wait_for(lambda: stored(url, new) == ["ready"], what="first line")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 128 + signal.SIGINT
    info = job(url, new)
    assert (info["status"], info["exit_code"]) == ("canceled", 128 + signal.SIGINT)
    assert stored(url, new) == ["ready"]


def test_server_killed_and_restarted_during_run_loses_nothing(server: ServerProcess) -> None:
    count = 250
    script = (
        "import time\n"
        f"for i in range({count}):\n"
        "    print(f'line {i} ' + 'x' * (i % 50), flush=True)\n"
        "    time.sleep(0.008)\n"
    )
    proc = spawn(server.url, "run", "--", sys.executable, "-u", "-c", script)
    wait_for(lambda: len(stored(server.url, 1)) >= 50, what="some lines")
    server.stop(signal.SIGKILL)
    time.sleep(0.7)
    server.start()
    stdout, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0, stderr
    expected = [f"line {i} " + "x" * (i % 50) for i in range(count)]
    assert stdout.decode().splitlines() == expected
    assert stored(server.url, 1) == expected
    info = job(server.url, 1)
    assert (info["status"], info["line_count"]) == ("succeeded", count)
    assert b"retrying" in stderr and b"reachable again" in stderr


def test_server_that_never_returns_gives_up_and_says_what_was_lost(
    server: ServerProcess,
) -> None:
    proc = spawn(
        server.url,
        "run",
        "--give-up",
        "1",
        "--",
        "sh",
        "-c",
        "echo first; sleep 1.5; echo late; echo later; exit 4",
    )
    wait_for(lambda: stored(server.url, 1) == ["first"], what="first line")
    server.stop(signal.SIGKILL)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 4
    assert time.monotonic() - started < 8
    *_, lost, kept = stderr.decode().strip().splitlines()
    assert "lines 2-3" in lost and "NOT delivered" in lost and "not finished" in lost, stderr
    assert "logstream resend " in kept, stderr  # what was lost is kept for later
    Path(kept.split("logstream resend ", 1)[1]).unlink()
    assert b"Traceback" not in stderr


def test_run_accepts_a_command_without_double_dash(shared_server: ServerProcess) -> None:
    result = cli(shared_server.url, "run", "--name", "ls", "sh", "-c", "echo $0 -n", "arg")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"arg -n\n"
    info = job(shared_server.url, job_id_from(result.stderr))
    assert info["name"] == "ls"
    assert info["meta"]["command"] == ["sh", "-c", "echo $0 -n", "arg"]


def test_job_token_stays_in_the_process(shared_server: ServerProcess) -> None:
    result = cli(shared_server.url, "run", "--", "sh", "-c", "env | grep LOGSTREAM_ | sort")
    lines = result.stdout.decode().splitlines()
    new = job_id_from(result.stderr)
    assert lines == [
        f"LOGSTREAM_JOB_ID={new}",
        f"LOGSTREAM_JOB_URL={shared_server.url}/jobs/{new}",
        f"LOGSTREAM_SERVER={shared_server.url}",
    ]
    assert b"token" not in result.stderr.lower()


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "logstream"
    if not script.exists():
        pytest.skip("the package is not installed in this environment")
    result = subprocess.run(
        [str(script), "run", "--help"], check=False, capture_output=True, timeout=30
    )
    assert result.returncode == 0 and b"--give-up" in result.stdout
