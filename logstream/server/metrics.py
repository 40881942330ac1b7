"""What the server counts for `GET /metrics` (Prometheus text format, prometheus-client).

Cheap on the hot path: prometheus-client's own observe() and inc() take a lock each and cost
about 2 us, several per one-line append (an append costs ~85 us of CPU in all), so what the hot
path counts is tallied in plain Python (`Tally`: an add, or a bisect and two adds, on the event
loop) and moved into the prometheus-client metrics when scraped (and every GAUGE_INTERVAL in
multiprocess mode). The writer counts appends and lines once per committed batch. Gauges of
what is open (streams, live feeds) are read from the hub when scraped.

With `--workers` > 1 prometheus-client runs in its multiprocess mode: each process writes its
values to files in PROMETHEUS_MULTIPROC_DIR (the CLI makes one when it is unset: the variable
must be set before prometheus_client is first imported), a scrape answered by any worker adds
up all of them, and each worker refreshes its gauges every GAUGE_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import Callable
from typing import Any

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

_APPENDS = Counter(
    "logstream_appends", "Appends committed (keepalives, which carry no lines, included)"
)
_LINES = Counter("logstream_lines", "Lines stored")
_APPEND_SECONDS = Histogram(
    "logstream_append_seconds",
    "Time to answer a successful append, from its headers to its commit (HTTP framing aside)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
_BATCH_OPERATIONS = Histogram(
    "logstream_writer_batch_operations",
    "Operations (appends, creates, finishes...) per writer transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
_COMMIT_SECONDS = Histogram(
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


class Tally:
    """What the hot path counts, in plain Python until `flush()` moves it into `metric` (a
    Counter or a Histogram). Used on the event loop only (no lock)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        bounds = getattr(metric, "_upper_bounds", None)
        # Bucket counts are added to the histogram's own values (its internals, stable for
        # years); if a release changes them, observations go through observe() at flush.
        self._direct = bounds is not None and hasattr(metric, "_buckets")
        self.bounds: list[float] = list(bounds or [])
        self.counts = [0] * len(self.bounds)
        self.values: list[float] = []  # only without _direct
        self.total = 0.0

    def inc(self, amount: float = 1) -> None:
        """Count `amount` (a counter)."""
        self.total += amount

    def observe(self, value: float) -> None:
        """Record one observation (a histogram)."""
        if self._direct:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
        else:
            self.values.append(value)
        self.total += value

    def flush(self) -> None:
        """Move what was tallied into the prometheus-client metric."""
        if not self.bounds:
            if self.total:
                self.metric.inc(self.total)
                self.total = 0.0
            return
        if self._direct:
            if any(self.counts):
                for index, count in enumerate(self.counts):
                    if count:
                        self.metric._buckets[index].inc(count)
                        self.counts[index] = 0
                self.metric._sum.inc(self.total)
        else:
            values, self.values = self.values, []
            for value in values:
                self.metric.observe(value)
        self.total = 0.0


APPENDS = Tally(_APPENDS)
LINES = Tally(_LINES)
APPEND_SECONDS = Tally(_APPEND_SECONDS)
BATCH_OPERATIONS = Tally(_BATCH_OPERATIONS)
COMMIT_SECONDS = Tally(_COMMIT_SECONDS)
TALLIES = (APPENDS, LINES, APPEND_SECONDS, BATCH_OPERATIONS, COMMIT_SECONDS)


def flush() -> None:
    """Move every tally into its metric (before a scrape; periodically with several workers)."""
    for tally in TALLIES:
        tally.flush()


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
    flush()
    set_live(*live())
    if not multiprocess():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def report_live(live: Callable[[], tuple[int, int]]) -> None:
    """Multiprocess mode: keep this worker's values fresh for scrapes answered by another."""
    while True:
        flush()
        set_live(*live())
        await asyncio.sleep(GAUGE_INTERVAL)


def process_exited(pid: int) -> None:
    """Multiprocess mode: drop the live gauges of a worker that has exited."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]
