"""selfcheck: the load generator's own ceiling, the fan-out's readers against a trivial server."""

from __future__ import annotations

import asyncio
import json

from ..common import SERVER_CORE, CpuMeter, Figure, fmt_int, free_port, ms_stats
from ..readers import (
    H1SseStream,
    ReaderSet,
    SseCounter,
    SseVerifier,
    close_streams,
    open_h1_streams,
    summarize_sinks,
)
from .context import HOST, Context, Result, latency_text, spawn, verifying_set, with_cpu


async def run(
    ctx: Context, readers: int = 1000, rate: int = 1000, duration: float = 5.0, batch: int = 10
) -> Result:
    """The fan-out readers against a trivial SSE server (bench/fake_sse.py on the server core).

    Tells how many events/s this machine's load generator can take in the fan-out's shape
    (S readers, one chunk of `batch` events per reader per tick), i.e. above which rate a
    fan-out figure would measure the bench rather than logstream.
    """
    label = f"bench self-check: fake SSE server, S={readers:,} R={rate:,}/s"
    full_set = verifying_set(readers)
    port = free_port()
    args = {"port": port, "readers": readers, "rate": rate, "batch": batch, "duration": duration}
    proc = await spawn(ctx, "bench.fake_sse", json.dumps(args), core=SERVER_CORE)
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
        with_cpu(
            Figure(
                label,
                "events/s the bench's readers took (all delivered?)",
                f"{fmt_int(rate_got)} ({fmt_int(total)}/{fmt_int(expected)})",
                f"~{fmt_int(wanted)}/s: the bench can measure the fan-out target",
                total == expected and rate_got >= 0.97 * wanted,
            ),
            meter,
        ),
        with_cpu(
            Figure(
                label,
                "latency fake-server write -> reader (10 verifying readers)",
                latency_text(lat),
                "(info: the bench's own delay)",
                None,
            ),
            meter,
        ),
    ]
    return Result("selfcheck", figures, raw)
