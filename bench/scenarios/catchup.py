"""catchup: build a finished log, then read it from line 1 (SSE counted, raw text, SSE checked)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .. import peer_nchan
from ..common import LINE_BYTES, CpuMeter, Figure, fmt_int, line_texts
from ..httpc import Dechunker, HttpConnection, append_request
from ..readers import H1SseStream, ReaderSet, SseCounter, SseVerifier
from .context import HOST, Context, Profiler, Result, unwrap, with_cpu


class TextCounter:
    """Counts the lines of a raw text (chunked) body; checks their numbers as it goes."""

    def __init__(self, rset: ReaderSet) -> None:
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


async def run(
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
            with_cpu(
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
            with_cpu(
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
                with_cpu(
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
            with_cpu(
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
