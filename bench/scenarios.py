"""The scenarios: fan-out, catch-up, ingest (+ raw SQLite), idle readers, fan-out over HTTP/2.

Each takes a Context and its options, drives a fresh server and returns a Result: rows for the
final table plus the raw numbers for the JSON file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import peer_nchan
from . import profile as profiler
from .common import (
    LINE_BYTES,
    LOADGEN_CORE,
    SERVER_CORE,
    CpuMeter,
    Figure,
    child_setup,
    fmt_int,
    fmt_ms,
    line_text,
    line_texts,
    ms,
    ms_stats,
)
from .httpc import HttpConnection, append_request, create_job
from .readers import (
    H1SseStream,
    ReaderSet,
    Sink,
    SseCounter,
    SseVerifier,
    close_streams,
    open_h1_streams,
    summarize_sinks,
)
from .server import ROOT, BenchServer

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
        await _json(
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


def _cpu(figure: Figure, meter: CpuMeter) -> Figure:
    figure.server_cpu_s = round(meter.server_s, 2)
    figure.loadgen_cpu_s = round(meter.loadgen_s, 2)
    figure.window_s = round(meter.wall_s, 2)
    figure.other_core0_s = round(meter.other_core0_s, 2)
    return figure


def _lat_text(stats: dict[str, float]) -> str:
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


# --- 1 and 5: fan-out -------------------------------------------------------------------------


async def fanout(
    ctx: Context,
    readers: int,
    rate: int,
    duration: float,
    *,
    full_readers: int | None = None,
    batch: int = 10,
    h2: bool = False,
    h2_connections: int = 10,
    p99_target_ms: float | None = None,
) -> Result:
    """S readers tail one job while a paced runner appends R lines/s in batches."""
    label = f"fan-out S={readers:,} R={rate:,}/s"
    if h2:
        conns = min(h2_connections, readers)
        label = (
            f"fan-out h2/TLS S={readers:,} R={rate:,}/s"
            f" ({conns} conn x {math.ceil(readers / conns)} streams)"
        )
    name = f"fanout{'_h2' if h2 else ''}_{readers}"
    if full_readers is None:
        full_readers = readers if readers <= 100 else 10
    full_readers = min(full_readers, readers)
    step = readers / full_readers if full_readers else 0
    full_set = {int(i * step) for i in range(full_readers)}
    if p99_target_ms is None:
        p99_target_ms = 250.0 if readers >= 1000 else 50.0
    tls = ctx.tls if h2 else None
    label = ctx.label(label)
    server = ctx.server(
        name, certfile=tls["certfile"] if tls else None, keyfile=tls["keyfile"] if tls else None
    )
    server.start()
    streams: list[Any] = []
    appender: asyncio.subprocess.Process | None = None
    try:
        # Control requests (create, finish, healthz) go over HTTP/1.1 (over TLS with a cert).
        control = await HttpConnection(
            HOST, server.port, cafile=tls["cafile"] if tls else None
        ).connect()
        job = await ctx.create_job(control, name)
        path = ctx.log_path(job)

        def sink_factory(i: int, rset: ReaderSet) -> Any:
            return ctx.sink(SseVerifier(rset) if i in full_set else SseCounter(rset))

        if h2:
            from .h2readers import client_context, open_h2_streams

            assert tls is not None
            rset, streams, sinks, open_s = await open_h2_streams(
                HOST,
                server.port,
                client_context(tls["cafile"]),
                [path] * readers,
                sink_factory,
                min(h2_connections, readers),
                timeout=60,
            )
        else:
            rset, streams, open_s = await open_h1_streams(
                HOST,
                server.port,
                [path] * readers,
                sink_factory,
                batch=500,
                timeout=120,
            )
            sinks = [unwrap(s.sink) for s in streams]
        if rset.failed:
            raise RuntimeError(f"{rset.failed} readers failed: {rset.errors[:3]}")
        counted = await ctx.healthz(control, readers, 20)
        await asyncio.sleep(0.3)

        t0 = time.monotonic_ns() + 300_000_000
        args = {
            "port": server.port,
            "job_id": job["id"],
            "token": job["token"],
            "rate": rate,
            "duration": duration,
            "batch": batch,
            "t0_ns": t0,
            "tls": bool(tls),
        }
        if tls:
            args["cafile"] = tls["cafile"]
        if ctx.nchan:
            args["nchan_channel"] = job["id"]
        appender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.appender",
            json.dumps(args),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=child_setup(LOADGEN_CORE if ctx.pin else None),
        )
        await asyncio.sleep(max(0.0, (t0 - time.monotonic_ns()) / 1e9))
        meter = CpuMeter(server.pid).start()
        prof = Profiler(ctx, server, name, min(duration, 10))
        await prof.start()
        out, _ = await asyncio.wait_for(appender.communicate(), duration + 60)
        appended = json.loads(out)
        appender = None
        meter.extra_loadgen += appended["cpu_s"]
        last_line = appended["last_line"]
        finish_ns = time.monotonic_ns()
        await ctx.finish(control, job, last_line)
        all_done = await rset.wait_done(60)
        meter.stop()
        done_ns = time.monotonic_ns()
        profile = await prof.finish()
        await control.close()
    finally:
        for stream in streams:
            stream.abort()
        if appender is not None and appender.returncode is None:
            appender.kill()
            await appender.wait()
        server.stop()

    start_ns = appended["first_send_ns"] or t0
    total = sum(s.count for s in sinks)
    expected = readers * last_line
    t_last = max((s.last_ns for s in sinks), default=0)
    span_s = max(1e-9, (t_last - start_ns) / 1e9)
    delivered_rate = total / span_s
    wanted_rate = readers * rate
    ends_ok = sum(1 for s in sinks if s.end_seen and s.end_id == last_line)
    lat = ms_stats([v for s in sinks if isinstance(s, SseVerifier) for v in s.lat])
    block_lat = ms_stats(
        [v for s in sinks if isinstance(s, SseCounter) for v in (s.block_lat or [])]
    )
    problems = summarize_sinks(sinks)
    clean = not (
        problems["gaps"]
        or problems["duplicates"]
        or problems["inconsistent"]
        or problems["bad_text"]
    )
    appended_ok = appended["appended_lines"] >= 0.99 * appended["asked_lines"]
    all_delivered = total == expected and ends_ok == readers
    mode = (
        f"{min(h2_connections, readers)} TLS connections x "
        f"{math.ceil(readers / min(h2_connections, readers))} streams"
        if h2
        else f"{readers} HTTP/1.1 connections"
    )
    raw = {
        "readers": readers,
        "rate": rate,
        "duration_s": duration,
        "batch": batch,
        "transport": mode,
        "verifying_readers": len(full_set),
        "open_streams_s": round(open_s, 2),
        "server_counted_streams": counted,
        "appender": appended,
        "events_received": total,
        "events_expected": expected,
        "delivered_events_per_s": round(delivered_rate, 1),
        "delivery_span_s": round(span_s, 3),
        "readers_with_end": ends_ok,
        "all_done": all_done,
        "end_after_finish_ms": ms(done_ns - finish_ns),
        "latency_ms_verifiers_all_events": lat,
        "latency_ms_oldest_event_per_read_counters": block_lat,
        "problems": problems,
        "cpu": meter.to_json(),
        "server_errors_logged": len(server.errors_logged()),
        "profile": profile,
    }
    figures = [
        _cpu(
            Figure(
                label,
                "delivered events/s (all readers)",
                f"{fmt_int(delivered_rate)} ({fmt_int(total)}/{fmt_int(expected)} events)",
                f"{fmt_int(wanted_rate)}/s, all delivered",
                all_delivered and appended_ok and delivered_rate >= 0.97 * wanted_rate,
            ),
            meter,
        ),
        _cpu(
            Figure(
                label,
                f"latency append->reader ({len(full_set)} verifying readers, every event)",
                _lat_text(lat),
                f"p99 < {p99_target_ms:g} ms",
                bool(lat.get("count")) and lat["p99"] < p99_target_ms,
            ),
            meter,
        ),
    ]
    if block_lat.get("count"):
        figures.append(
            _cpu(
                Figure(
                    label,
                    f"latency, oldest event of each read ({readers - len(full_set)} counting"
                    " readers)",
                    _lat_text(block_lat),
                    "(upper bound, info)",
                    None,
                ),
                meter,
            )
        )
    figures.append(
        _cpu(
            Figure(
                label,
                "gaps / duplicates; readers that got `end`",
                f"{problems['gaps']} / {problems['duplicates']}"
                f" (+{problems['inconsistent'] + problems['bad_text']} other); {ends_ok}/{readers}",
                "none; all",
                clean and ends_ok == readers,
            ),
            meter,
        )
    )
    figures.append(
        _cpu(
            Figure(
                label,
                "lines appended / asked (POST rtt p99)",
                f"{fmt_int(appended['appended_lines'])} / {fmt_int(appended['asked_lines'])}"
                f" ({fmt_ms(appended['post_rtt_ms']['p99'])})"
                + (f" [{len(appended['errors'])} failed POSTs]" if appended["errors"] else ""),
                ">= 99% of asked",
                appended_ok and not appended["errors"],
            ),
            meter,
        )
    )
    return Result(name, figures, raw)


async def _json(
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
        body = await _json(conn, "GET", "/healthz")
        streams = int(body["streams"])
        if streams >= want:
            break
        await asyncio.sleep(0.1)
    return streams


# --- 2: catch-up ------------------------------------------------------------------------------


class TextCounter:
    """Counts the lines of a raw text (chunked) body; checks their numbers as it goes."""

    def __init__(self, rset: ReaderSet) -> None:
        from .httpc import Dechunker

        self.dechunker = Dechunker()
        self.rset = rset
        self.count = 0
        self.bytes = 0
        self.payload_bytes = 0
        self.rest = b""
        self.bad = 0
        self.errors: list[str] = []
        self.end_seen = False
        self.last_ns = 0

    def feed(self, data: bytes, now: int) -> None:
        self.bytes += len(data)
        payload = self.dechunker.feed(data)
        self.payload_bytes += len(payload)
        buf = self.rest + payload if self.rest else payload
        cut = buf.rfind(b"\n")
        if cut >= 0:
            self.rest = buf[cut + 1 :]
            n = buf.count(b"\n", 0, cut + 1)
            self.count += n
            self.last_ns = now
            start = buf.rfind(b"\n", 0, cut) + 1
            line = buf[start:cut]
            marker = line.find(b" n=")
            got = int(line[marker + 3 : line.index(b" ", marker + 3)]) if marker >= 0 else -1
            if got != self.count:
                self.bad += 1
                if len(self.errors) < 10:
                    self.errors.append(f"line {self.count} reads {line[:60]!r}")
        else:
            self.rest = buf
        if self.dechunker.done:
            self.end_seen = True


async def _read_one(port: int, path: str, accept: str, sink: Any) -> tuple[float, Any]:
    """One GET read to its end by `sink`; returns (seconds from connect to last byte, sink)."""
    loop = asyncio.get_running_loop()
    rset = ReaderSet(1)
    sink.rset = rset
    request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: {accept}\r\n\r\n").encode()
    proto = H1SseStream(request, sink, rset)
    started = time.monotonic_ns()
    await loop.create_connection(lambda: proto, HOST, port)
    if not await rset.wait_done(300):
        proto.abort()
        raise TimeoutError(f"reading {path} took over 300 s")
    if rset.failed:
        raise RuntimeError(f"reading {path} failed: {rset.errors}")
    return (max(sink.last_ns, started) - started) / 1e9, sink


async def catchup(
    ctx: Context, lines: int, ingest_batch: int = 5000, sse_target_s: float = 3.0
) -> Result:
    """Build a finished log of `lines` lines, then read it from line 1 (SSE, raw text)."""
    label = ctx.label(f"catch-up {lines:,} lines")
    server = ctx.server("catchup")
    server.start()
    raw: dict[str, Any] = {"lines": lines, "line_bytes": LINE_BYTES, "ingest_batch": ingest_batch}
    figures: list[Figure] = []
    try:
        conn = await HttpConnection(HOST, server.port).connect()
        job = await ctx.create_job(conn, "catchup")
        meter = CpuMeter(server.pid).start()
        started = time.monotonic()
        if ctx.nchan:  # one message per line (and the end message), pipelined
            await peer_nchan.publish_log(conn, server.port, job["id"], lines)
        no = 1
        while no <= lines and not ctx.nchan:  # logstream and the Python peer: batches
            count = min(ingest_batch, lines - no + 1)
            conn.send(append_request(conn, job, line_texts(time.monotonic_ns(), no, count), no))
            status, body = await conn.answer(60)
            if status != 200:
                raise RuntimeError(f"append failed: {status} {body[:200]!r}")
            no += count
        ingest_s = time.monotonic() - started
        meter.stop()
        await ctx.finish(conn, job, lines)
        await conn.close()
        raw["ingest"] = {
            "seconds": round(ingest_s, 3),
            "lines_per_s": round(lines / ingest_s),
            "cpu": meter.to_json(),
        }
        figures.append(
            _cpu(
                Figure(
                    label,
                    "build: one message per line (500 pipelined)"
                    if ctx.nchan
                    else f"build: ingest in batches of {ingest_batch:,} (1 in flight)",
                    f"{fmt_int(lines / ingest_s)} lines/s ({ingest_s:.2f} s)",
                    "(info)",
                    None,
                ),
                meter,
            )
        )

        path = ctx.log_path(job)
        # SSE from line 1, counted cheaply (the figure) ...
        meter = CpuMeter(server.pid).start()
        prof = Profiler(ctx, server, "catchup_sse", 5)
        await prof.start()
        seconds, sink = await _read_one(
            server.port, path, "text/event-stream", ctx.sink(SseCounter(block_latency=False))
        )
        sink = unwrap(sink)
        meter.stop()
        profile = await prof.finish()
        ok = sink.count == lines and sink.ok and sink.end_id == lines
        raw["sse"] = {
            "seconds": round(seconds, 3),
            "events": sink.count,
            "lines_per_s": round(sink.count / seconds),
            "wire_MB_per_s": round(sink.bytes / seconds / 1e6, 2),
            "wire_bytes": sink.bytes,
            "ok": ok,
            "errors": sink.errors,
            "cpu": meter.to_json(),
            "profile": profile,
        }
        figures.append(
            _cpu(
                Figure(
                    label,
                    "SSE from line 1 (HTTP/1.1, counting reader)",
                    f"{seconds:.2f} s = {fmt_int(sink.count / seconds)} lines/s,"
                    f" {sink.bytes / seconds / 1e6:.1f} MB/s{'' if ok else ' [WRONG COUNT/IDS]'}",
                    f"< {sse_target_s:g} s (> {fmt_int(lines / sse_target_s)} lines/s)",
                    ok and seconds < sse_target_s,
                ),
                meter,
            )
        )
        sse_seconds = seconds

        # ... raw text (nchan has none) ...
        if not ctx.nchan:
            meter = CpuMeter(server.pid).start()
            seconds, text = await _read_one(
                server.port, path + "?format=text", "text/plain", TextCounter(ReaderSet(1))
            )
            meter.stop()
            ok = text.count == lines and not text.bad
            raw["text"] = {
                "seconds": round(seconds, 3),
                "lines": text.count,
                "lines_per_s": round(text.count / seconds),
                "wire_MB_per_s": round(text.bytes / seconds / 1e6, 2),
                "payload_MB_per_s": round(text.payload_bytes / seconds / 1e6, 2),
                "ok": ok,
                "errors": text.errors,
                "cpu": meter.to_json(),
            }
            figures.append(
                _cpu(
                    Figure(
                        label,
                        "raw text from line 1 (?format=text)",
                        f"{seconds:.2f} s = {fmt_int(text.count / seconds)} lines/s,"
                        f" {text.bytes / seconds / 1e6:.1f} MB/s{'' if ok else ' [WRONG COUNT]'}",
                        "faster than SSE",
                        ok and seconds < sse_seconds,
                    ),
                    meter,
                )
            )

        # ... and SSE again with every event parsed and checked (client-side cost included).
        meter = CpuMeter(server.pid).start()
        seconds, full = await _read_one(
            server.port, path, "text/event-stream", ctx.sink(SseVerifier(check_text=True))
        )
        full = unwrap(full)
        meter.stop()
        ok = full.count == lines and full.ok and full.end_id == lines
        raw["sse_verified"] = {
            "seconds": round(seconds, 3),
            "events": full.count,
            "lines_per_s": round(full.count / seconds),
            "ok": ok,
            "errors": full.errors,
            "cpu": meter.to_json(),
        }
        figures.append(
            _cpu(
                Figure(
                    label,
                    "SSE from line 1, every event parsed + checked",
                    f"{seconds:.2f} s = {fmt_int(full.count / seconds)} lines/s"
                    f"{'' if ok else ' [ERRORS: ' + '; '.join(full.errors[:2]) + ']'}",
                    "no gap/dup, texts exact",
                    ok,
                ),
                meter,
            )
        )
        raw["server_errors_logged"] = len(server.errors_logged())
    finally:
        server.stop()
    return Result("catchup", figures, raw)


# --- 3: ingest --------------------------------------------------------------------------------


async def _runner(
    conn: HttpConnection,
    job: dict[str, Any],
    batch: int,
    deadline: float,
    use_first: bool,
    first: int = 1,
) -> tuple[int, int, list[int], list[str]]:
    """Append batches back to back until `deadline`: (lines acknowledged, requests, rtts)."""
    no = first
    acked = requests = 0
    rtts: list[int] = []
    errors: list[str] = []
    while time.monotonic() < deadline:
        t = time.monotonic_ns()
        conn.send(append_request(conn, job, line_texts(t, no, batch), no if use_first else None))
        status, body = await conn.answer()
        rtts.append(time.monotonic_ns() - t)
        requests += 1
        if status == 200:
            acked += batch
            no += batch
        elif len(errors) < 5:
            errors.append(f"{status} {body[:200]!r}")
    return acked, requests, rtts, errors


async def ingest(
    ctx: Context,
    seconds: float,
    batches: tuple[int, ...] = (1, 100, 1000),
    concurrency: int = 8,
    runners: int = 4,
    runners_batch: int = 100,
    sqlite_seconds: float = 3.0,
    req_target: float = 2000.0,
) -> Result:
    """Durable appends as fast as possible; and the raw SQLite insert limit for comparison."""
    figures: list[Figure] = []
    raw: dict[str, Any] = {"seconds_per_mode": seconds}

    # The raw SQLite limit first, on the server's core while no server runs.
    batched_rate = 0.0
    if not ctx.peer:  # the references are measured once, in logstream's own pass
        sqlite = await _sqlite_raw(ctx, sqlite_seconds)
        raw["sqlite_raw"] = sqlite
        batched_rate = sqlite["batched"]["rows_per_s"]
        for key, label in (
            ("batched", "1,000 rows per transaction"),
            ("single", "1 row per transaction"),
        ):
            r = sqlite[key]
            figures.append(
                Figure(
                    "raw SQLite (sqlite3, WAL, sync=NORMAL)",
                    label,
                    f"{fmt_int(r['rows_per_s'])} rows/s",
                    "(reference)",
                    None,
                    server_cpu_s=r["cpu_s"],
                    loadgen_cpu_s=0.0,
                    window_s=r["seconds"],
                    other_core0_s=r.get("other_core0_s"),
                )
            )

    server = ctx.server("ingest")
    server.start()
    try:
        control = await HttpConnection(HOST, server.port).connect()
        modes: list[tuple[str, int, int, int]] = [
            (f"1 runner, batch {b}, 1 in flight", b, 1, 1) for b in batches
        ]
        if 1 in batches and concurrency > 1:
            modes.insert(
                batches.index(1) + 1,
                (f"1 job, batch 1, {concurrency} in flight", 1, concurrency, 1),
            )
        if runners > 1:
            modes.append(
                (
                    f"{runners} runners on {runners} jobs, batch {runners_batch}",
                    runners_batch,
                    runners,
                    runners,
                )
            )
        raw["modes"] = []
        for title, batch, flows, jobs_n in modes:
            jobs = [await create_job(control, f"ingest-{batch}-{flows}") for _ in range(jobs_n)]
            conns = [await HttpConnection(HOST, server.port).connect() for _ in range(flows)]
            # A short warm-up on each connection, so the figure is steady state.
            meter = CpuMeter(server.pid).start()
            prof = Profiler(ctx, server, f"ingest_b{batch}_x{flows}", min(seconds, 5))
            await prof.start()
            started = time.monotonic()
            deadline = started + seconds
            use_first = flows == jobs_n  # one writer per job: number the batches
            outs = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        _runner(conns[i], jobs[i % jobs_n], batch, deadline, use_first)
                        for i in range(flows)
                    )
                ),
                seconds + 60,
            )
            elapsed = time.monotonic() - started
            meter.stop()
            profile = await prof.finish()
            for conn in conns:
                await conn.close()
            acked = sum(o[0] for o in outs)
            requests = sum(o[1] for o in outs)
            rtts = [v for o in outs for v in o[2]]
            errors = [e for o in outs for e in o[3]]
            stored = 0
            for job in jobs:
                info = await _json(control, "GET", f"/api/jobs/{job['id']}")
                stored += int(info["line_count"])
            entry = {
                "mode": title,
                "batch": batch,
                "in_flight": flows,
                "jobs": jobs_n,
                "seconds": round(elapsed, 3),
                "requests": requests,
                "lines_acked": acked,
                "lines_stored": stored,
                "lines_per_s": round(acked / elapsed, 1),
                "requests_per_s": round(requests / elapsed, 1),
                "rtt_ms": ms_stats(rtts),
                "errors": errors[:5],
                "cpu": meter.to_json(),
                "profile": profile,
            }
            raw["modes"].append(entry)
            consistent = stored == acked and not errors
            value = (
                f"{fmt_int(acked / elapsed)} lines/s, {fmt_int(requests / elapsed)} req/s"
                f" (rtt p99 {rtts and ms_stats(rtts)['p99'] or 0:.1f} ms)"
                f"{'' if consistent else f' [stored {stored} != acked {acked}]'}"
            )
            target, met = "(info)", None
            if batch == 1:
                target = f">= {fmt_int(req_target)} req/s"
                met = consistent and requests / elapsed >= req_target
            elif batch == 1000 and flows == 1:
                target = f">= {fmt_int(batched_rate / 2)} lines/s (half raw SQLite)"
                met = consistent and acked / elapsed >= batched_rate / 2
            elif not consistent:
                met = False
            if ctx.peer:
                target, met = "(peer, in memory: not durable)", None
            figures.append(
                _cpu(
                    Figure(
                        ctx.label(
                            "ingest (durable, 200 = committed)" if not ctx.peer else "ingest"
                        ),
                        title,
                        value,
                        target,
                        met,
                    ),
                    meter,
                )
            )
        await control.close()
        raw["server_errors_logged"] = len(server.errors_logged())
    finally:
        server.stop()
    if 1 in batches and not ctx.peer:
        raw["floor"] = await _floor(ctx, seconds, concurrency, figures)
    return Result("ingest", figures, raw)


async def _floor(
    ctx: Context, seconds: float, concurrency: int, figures: list[Figure]
) -> list[dict[str, Any]]:
    """The same one-line POSTs against an empty handler on logstream's Hypercorn set-up."""
    out: list[dict[str, Any]] = []
    fake_job = {"id": 1, "token": "floor"}
    for kind, what in (("asgi", "bare ASGI app"), ("quart", "empty Quart route")):
        server = BenchServer(
            ctx.workdir, name=f"floor-{kind}", pin=ctx.pin, module_args=["bench.floor_app", kind]
        )
        server.start()
        try:
            for flows in (1, concurrency):
                conns = [await HttpConnection(HOST, server.port).connect() for _ in range(flows)]
                meter = CpuMeter(server.pid).start()
                started = time.monotonic()
                outs = await asyncio.wait_for(
                    asyncio.gather(
                        *(_runner(conn, fake_job, 1, started + seconds, False) for conn in conns)
                    ),
                    seconds + 60,
                )
                elapsed = time.monotonic() - started
                meter.stop()
                for conn in conns:
                    await conn.close()
                requests = sum(o[1] for o in outs)
                rtts = [v for o in outs for v in o[2]]
                out.append(
                    {
                        "app": kind,
                        "in_flight": flows,
                        "requests_per_s": round(requests / elapsed, 1),
                        "rtt_ms": ms_stats(rtts),
                        "cpu": meter.to_json(),
                    }
                )
                figures.append(
                    _cpu(
                        Figure(
                            "framework floor (no logstream)",
                            f"{what} on Hypercorn, batch 1, {flows} in flight",
                            f"{fmt_int(requests / elapsed)} req/s"
                            f" ({meter.server_s / max(requests, 1) * 1e6:.0f} us server CPU each)",
                            "(reference)",
                            None,
                        ),
                        meter,
                    )
                )
        finally:
            server.stop()
    return out


