"""The wheel, installed the way a user installs it, works on its own (no checkout beside it).

Builds the wheel from this repository, installs it into a fresh venv, first alone (the runner
side: `serve` must say in one line that it needs the server extra), then with `[server]`; then
starts `logstream serve` in an empty directory and uses it: dashboard pages, create, append,
tail, and `db upgrade` of another SQLite file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path, timeout: float = 600, **kw: object) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGSTREAM_", "PYTHON"))}
    env.update(kw.pop("env", {}))  # type: ignore[call-overload]
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False
    )
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, f"{args} failed:\n{out}"
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel built from this checkout installed, without extras."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    # Built from a copy of the sources: setuptools' build/ folder in a checkout can hold files
    # since removed or renamed (a stale migration), which a wheel built there would ship.
    source = work / "source"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "node_modules", "*.db*"
    )
    shutil.copytree(ROOT, source, ignore=skip)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=work)
    wheels = list(dist.glob("logstream-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=work)
    _run(venv / "bin/python", "-m", "pip", "install", "-q", wheels[0], cwd=work)
    (work / "wheel-path").write_text(str(wheels[0]))
    yield venv


def test_the_runner_install_has_two_dependencies_and_says_what_serve_needs(venv: Path) -> None:
    work = venv.parent
    freeze = _run(venv / "bin/python", "-m", "pip", "freeze", cwd=work).lower()
    assert "quart" not in freeze and "hypercorn" not in freeze and "sqlalchemy" not in freeze
    assert "httpx" in freeze and "click" in freeze
    for command in (["serve"], ["db", "upgrade"]):
        result = subprocess.run(
            [str(venv / "bin/logstream"), *command], cwd=work, capture_output=True, timeout=60
        )
        err = result.stderr.decode()
        assert result.returncode != 0
        assert "logstream[server]" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_the_server_install_serves_from_an_empty_directory(venv: Path) -> None:
    work = venv.parent
    wheel = (work / "wheel-path").read_text()
    _run(venv / "bin/python", "-m", "pip", "install", "-q", f"{wheel}[server]", cwd=work)
    where = _run(venv / "bin/python", "-c", "import logstream; print(logstream.__file__)", cwd=work)
    assert str(venv) in where and str(ROOT / "logstream") not in where, where

    empty = work / "empty"
    empty.mkdir()
    other = work / "other.db"
    out = _run(
        venv / "bin/logstream",
        "db",
        "upgrade",
        "--database-url",
        f"sqlite:///{other}",
        cwd=empty,
        timeout=120,
    )
    assert "up to date" in out and other.stat().st_size > 0

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGSTREAM_", "PYTHON"))}
    proc = subprocess.Popen(
        [str(venv / "bin/logstream"), "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (work / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (work / "server.log").read_text()
            time.sleep(0.2)
        assert (empty / "logstream.db").exists()  # migrated its SQLite default in place

        index = httpx.get(f"{url}/", timeout=10)
        assert index.status_code == 200 and "<html" in index.text.lower()
        script = httpx.get(f"{url}/ui/js/viewer.js", timeout=10)
        assert script.status_code == 200 and len(script.content) > 1000

        cli_env = {**env, "LOGSTREAM_SERVER": url}
        pushed = subprocess.run(
            [
                str(venv / "bin/logstream"),
                "push",
                "--name",
                "from-the-wheel",
                "--finish",
                "succeeded",
            ],
            input=b"one\ntwo\nthree\n",
            cwd=empty,
            env=cli_env,
            capture_output=True,
            timeout=60,
        )
        assert pushed.returncode == 0, pushed.stderr
        jobs = httpx.get(f"{url}/api/jobs", timeout=10).json()["jobs"]
        job = next(j for j in jobs if j["name"] == "from-the-wheel")
        assert job["line_count"] == 3 and job["status"] == "succeeded"

        page = httpx.get(f"{url}/jobs/{job['id']}", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        tail = _run(
            venv / "bin/logstream", "tail", "-f", str(job["id"]), cwd=empty, env=cli_env, timeout=60
        )
        assert tail.splitlines()[:3] == ["one", "two", "three"], tail
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
