"""What every scenario gets: the Context it runs in, the Result it returns, and the shared steps.

The Context names the server under test (logstream or a `--peer`) and hides what differs for
nchan; `with_cpu` fills a figure's CPU columns from a CpuMeter; `Profiler` records the server
with py-spy over a measurement window (with --profile); `spawn` starts a helper process of the
bench (appender, raw SQLite, fake SSE server) pinned to a core.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from .. import peer_nchan
from .. import profile as profiler
from ..common import (
    CpuMeter,
    Figure,
    child_setup,
    line_text,
    line_texts,
)
from ..httpc import HttpConnection, append_request, create_job
from ..readers import Sink
from ..server import ROOT, BenchServer

HOST = "127.0.0.1"


@dataclasses.dataclass
class Context:
    workdir: Path
    results_dir: Path
    pin: bool = True
    profile: bool = False
    tls: dict[str, str] | None = None  # certfile, keyfile, cafile (made on first use)
    # The server under test: logstream, or a peer module (`python -m MODULE PORT`).
    peer: str | None = None

    def label(self, text: str) -> str:
        """A figure's scenario label, naming the peer when it is not logstream."""
        return f"[{PEERS[self.peer]}] {text}" if self.peer else text

    def server(self, name: str, **kwargs: Any) -> BenchServer:
        """The server a scenario measures (not started)."""
        if self.nchan:
            return peer_nchan.NchanServer(self.workdir, name=f"nchan-{name}", pin=self.pin)
        if self.peer:
            return BenchServer(
                self.workdir,
                name=f"{self.peer}-{name}",
                pin=self.pin,
                module_args=[f"bench.{self.peer}"],
            )
        return BenchServer(self.workdir, name=name, pin=self.pin, **kwargs)

    # What differs for nchan, which has channels and messages, not jobs and numbered lines
    # (bench/peer_nchan.py): logstream and the starlette peer share logstream's API.

    @property
    def nchan(self) -> bool:
        return self.peer == "peer_nchan"

    async def create_job(self, control: HttpConnection, name: str) -> dict[str, Any]:
        if self.nchan:
            return peer_nchan.new_channel()
        return await create_job(control, name)

    def log_path(self, job: dict[str, Any]) -> str:
        return f"/sub/{job['id']}" if self.nchan else f"/api/jobs/{job['id']}/log"

    def sink(self, sink: Sink) -> Any:
        """The reader's sink as the connection feeds it (nchan's events rewritten)."""
        return peer_nchan.NchanSink(sink) if self.nchan else sink

    async def healthz(self, control: HttpConnection, want: int, timeout: float) -> int:
        """Streams the server counts (-1: nchan, which has no such count for all channels)."""
        return -1 if self.nchan else await _healthz(control, want, timeout)

    async def finish(self, control: HttpConnection, job: dict[str, Any], last_line: int) -> None:
        if self.nchan:
            return  # the appender published the `end` message after the last line
        await request_json(
            control,
            "POST",
            f"/api/jobs/{job['id']}/finish",
            {"status": "succeeded", "exit_code": 0, "line_count": last_line},
            headers={"Authorization": f"Bearer {job['token']}"},
        )

    def append_one(
        self, conn: HttpConnection, port: int, job: dict[str, Any], t_ns: int, no: int
    ) -> bytes:
        """One line appended as its own request (bytes to send); the answer is 200 / 202."""
        if self.nchan:
            return peer_nchan.publish_request(port, job["id"], line_text(t_ns, no))
        return append_request(conn, job, line_texts(t_ns, no, 1), no)


def unwrap(sink: Any) -> Sink:
    """The reader behind a sink (see Context.sink)."""
    return sink.inner if isinstance(sink, peer_nchan.NchanSink) else sink


# Peers the bench can run in the same session as logstream (`--peer`).
PEERS = {
    "peer_starlette": "peer: sse-starlette on uvicorn, in memory",
    "peer_nchan": peer_nchan.LABEL,
}


@dataclasses.dataclass
class Result:
    name: str
    figures: list[Figure]
    raw: dict[str, Any]


def with_cpu(figure: Figure, meter: CpuMeter) -> Figure:
    figure.server_cpu_s = round(meter.server_s, 2)
    figure.loadgen_cpu_s = round(meter.loadgen_s, 2)
    figure.window_s = round(meter.wall_s, 2)
    figure.other_core0_s = round(meter.other_core0_s, 2)
    return figure


def latency_text(stats: dict[str, float]) -> str:
    if not stats.get("count"):
        return "n/a"
    return (
        f"p50 {stats['p50']:.1f} / p95 {stats['p95']:.1f} / p99 {stats['p99']:.1f}"
        f" / max {stats['max']:.1f} ms"
    )


class Profiler:
    """py-spy record of the server over a window (only with --profile)."""

    def __init__(self, ctx: Context, server: BenchServer, name: str, seconds: float) -> None:
        self.ctx = ctx
        self.path = ctx.results_dir / f"profile-{name}.txt"
        self.proc: asyncio.subprocess.Process | None = None
        self.server = server
        self.seconds = seconds

    async def start(self) -> None:
        if not self.ctx.profile:
            return
        self.proc = await profiler.start_record(self.server.pid, self.path, self.seconds)

    async def finish(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        return await profiler.finish_record(self.proc, self.path)


async def request_json(
    conn: HttpConnection,
    method: str,
    path: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    expect: int = 200,
) -> Any:
    return await asyncio.wait_for(conn.json(method, path, payload, headers, expect), 30)


async def _healthz(conn: HttpConnection, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    streams = -1
    while time.monotonic() < deadline:
        body = await request_json(conn, "GET", "/healthz")
        streams = int(body["streams"])
        if streams >= want:
            break
        await asyncio.sleep(0.1)
    return streams


def verifying_set(readers: int, wanted: int | None = None) -> set[int]:
    """Which of `readers` readers check every event: `wanted` of them (default: all up to 100,
    else 10) spread evenly over the set; the others only count."""
    if wanted is None:
        wanted = readers if readers <= 100 else 10
    wanted = min(wanted, readers)
    step = readers / wanted if wanted else 0
    return {int(i * step) for i in range(wanted)}


async def spawn(ctx: Context, module: str, *args: str, core: int) -> asyncio.subprocess.Process:
    """`python -m MODULE ARGS...` from the repository root, stdout piped, pinned to `core`."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=child_setup(core if ctx.pin else None),
    )
