"""The `logstream` command line against a real server: imports, bad input, push, jobs.

The helpers that run the command live in support/cli.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support.cli import (
    SERVER_STACK,
    assert_one_clean_line,
    cli,
    cli_env,
    job,
    job_id_from,
    spawn,
    stored,
    wait_for,
)
from support.server import ServerProcess, auth, create_job, free_port


def test_client_path_imports_none_of_the_server_stack(shared_server: ServerProcess) -> None:
    code = f"""
import sys
import logstream.cli, logstream.runner.client, logstream.runner.delivery, logstream.runner.run
import logstream.runner.tail
try:
    logstream.cli.main(["jobs", "--server", {shared_server.url!r}])
except SystemExit:
    pass
bad = sorted(m for m in sys.modules if m.split(".")[0] in {SERVER_STACK!r})
ours = sorted(m for m in sys.modules if m.startswith("logstream."))
print("BAD", bad)
print("OURS", ours)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, env=cli_env(), timeout=30
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "BAD []" in out, out
    assert "logstream.server" not in out, out


def test_help_does_not_import_httpx() -> None:
    code = (
        "import sys, logstream.cli as c\ntry: c.main(['--help'])\nexcept SystemExit: pass\n"
        "print('HTTPX', 'httpx' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, timeout=30
    )
    assert b"HTTPX False" in result.stdout


# --- bad input: one clear line, no traceback --------------------------------------------------


def test_invalid_server_url() -> None:
    for args in (["run", "--", "true"], ["tail", "1"], ["jobs"], ["push", "--name", "x"]):
        result = cli("http://", *args, input=b"")
        assert_one_clean_line(result, "invalid server URL")
        assert result.returncode == (125 if args[0] == "run" else 1)
    for url in ("not a url", "ftp://example.com", "http://host:port"):
        assert_one_clean_line(cli(url, "jobs"), "invalid server URL", url)


def test_unreachable_server_with_require_server_does_not_run_the_command() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(url, "run", "--require-server", "--", "echo", "never")
    assert result.returncode == 125
    assert_one_clean_line(result, "cannot reach", url)
    assert result.stdout == b""  # the command did not run
    assert_one_clean_line(cli(url, "jobs"), "cannot reach")


def test_unknown_job(shared_server: ServerProcess) -> None:
    url = shared_server.url
    assert_one_clean_line(cli(url, "tail", "999999"), "999999", "does not exist")
    assert_one_clean_line(cli(url, "tail", "-f", "999999"), "does not exist")
    assert_one_clean_line(
        cli(url, "push", "999999", "--token", "t", input=b"x\n"), "does not exist"
    )


def test_push_needs_a_valid_token(shared_server: ServerProcess) -> None:
    target = create_job(shared_server.url)
    url = shared_server.url
    assert_one_clean_line(cli(url, "push", str(target["id"]), input=b"x\n"), "LOGSTREAM_TOKEN")
    result = cli(url, "push", str(target["id"]), input=b"x\n", LOGSTREAM_TOKEN="wrong")
    assert_one_clean_line(result, "not valid", "403")
    assert stored(url, target["id"]) == []


def test_push_to_a_finished_job(shared_server: ServerProcess) -> None:
    url = shared_server.url
    target = create_job(url)
    httpx.post(
        f"{url}/api/jobs/{target['id']}/finish",
        headers=auth(target),
        json={"status": "succeeded", "exit_code": 0},
    ).raise_for_status()
    result = cli(url, "push", str(target["id"]), input=b"x\n", LOGSTREAM_TOKEN=target["token"])
    assert_one_clean_line(result, "finished")


def test_runner_token_is_required_and_checked(tmp_path: Path) -> None:
    guarded = ServerProcess(tmp_path, env={"LOGSTREAM_RUNNER_TOKEN": "sesame"})
    guarded.start()
    try:
        url = guarded.url
        result = cli(url, "run", "--require-server", "--", "echo", "hi")
        assert result.returncode == 125
        assert_one_clean_line(result, "runner token")
        result = cli(
            url, "run", "--require-server", "--", "echo", "hi", LOGSTREAM_RUNNER_TOKEN="wrong"
        )
        assert result.returncode == 125
        assert_one_clean_line(result, "not valid")
        assert_one_clean_line(cli(url, "push", "--name", "p", input=b"x\n"), "runner token")
        result = cli(url, "run", "--", "echo", "hi", LOGSTREAM_RUNNER_TOKEN="sesame")
        assert result.returncode == 0 and result.stdout == b"hi\n"
        new = job_id_from(result.stderr)
        assert stored(url, new) == ["hi"]
        assert job(url, new)["status"] == "succeeded"
    finally:
        guarded.stop()


# --- push and jobs ------------------------------------------------------------------------------


def test_push_creates_appends_and_finishes(shared_server: ServerProcess) -> None:
    url = shared_server.url
    result = cli(
        url,
        "push",
        "--name",
        "from stdin",
        "--finish",
        "failed",
        "--exit-code",
        "2",
        input=b"a\nb\r\n50%\r100%\nno end",
    )
    assert result.returncode == 0, result.stderr
    new = job_id_from(result.stderr)
    assert stored(url, new) == ["a", "b", "50%\r100%", "no end"]
    info = job(url, new)
    assert (info["name"], info["status"], info["exit_code"]) == ("from stdin", "failed", 2)

    target = create_job(url)
    httpx.post(
        f"{url}/api/jobs/{target['id']}/lines", headers=auth(target), json={"lines": ["one"]}
    ).raise_for_status()
    result = cli(
        url, "push", str(target["id"]), input=b"two\nthree\n", LOGSTREAM_TOKEN=target["token"]
    )
    assert result.returncode == 0 and result.stderr == b""
    assert stored(url, target["id"]) == ["one", "two", "three"]
    assert job(url, target["id"])["status"] == "running"


def test_push_survives_a_server_restart(server: ServerProcess) -> None:
    proc = spawn(
        server.url, "push", "--name", "restart", "--finish", "succeeded", stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    expected = [f"line {i}" for i in range(30)]
    proc.stdin.write(("\n".join(expected[:10]) + "\n").encode())
    proc.stdin.flush()
    wait_for(lambda: len(stored(server.url, 1)) == 10, what="first lines")
    server.stop()
    proc.stdin.write(("\n".join(expected[10:20]) + "\n").encode())
    proc.stdin.flush()
    time.sleep(0.5)
    server.start()
    proc.stdin.write(("\n".join(expected[20:]) + "\n").encode())
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert stored(server.url, 1) == expected
    assert job(server.url, 1)["status"] == "succeeded"


def test_jobs_lists_recent_jobs(shared_server: ServerProcess) -> None:
    url = shared_server.url
    result = cli(url, "run", "--name", "listed job", "--", "echo", "hi")
    assert result.returncode == 0
    new = job_id_from(result.stderr)
    result = cli(url, "jobs", "--limit", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "LINES", "DURATION"]
    row = next(line for line in lines if line.split()[0] == str(new))
    assert "listed job" in row and "succeeded" in row and re.search(r"\s1\s", row)
    assert re.search(r"\d+\.\ds$", row)
