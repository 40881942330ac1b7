"""Faults against a real server: stuck readers on SIGTERM, text bodies cut by shutdown or a store
outage (an error, never a clean end, and `after` resumes to the exact log), a full disk, and
what the log says during an outage."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import ServerProcess, auth, create_job, free_port, skip_or_fail

GRACEFUL = 1.0
# The server promises to exit within its graceful timeout + 1 s (connections still open then are
# aborted); the rest is slack for a shared 2-core machine. Before the fix it never exited.
EXIT_BOUND = GRACEFUL + 1.0 + 6.0
WIDTH = 60


def line(n: int) -> str:
    return f"line {n} " + "x" * WIDTH


def expected(first: int, last: int) -> bytes:
    return "".join(line(n) + "\n" for n in range(first, last + 1)).encode()


def load(base: str, job: dict[str, Any], first: int, last: int) -> None:
    """Append lines first..last as text in bodies of 50,000 lines."""
    for start in range(first, last + 1, 50_000):
        end = min(last, start + 49_999)
        response = httpx.post(
            f"{base}/api/jobs/{job['id']}/lines",
            content=expected(start, end),
            headers={**auth(job), "Content-Type": "text/plain"},
            timeout=60,
        )
        assert response.status_code == 200, response.text


def finish(base: str, job: dict[str, Any]) -> None:
    response = httpx.post(
        f"{base}/api/jobs/{job['id']}/finish",
        headers=auth(job),
        json={"status": "succeeded", "exit_code": 0},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def slow_client(http2: bool) -> httpx.Client:
    """A client with a small receive buffer, so the server cannot send far ahead of it."""
    transport = httpx.HTTPTransport(
        http1=not http2,
        http2=http2,
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)],
    )
    return httpx.Client(transport=transport, timeout=30)


def read_until_cut(
    client: httpx.Client, url: str, cut: Callable[[], None], cut_after_lines: int
) -> tuple[bytes, BaseException | None]:
    """Read a text body; call `cut` once `cut_after_lines` lines arrived; read on to the end.

    Returns the bytes received and the error the body ended with (None: a clean end)."""
    received = bytearray()
    error: BaseException | None = None
    cut_done = False
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        try:
            for chunk in response.iter_raw():
                received += chunk
                if not cut_done and received.count(b"\n") >= cut_after_lines:
                    cut_done = True
                    cut()
                if not cut_done:
                    time.sleep(0.01)  # slowly, until the cut: the server stays ahead of us
        except (httpx.RemoteProtocolError, httpx.ReadError) as caught:
            error = caught
    assert cut_done, "the body ended before the cut"
    return bytes(received), error


def complete_lines(received: bytes) -> tuple[bytes, int]:
    """The whole lines of a cut body and how many there are (a cut may split the last one)."""
    whole = received[: received.rfind(b"\n") + 1]
    return whole, whole.count(b"\n")


def resume(base: str, job_id: int, after: int, *, follow: bool) -> bytes:
    """The rest of the log after line `after`, as a client resuming a cut body asks for it."""
    query = f"format=text&after={after}" + ("&follow=1" if follow else "")
    with httpx.Client(timeout=60) as client:
        response = client.get(f"{base}/api/jobs/{job_id}/log?{query}")
    assert response.status_code == 200
    return response.content


# --- SIGTERM with a reader that never reads -----------------------------------------------------


@pytest.mark.parametrize("query", ["format=sse", "format=text&follow=1"])
def test_sigterm_with_a_reader_that_never_reads_exits_in_bounded_time(
    tmp_path: Path, query: str
) -> None:
    server = ServerProcess(
        tmp_path, env={"LOGSTREAM_GRACEFUL_TIMEOUT": str(GRACEFUL), "LOGSTREAM_LOG_LEVEL": "info"}
    )
    server.start()
    try:
        job = create_job(server.url)
        load(server.url, job, 1, 100_000)
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", server.port))
        request = f"GET /api/jobs/{job['id']}/log?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        stuck.sendall(request.encode())
        time.sleep(0.5)  # the stream fills the socket buffers and blocks
        assert server.proc is not None
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        # While it drains, a new stream is sent elsewhere (503 + Retry-After), not served a
        # farewell it would reconnect from at once.
        drained = httpx.get(f"{server.url}/api/jobs/{job['id']}/log?format=sse", timeout=10)
        assert drained.status_code == 503
        assert drained.json()["error"] == "shutting_down"
        assert drained.headers["Retry-After"].isdigit()
        try:
            server.proc.wait(EXIT_BOUND)
        finally:
            stuck.close()
        took = time.monotonic() - began
        assert server.proc.returncode == 0
        logs = server.logs()
        assert "aborted 1 connection" in logs
        assert "Traceback" not in logs and "CancelledError" not in logs
        assert took < EXIT_BOUND
    finally:
        server.stop(signal.SIGKILL)


# --- text bodies cut by SIGTERM -------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_text_download_cut_by_sigterm_is_an_error_and_resumes_exactly(
    tmp_path: Path, http2: bool
) -> None:
    total = 150_000
    server = ServerProcess(tmp_path, env={"LOGSTREAM_PAGE_LINES": "500"})
    server.start()
    try:
        job = create_job(server.url)
        load(server.url, job, 1, total)
        finish(server.url, job)
        assert server.proc is not None
        proc = server.proc
        with slow_client(http2) as client:
            received, error = read_until_cut(
                client,
                f"{server.url}/api/jobs/{job['id']}/log?format=text",
                lambda: proc.send_signal(signal.SIGTERM),
                2000,
            )
        assert error is not None, "a download cut by shutdown ended like a complete log"
        whole, count = complete_lines(received)
        assert 2000 <= count < total
        proc.wait(30)
        server.proc = None
        server.start()
        assert whole + resume(server.url, job["id"], count, follow=False) == expected(1, total)
    finally:
        server.stop(signal.SIGKILL)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_text_follow_cut_by_sigterm_is_an_error_and_resumes_exactly(
    tmp_path: Path, http2: bool
) -> None:
    server = ServerProcess(tmp_path)
    server.start()
    try:
        job = create_job(server.url)
        load(server.url, job, 1, 1000)
        assert server.proc is not None
        proc = server.proc
        with slow_client(http2) as client:
            # The tail has caught up and waits for lines when the server is told to stop.
            received, error = read_until_cut(
                client,
                f"{server.url}/api/jobs/{job['id']}/log?format=text&follow=1",
                lambda: proc.send_signal(signal.SIGTERM),
                1000,
            )
        assert error is not None, "a follow=1 tail cut by shutdown ended as if the job had"
        whole, count = complete_lines(received)
        assert count == 1000
        proc.wait(30)
        server.proc = None
        server.start()
        load(server.url, job, 1001, 1500)
        finish(server.url, job)
        assert whole + resume(server.url, job["id"], count, follow=True) == expected(1, 1500)
    finally:
        server.stop(signal.SIGKILL)


# --- a store outage (PostgreSQL behind a proxy the test can cut) ---------------------------------


class CuttableProxy:
    """A TCP forwarder to PostgreSQL, in a thread: cut() drops every connection and refuses new
    ones (as a restarting server does), restore() lets them through again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.cut_off = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._handle, "127.0.0.1", self.port))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def _cut(self) -> None:
        self.cut_off = True
        for writer in list(self.writers):
            writer.transport.abort()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[str, CuttableProxy]]:
    """The test database's URL through a proxy the test can cut, and the proxy."""
    parts = urllib.parse.urlsplit(pg_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = (f"{parts.username}@" if parts.username else "") + f"127.0.0.1:{proxy.port}"
    try:
        yield urllib.parse.urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        proxy.close()


@pytest.mark.postgres
@pytest.mark.parametrize("follow", [False, True], ids=["download", "follow"])
def test_text_cut_by_store_outage_is_an_error_and_resumes_exactly(
    tmp_path: Path, proxied_pg: tuple[str, CuttableProxy], follow: bool
) -> None:
    url, proxy = proxied_pg
    total = 150_000
    server = ServerProcess(tmp_path, database_url=url, env={"LOGSTREAM_PAGE_LINES": "500"})
    server.start()
    try:
        job = create_job(server.url)
        load(server.url, job, 1, total)
        query = "format=text" + ("&follow=1" if follow else "")
        with slow_client(False) as client:
            received, error = read_until_cut(
                client, f"{server.url}/api/jobs/{job['id']}/log?{query}", proxy.cut, 2000
            )
        assert error is not None, "a body cut by a store outage ended like a complete log"
        whole, count = complete_lines(received)
        assert 2000 <= count < total
        assert "failed at line" in server.logs()
        proxy.restore()
        if follow:
            finish(server.url, job)
        assert whole + resume(server.url, job["id"], count, follow=follow) == expected(1, total)
        assert "Traceback" not in server.logs()
    finally:
        server.stop(signal.SIGKILL)


@pytest.mark.postgres
def test_store_outage_logs_one_line_when_it_starts_and_one_when_it_ends(
    tmp_path: Path, proxied_pg: tuple[str, CuttableProxy]
) -> None:
    url, proxy = proxied_pg
    server = ServerProcess(tmp_path, database_url=url, env={"LOGSTREAM_POLL_INTERVAL": "0.2"})
    server.start()
    try:
        job = create_job(server.url)
        proxy.cut()
        refused = httpx.post(
            f"{server.url}/api/jobs/{job['id']}/lines",
            headers=auth(job),
            json={"lines": ["during the outage"]},
            timeout=30,
        )
        assert refused.status_code == 503
        assert refused.json()["error"] == "unavailable"
        assert refused.headers["Retry-After"].isdigit()
        time.sleep(3)  # about 15 failed re-checks
        proxy.restore()
        deadline = time.monotonic() + 20
        while "works again" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        logs = server.logs()
        assert logs.count("re-check of live jobs failed") == 1, logs
        assert logs.count("re-check of live jobs works again") == 1, logs
        assert "Traceback" not in logs
    finally:
        server.stop(signal.SIGKILL)


# --- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (needs root), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a small tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_answers_storage_full_with_retry_after(tmp_path: Path, small_disk: Path) -> None:
    server = ServerProcess(tmp_path, database_url=f"sqlite:///{small_disk / 'logstream.db'}")
    server.start()
    try:
        job = create_job(server.url)
        answer = None
        for start in range(1, 2_000_000, 10_000):
            answer = httpx.post(
                f"{server.url}/api/jobs/{job['id']}/lines",
                content=expected(start, start + 9_999),
                headers={**auth(job), "Content-Type": "text/plain"},
                timeout=60,
            )
            if answer.status_code != 200:
                break
        assert answer is not None and answer.status_code == 503, "the disk never filled"
        assert answer.json()["error"] == "storage_full"
        assert int(answer.headers["Retry-After"]) >= 30
        assert "the store is full" in server.logs()
        # Reads still work, and the lines stored before are whole.
        got = httpx.get(f"{server.url}/api/jobs/{job['id']}", timeout=30).json()
        assert got["line_count"] % 10_000 == 0 and got["line_count"] > 0
    finally:
        server.stop(signal.SIGKILL)
