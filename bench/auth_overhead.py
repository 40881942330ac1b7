"""What LOGSTREAM_AUTH=tokens costs per request, measured side by side with open mode.

    .venv/bin/python -m bench.auth_overhead [--requests 2000] [--rounds 3]

Starts two servers on 127.0.0.1 (the server pinned to core 0, this client on core 1 when there
are two), one open and one with tokens, on fresh SQLite files, and alternates rounds between
them: one request in flight on one keep-alive connection, for
- a one-line append with the job's token (the hot path: both modes compare a cached hash),
- the same append with LOGSTREAM_RUNNER_TOKEN (the job's hash, then the runner token),
- GET /api/jobs/{id} with no credential (open) / a read token / a session cookie (tokens).
Prints requests per second and the median latency of each, per round and as the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.httpc import HttpConnection

RUNNER = "bench-runner-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and subprocess.run(
        ["which", "taskset"], capture_output=True
    ).returncode == 0:
        return ["taskset", "-c", str(core)]
    return []


class Server:
    def __init__(self, folder: Path, auth: str) -> None:
        self.folder = folder
        self.auth = auth
        self.port = _free_port()
        self.url = f"sqlite:///{folder / 'bench.db'}"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
        result = subprocess.run(
            [sys.executable, "-m", "logstream", *args, "--database-url", self.url],
            capture_output=True,
            env=env,
            check=True,
        )
        return result.stdout.decode().strip()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
        env.update(
            LOGSTREAM_AUTH=self.auth, LOGSTREAM_LOG_LEVEL="warning", LOGSTREAM_RUNNER_TOKEN=RUNNER
        )
        self.proc = subprocess.Popen(
            [
                *_pin(0),
                sys.executable,
                "-m",
                "logstream",
                "serve",
                "--port",
                str(self.port),
                "--database-url",
                self.url,
            ],  # fmt: skip
            env=env,
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


async def _run(
    server: Server, method: str, path: str, body: bytes, headers: dict[str, str], n: int
) -> tuple[float, float]:
    conn = await HttpConnection("127.0.0.1", server.port).connect()
    latencies: list[float] = []
    try:
        for _ in range(50):  # warm up
            await conn.request(method, path, body, headers)
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            status, answer = await conn.request(method, path, body, headers)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"{method} {path}: {status} {answer[:200]!r}")
        took = time.perf_counter() - started
    finally:
        await conn.close()
    return n / took, statistics.median(latencies) * 1e6


async def _setup(server: Server, admin: str | None) -> dict[str, Any]:
    conn = await HttpConnection("127.0.0.1", server.port).connect()
    headers = {"Authorization": f"Bearer {admin}"} if admin else {}
    job: dict[str, Any] = await conn.json("POST", "/api/jobs", {"name": "bench"}, headers, 201)
    await conn.close()
    return job


async def _cookie(server: Server, token: str) -> str:
    conn = await HttpConnection("127.0.0.1", server.port).connect()
    assert conn.reader is not None
    conn.send(
        conn.build(
            "POST",
            "/api/session",
            json.dumps({"token": token}).encode(),
            {"Content-Type": "application/json"},
        )
    )
    head = await conn.reader.readuntil(b"\r\n\r\n")
    await conn.close()
    for line in head.decode().split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            return line.split(":", 1)[1].strip().split(";")[0]
    raise RuntimeError("no cookie")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pin = _pin(1)
    if pin:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmp:
        open_server = Server(Path(tmp) / "open", "open")
        tokens_server = Server(Path(tmp) / "tokens", "tokens")
        for server in (open_server, tokens_server):
            server.folder.mkdir()
        admin = tokens_server.cli("token", "create", "--role", "admin", "--name", "a")
        reader = tokens_server.cli("token", "create", "--role", "read", "--name", "b")
        open_server.start()
        tokens_server.start()
        try:
            asyncio.run(_measure(open_server, tokens_server, admin, reader, args))
        finally:
            open_server.stop()
            tokens_server.stop()


async def _measure(
    open_server: Server,
    tokens_server: Server,
    admin: str,
    reader: str,
    args: argparse.Namespace,
) -> None:
    open_job = await _setup(open_server, RUNNER)
    tokens_job = await _setup(tokens_server, admin)
    cookie = await _cookie(tokens_server, reader)
    line = json.dumps({"lines": ["one line of output"]}).encode()
    json_type = {"Content-Type": "application/json"}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    cases: list[tuple[str, Server, str, str, bytes, dict[str, str]]] = [
        ("append, job token, open", open_server, "POST",
         f"/api/jobs/{open_job['id']}/lines", line, {**json_type, **bearer(open_job["token"])}),
        ("append, job token, tokens", tokens_server, "POST",
         f"/api/jobs/{tokens_job['id']}/lines", line, {**json_type, **bearer(tokens_job["token"])}),
        ("append, runner token, open", open_server, "POST",
         f"/api/jobs/{open_job['id']}/lines", line, {**json_type, **bearer(RUNNER)}),
        ("append, runner token, tokens", tokens_server, "POST",
         f"/api/jobs/{tokens_job['id']}/lines", line, {**json_type, **bearer(RUNNER)}),
        ("GET job, no credential, open", open_server, "GET",
         f"/api/jobs/{open_job['id']}", b"", {}),
        ("GET job, read token, tokens", tokens_server, "GET",
         f"/api/jobs/{tokens_job['id']}", b"", bearer(reader)),
        ("GET job, session cookie, tokens", tokens_server, "GET",
         f"/api/jobs/{tokens_job['id']}", b"", {"Cookie": cookie}),
    ]  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in cases}
    for round_no in range(1, args.rounds + 1):
        for name, server, method, path, body, headers in cases:
            rate, p50 = await _run(server, method, path, body, headers, args.requests)
            results[name].append((rate, p50))
            print(f"round {round_no}: {name:36s} {rate:7.0f} req/s  p50 {p50:6.0f} us", flush=True)
    print("\nmedian of the rounds:")
    for name, values in results.items():
        rate = statistics.median(v[0] for v in values)
        p50 = statistics.median(v[1] for v in values)
        print(f"  {name:36s} {rate:7.0f} req/s  p50 {p50:6.0f} us")


if __name__ == "__main__":
    main()