async def _sqlite_raw(ctx: Context, seconds: float) -> dict[str, Any]:
    path = ctx.workdir / "sqlite-raw.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sqlite_raw",
        str(path),
        str(seconds),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=child_setup(SERVER_CORE if ctx.pin else None),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 2 * seconds + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.sqlite_raw exited with {proc.returncode}")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(path) + suffix)
        except FileNotFoundError:
            pass
    return json.loads(out)  # type: ignore[no-any-return]


# --- 4: idle readers --------------------------------------------------------------------------


def _local_hosts(count: int) -> list[str]:
    """Client source addresses: one loopback address per 5,000 connections."""
    return [f"127.0.0.{k}" for k in range(1, 2 + count // 5000)] if count > 5000 else []


async def _open_idle(
    ctx: Context, server: BenchServer, paths: list[str], open_batch: int
) -> tuple[ReaderSet, list[H1SseStream], float, CpuMeter]:
    meter = CpuMeter(server.pid).start()
    rset, streams, seconds = await open_h1_streams(
        HOST,
        server.port,
        paths,
        lambda i, r: ctx.sink(SseCounter(r, block_latency=False)),
        batch=open_batch,
        concurrency=min(open_batch, 250),
        local_hosts=_local_hosts(len(paths)),
        timeout=max(60.0, len(paths) / 40),
    )
    meter.stop()
    if rset.failed:
        close_streams(streams)
        raise RuntimeError(f"{rset.failed} of {len(paths)} streams failed: {rset.errors[:3]}")
    return rset, streams, seconds, meter


async def _warm_up(ctx: Context, server: BenchServer, job: dict[str, Any]) -> None:
    """Open and close one stream, so code paths loaded on first use are not counted per stream."""
    rset, streams, _ = await open_h1_streams(
        HOST,
        server.port,
        [ctx.log_path(job)],
        lambda i, r: ctx.sink(SseCounter(r, block_latency=False)),
        timeout=30,
    )
    close_streams(streams)
    await asyncio.sleep(0.3)


async def idle(
    ctx: Context,
    counts: tuple[int, ...] = (1000, 10000),
    jobs: int = 100,
    open_batch: int = 500,
    reach_lines: int = 5,
    mem_target_kb: float = 30.0,
    reach_target_ms: float = 500.0,
) -> Result:
    """Open streams on idle jobs: server memory per stream; one line reaching all of them."""
    figures: list[Figure] = []
    raw: dict[str, Any] = {"jobs": jobs, "runs": []}
    for count in counts:
        targeted = count >= 10000
        # A: streams spread over `jobs` idle jobs.
        label = ctx.label(f"idle {count:,} streams / {jobs} jobs")
        server = ctx.server(f"idle{count}")
        server.start()
        streams: list[H1SseStream] = []
        try:
            control = await HttpConnection(HOST, server.port).connect()
            job_list = [await ctx.create_job(control, f"idle-{j}") for j in range(jobs)]
            await _warm_up(ctx, server, job_list[0])
            rss0 = server.rss_bytes()
            paths = [ctx.log_path(job_list[i % jobs]) for i in range(count)]
            prof = Profiler(ctx, server, f"idle_open_{count}", min(15.0, 2 + count / 300))
            await prof.start()
            rset, streams, open_s, meter = await _open_idle(ctx, server, paths, open_batch)
            open_profile = await prof.finish()
            counted = await ctx.healthz(control, count, 30)
            await asyncio.sleep(1.0)
            rss1 = server.rss_bytes()
            per = (rss1 - rss0) / count
            run = {
                "phase": "spread",
                "streams": count,
                "jobs": jobs,
                "open_s": round(open_s, 2),
                "server_counted": counted,
                "rss_before_MB": round(rss0 / 2**20, 1),
                "rss_after_MB": round(rss1 / 2**20, 1),
                "bytes_per_stream": round(per),
                "open_cpu": meter.to_json(),
                "open_profile": open_profile,
            }
            raw["runs"].append(run)
            figures.append(
                _cpu(
                    Figure(
                        label,
                        "server memory per open stream (RSS delta / streams)",
                        f"{per / 1024:.1f} KB ({rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MB)",
                        f"< {mem_target_kb:g} KB" if targeted else "(info)",
                        per / 1024 < mem_target_kb if targeted else None,
                    ),
                    meter,
                )
            )
            figures.append(
                _cpu(
                    Figure(
                        label,
                        f"time to open all streams (batches of {open_batch})",
                        f"{open_s:.1f} s = {fmt_int(count / open_s)} streams/s",
                        "(info)",
                        None,
                    ),
                    meter,
                )
            )
            await control.close()
        finally:
            close_streams(streams)
            server.stop()

        # B: all streams on one job; time for one appended line to reach every reader.
        label = ctx.label(f"idle {count:,} streams / 1 job")
        server = ctx.server(f"idle{count}-one")
        server.start()
        streams = []
        try:
            control = await HttpConnection(HOST, server.port).connect()
            job = await ctx.create_job(control, "idle-one")
            await _warm_up(ctx, server, job)
            rss0 = server.rss_bytes()
            paths = [ctx.log_path(job)] * count
            rset, streams, open_s, _ = await _open_idle(ctx, server, paths, open_batch)
            counted = await ctx.healthz(control, count, 30)
            await asyncio.sleep(1.0)
            rss1 = server.rss_bytes()
            writer = await HttpConnection(HOST, server.port).connect()
            reach: list[int] = []
            meter = CpuMeter(server.pid).start()
            prof = Profiler(ctx, server, f"idle_reach_{count}", 3)
            await prof.start()
            for no in range(1, reach_lines + 1):
                future = rset.arm_reach(no)
                t = time.monotonic_ns()
                writer.send(ctx.append_one(writer, server.port, job, t, no))
                status, body = await writer.answer()
                if status not in (200, *peer_nchan.PUBLISHED):
                    raise RuntimeError(f"append failed: {status} {body[:200]!r}")
                try:
                    await asyncio.wait_for(asyncio.shield(future), 30)
                except TimeoutError:
                    raise RuntimeError(
                        f"line {no} reached only {rset.reached} of {count} readers in 30 s"
                    ) from None
                reach.append(rset.reach_last_ns - t)
                await asyncio.sleep(0.3)
            meter.stop()
            profile = await prof.finish()
            await writer.close()
            await control.close()
            stats = ms_stats(reach)
            per = (rss1 - rss0) / count
            problems = summarize_sinks([unwrap(s.sink) for s in streams])
            run = {
                "phase": "one job",
                "streams": count,
                "open_s": round(open_s, 2),
                "server_counted": counted,
                "bytes_per_stream": round(per),
                "reach_ms": [ms(v) for v in reach],
                "reach_stats_ms": stats,
                "problems": problems,
                "reach_cpu": meter.to_json(),
                "profile": profile,
            }
            raw["runs"].append(run)
            clean = not (problems["gaps"] or problems["duplicates"] or problems["inconsistent"])
            figures.append(
                _cpu(
                    Figure(
                        label,
                        f"one appended line reaching all readers (median / max of {len(reach)})",
                        f"{stats['p50']:.1f} / {stats['max']:.1f} ms"
                        f"{'' if clean else ' [GAPS/DUPS]'}",
                        f"< {reach_target_ms:g} ms" if targeted else "(info)",
                        (stats["max"] < reach_target_ms and clean) if targeted else None,
                    ),
                    meter,
                )
            )
            figures.append(
                _cpu(
                    Figure(
                        label,
                        "server memory per open stream",
                        f"{per / 1024:.1f} KB",
                        "(info)",
                        None,
                    ),
                    meter,
                )
            )
        finally:
            close_streams(streams)
            server.stop()
    return Result("idle", figures, raw)


# --- TLS material -------------------------------------------------------------------------------


def make_tls(workdir: Path) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (workdir / "cert.pem", workdir / "key.pem", workdir / "ca.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return {"certfile": str(certfile), "keyfile": str(keyfile), "cafile": str(cafile)}


# --- self-check: the load generator's own ceiling ----------------------------------------------


async def selfcheck(
    ctx: Context, readers: int = 1000, rate: int = 1000, duration: float = 5.0, batch: int = 10
) -> Result:
    """The fan-out readers against a trivial SSE server (bench/fake_sse.py on the server core).

    Tells how many events/s this machine's load generator can take in the fan-out's shape
    (S readers, one chunk of `batch` events per reader per tick), i.e. above which rate a
    fan-out figure would measure the bench rather than logstream.
    """
    from .common import free_port

    label = f"bench self-check: fake SSE server, S={readers:,} R={rate:,}/s"
    full_readers = 10 if readers > 100 else readers
    step = readers / full_readers
    full_set = {int(i * step) for i in range(full_readers)}
    port = free_port()
    args = {"port": port, "readers": readers, "rate": rate, "batch": batch, "duration": duration}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fake_sse",
        json.dumps(args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=child_setup(SERVER_CORE if ctx.pin else None),
    )
    streams: list[H1SseStream] = []
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"listening":
            raise RuntimeError(f"fake server said {line!r}")

        def sink_factory(i: int, rset: ReaderSet) -> SseCounter | SseVerifier:
            return SseVerifier(rset) if i in full_set else SseCounter(rset)

        rset, streams, _ = await open_h1_streams(
            HOST, port, ["/fake"] * readers, sink_factory, batch=500, timeout=120
        )
        meter = CpuMeter(proc.pid).start()
        if not await rset.wait_done(duration + 60):
            raise RuntimeError(f"only {rset.done} of {readers} readers got the end")
        meter.stop()
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        sent = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        close_streams(streams)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    sinks = [s.sink for s in streams]
    total = sum(s.count for s in sinks)
    expected = readers * sent["lines"]
    t_last = max(s.last_ns for s in sinks)
    rate_got = total / max(1e-9, (t_last - sent["first_send_ns"]) / 1e9)
    lat = ms_stats([v for s in sinks if isinstance(s, SseVerifier) for v in s.lat])
    problems = summarize_sinks(sinks)
    raw = {
        "readers": readers,
        "rate": rate,
        "batch": batch,
        "duration_s": duration,
        "fake_server": sent,
        "events_received": total,
        "events_expected": expected,
        "events_per_s": round(rate_got, 1),
        "latency_ms_verifiers": lat,
        "problems": problems,
        "cpu": meter.to_json(),
    }
    # Here "server CPU" is the fake server's; loadgen CPU over the window is what counts.
    wanted = readers * rate
    figures = [
        _cpu(
            Figure(
                label,
                "events/s the bench's readers took (all delivered?)",
                f"{fmt_int(rate_got)} ({fmt_int(total)}/{fmt_int(expected)})",
                f"~{fmt_int(wanted)}/s: the bench can measure the fan-out target",
                total == expected and rate_got >= 0.97 * wanted,
            ),
            meter,
        ),
        _cpu(
            Figure(
                label,
                "latency fake-server write -> reader (10 verifying readers)",
                _lat_text(lat),
                "(info: the bench's own delay)",
                None,
            ),
            meter,
        ),
    ]
    return Result("selfcheck", figures, raw)
