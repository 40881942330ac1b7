"""Fan-out: S readers tail one job over SSE while a paced runner appends R lines/s in batches.

The readers connect over HTTP/1.1, one connection each, by default; `h2.py` runs the same
measurement over HTTP/2 + TLS with its own Transport.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from ..common import LOADGEN_CORE, CpuMeter, Figure, fmt_int, fmt_ms, ms, ms_stats
from ..httpc import HttpConnection
from ..readers import ReaderSet, Sink, SseCounter, SseVerifier, open_h1_streams, summarize_sinks
from .context import (
    HOST,
    Context,
    Profiler,
    Result,
    latency_text,
    spawn,
    unwrap,
    verifying_set,
    with_cpu,
)


class Transport:
    """How the fan-out's readers connect: here SSE over HTTP/1.1, one connection per reader."""

    tls: dict[str, str] | None = None  # certfile, keyfile, cafile: the server serves TLS

    def name(self, readers: int) -> str:
        """The scenario's name in the JSON (and its profile file)."""
        return f"fanout_{readers}"

    def label(self, readers: int, rate: int) -> str:
        """The figures' scenario label."""
        return f"fan-out S={readers:,} R={rate:,}/s"

    def mode(self, readers: int) -> str:
        """How the streams are carried, for the JSON."""
        return f"{readers} HTTP/1.1 connections"

    async def open(
        self, port: int, paths: list[str], sink_factory: Callable[[int, ReaderSet], Any]
    ) -> tuple[ReaderSet, list[Any], list[Sink], float]:
        """Open one stream per path: (reader set, streams, their sinks, seconds to open)."""
        rset, streams, open_s = await open_h1_streams(
            HOST, port, paths, sink_factory, batch=500, timeout=120
        )
        return rset, streams, [unwrap(s.sink) for s in streams], open_s


async def run(
    ctx: Context,
    readers: int,
    rate: int,
    duration: float,
    *,
    full_readers: int | None = None,
    batch: int = 10,
    p99_target_ms: float | None = None,
    transport: Transport | None = None,
) -> Result:
    """S readers tail one job while a paced runner appends R lines/s in batches."""
    transport = transport or Transport()
    label = transport.label(readers, rate)
    name = transport.name(readers)
    full_set = verifying_set(readers, full_readers)
    if p99_target_ms is None:
        p99_target_ms = 250.0 if readers >= 1000 else 50.0
    tls = transport.tls
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

        rset, streams, sinks, open_s = await transport.open(
            server.port, [path] * readers, sink_factory
        )
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
        appender = await spawn(ctx, "bench.appender", json.dumps(args), core=LOADGEN_CORE)
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
    raw = {
        "readers": readers,
        "rate": rate,
        "duration_s": duration,
        "batch": batch,
        "transport": transport.mode(readers),
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
        with_cpu(
            Figure(
                label,
                "delivered events/s (all readers)",
                f"{fmt_int(delivered_rate)} ({fmt_int(total)}/{fmt_int(expected)} events)",
                f"{fmt_int(wanted_rate)}/s, all delivered",
                all_delivered and appended_ok and delivered_rate >= 0.97 * wanted_rate,
            ),
            meter,
        ),
        with_cpu(
            Figure(
                label,
                f"latency append->reader ({len(full_set)} verifying readers, every event)",
                latency_text(lat),
                f"p99 < {p99_target_ms:g} ms",
                bool(lat.get("count")) and lat["p99"] < p99_target_ms,
            ),
            meter,
        ),
    ]
    if block_lat.get("count"):
        figures.append(
            with_cpu(
                Figure(
                    label,
                    f"latency, oldest event of each read ({readers - len(full_set)} counting"
                    " readers)",
                    latency_text(block_lat),
                    "(upper bound, info)",
                    None,
                ),
                meter,
            )
        )
    figures.append(
        with_cpu(
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
        with_cpu(
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
