"""idle: many open SSE streams on idle jobs: server memory per stream, one line's reach time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .. import peer_nchan
from ..common import CpuMeter, Figure, fmt_int, ms, ms_stats
from ..httpc import HttpConnection
from ..readers import (
    H1SseStream,
    ReaderSet,
    SseCounter,
    close_streams,
    open_h1_streams,
    summarize_sinks,
)
from ..server import BenchServer
from .context import HOST, Context, Profiler, Result, unwrap, with_cpu


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


async def run(
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
                with_cpu(
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
                with_cpu(
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
                with_cpu(
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
                with_cpu(
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
