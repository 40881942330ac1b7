"""What the server counts for `GET /metrics` (Prometheus text format, prometheus-client).

Cheap on the hot path: the writer counts appends and lines once per committed batch, not per
request; an append's latency is one histogram observation. Gauges of what is open (streams,
live feeds) are read from the hub when scraped, not kept up to date on every change.

With `--workers` > 1 prometheus-client runs in its multiprocess mode: each process writes its
values to files in PROMETHEUS_MULTIPROC_DIR (the CLI makes one when it is unset: the variable
must be set before prometheus_client is first imported), a scrape answered by any worker adds
up all of them, and each worker refreshes its gauges every GAUGE_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# The classic text format, which every Prometheus reads (our names need no UTF-8 escaping);
# prometheus-client 0.22+ labels the same body version 1.0.0.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
GAUGE_INTERVAL = 1.0

APPENDS = Counter(
    "logstream_appends", "Appends committed (keepalives, which carry no lines, included)"
)
LINES = Counter("logstream_lines", "Lines stored")
APPEND_SECONDS = Histogram(
    "logstream_append_seconds",
    "Time to answer a successful append, from its headers to its commit (HTTP framing aside)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_OPERATIONS = Histogram(
    "logstream_writer_batch_operations",
    "Operations (appends, creates, finishes...) per writer transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
COMMIT_SECONDS = Histogram(
    "logstream_writer_commit_seconds",
    "Time a writer transaction took, BEGIN to COMMIT",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)
STORE_ERRORS = Counter(
    "logstream_store_errors",
    "Failures of the store: writer batches that failed, requests answered 503",
    ["where"],
)
BROKER_RECONNECTS = Counter(
    "logstream_broker_reconnects", "Times the PostgreSQL LISTEN connection was re-established"
)
JOBS_ENDED_BY_SERVER = Counter(
    "logstream_jobs_ended_by_server",
    "Running jobs the sweep ended: lost (no append or keepalive), canceled (never confirmed)",
    ["status"],
)
OPEN_STREAMS = Gauge(
    "logstream_open_streams", "Open log and event streams", multiprocess_mode="livesum"
)
LIVE_FEEDS = Gauge(
    "logstream_live_feeds",
    "Jobs with live readers (one shared feed each)",
    multiprocess_mode="livesum",
)


# Labelled series show from the start (at 0), so a dashboard's rate() has a baseline.
for _where in ("writer", "request"):
    STORE_ERRORS.labels(where=_where)
for _status in ("lost", "canceled"):
    JOBS_ENDED_BY_SERVER.labels(status=_status)


def multiprocess() -> bool:
    """True when values go to the shared files of several worker processes."""
    return bool(os.environ.get(MULTIPROCESS_ENV))


def batch_committed(operations: int, appends: int, lines: int) -> None:
    """The writer committed a batch (called once per transaction)."""
    BATCH_OPERATIONS.observe(operations)
    if appends:
        APPENDS.inc(appends)
    if lines:
        LINES.inc(lines)


def store_error(where: str) -> None:
    """The store failed a writer batch ("writer") or a request ("request")."""
    STORE_ERRORS.labels(where=where).inc()


def set_live(streams: int, feeds: int) -> None:
    """Record what is open in this process now."""
    OPEN_STREAMS.set(streams)
    LIVE_FEEDS.set(feeds)


def render(live: Callable[[], tuple[int, int]]) -> bytes:
    """The exposition: this process's registry, or every worker's files in multiprocess mode.
    `live()` gives this process's open streams and live feeds."""
    set_live(*live())
    if not multiprocess():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def report_live(live: Callable[[], tuple[int, int]]) -> None:
    """Multiprocess mode: keep this worker's gauges fresh for scrapes answered by another."""
    while True:
        set_live(*live())
        await asyncio.sleep(GAUGE_INTERVAL)


def process_exited(pid: int) -> None:
    """Multiprocess mode: drop the live gauges of a worker that has exited."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]
