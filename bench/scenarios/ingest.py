"""ingest: durable appends as fast as possible, beside the raw SQLite limit and the framework floor.

The raw SQLite limit (bench/sqlite_raw.py) runs on the server's core while no server runs; the
floor (bench/floor_app.py) is the same one-line POSTs against an empty handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from ..common import SERVER_CORE, CpuMeter, Figure, fmt_int, line_texts, ms_stats
from ..httpc import HttpConnection, append_request, create_job
from ..server import BenchServer
from .context import HOST, Context, Profiler, Result, request_json, spawn, with_cpu


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


async def run(
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
                info = await request_json(control, "GET", f"/api/jobs/{job['id']}")
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
                with_cpu(
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
                    with_cpu(
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
    proc = await spawn(ctx, "bench.sqlite_raw", str(path), str(seconds), core=SERVER_CORE)
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
