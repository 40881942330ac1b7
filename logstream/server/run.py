"""Run the app under Hypercorn: HTTP/1.1 + h2c on a plain port, HTTP/2 over TLS with a cert.

Shutdown is cooperative (see ARCHITECTURE.md): on SIGTERM/SIGINT every open stream is told to
send its farewell (a comment and `retry:`) and end, and only then does Hypercorn close its
listeners, so browsers reconnect elsewhere with Last-Event-ID instead of hanging. What has not
ended ABORT_GRACE after LOGSTREAM_GRACEFUL_TIMEOUT (a client that stopped reading) is aborted.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

from logstream.config import Settings, SettingsError
from logstream.server import h11guard, hyperhooks, metrics
from logstream.server.app import create_app
from logstream.server.auth import RedactSecrets
from logstream.server.h2guard import install as install_h2guard
from logstream.server.services import Services

log = logging.getLogger("logstream")

# Pending connections the kernel queues for accept (it caps this at net.core.somaxconn).
BACKLOG = 4096

# Allocations between young-generation collections (CPython's default is 700).
GC_THRESHOLD_0 = 10_000

# Seconds after the graceful timeout that connections get to send what their streams wrote
# last; then the ones still open (a client that stopped reading) are aborted.
ABORT_GRACE = 1.0
# Seconds after the graceful timeout at which a server process exits whatever still runs
# (e.g. a store that does not answer while the writer drains), with status 1.
EXIT_GRACE = 5.0


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn settings fit for long-lived streams."""
    config = Config()
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    config.bind = [f"{host}:{settings.port}"]
    if settings.certfile and settings.keyfile:
        config.certfile = settings.certfile
        config.keyfile = settings.keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
    # No read_timeout: an EventSource sends nothing after its request (PITFALLS 5).
    # A deploy or a network blip makes every open viewer reconnect at once: with Hypercorn's
    # default backlog of 100, connections past it wait for a SYN retry (1 s and more).
    config.backlog = BACKLOG
    config.keep_alive_timeout = 75  # above the usual 60 s idle timeout of load balancers
    # Hypercorn sends GOAWAY after this many requests on one HTTP/2 connection, which silently
    # stalls the streams still open on it (PITFALLS 6): make it effectively unlimited.
    config.keep_alive_max_requests = 2**31
    # A browser tab set can open many. Past it a stream is refused (REFUSED_STREAM, h2guard);
    # stock Hypercorn would kill the whole connection (PITFALLS 9).
    config.h2_max_concurrent_streams = 1000
    config.graceful_timeout = settings.graceful_timeout
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    config.loglevel = settings.log_level.upper()
    return config


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    sockets: Sockets | None = None,
    force_exit: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then end streams and return.

    Connections still open ABORT_GRACE after the graceful timeout are aborted; with
    `force_exit` (a server process of its own) the process exits EXIT_GRACE after it at the
    latest.
    """
    hyperhooks.install()
    h11guard.install(settings.header_timeout)
    app = create_app(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            pass

    watchdog: list[asyncio.Task[None]] = []

    async def shutdown_trigger() -> None:
        await stop.wait()
        began = time.monotonic()
        watchdog.append(
            asyncio.create_task(
                _abort_at(began + settings.graceful_timeout + ABORT_GRACE), name="logstream-abort"
            )
        )
        if force_exit:
            _exit_after(settings.graceful_timeout + EXIT_GRACE)
        services: Services | None = app.extensions.get("logstream")
        if services is None:
            return
        log.info("shutting down: ending %d open streams", services.hub.streams.count)
        services.hub.begin_shutdown()
        deadline = time.monotonic() + settings.graceful_timeout
        while services.hub.streams.count > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 (shutdown only)
            await asyncio.sleep(0.02)
        log.info("streams left: %d", services.hub.streams.count)

    config = hypercorn_config(settings)
    install_h2guard()  # HTTP/2 rapid reset and the stream limit (CVE-2023-44487, hypercorn #335)
    try:
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger,
        )
    finally:
        for task in watchdog:
            task.cancel()


async def _abort_at(when: float) -> None:
    """At `when`, abort the client connections still open (they would hold shutdown forever)."""
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    aborted = hyperhooks.abort_connections()
    if aborted:
        log.warning(
            "shutdown: aborted %d connection(s) still open %.1f s after the graceful timeout",
            aborted,
            ABORT_GRACE,
        )


def _exit_after(seconds: float) -> None:
    """Exit the process in `seconds` unless it has by then (a thread: the loop may be stuck)."""

    def exit_now() -> None:
        log.error("shutdown did not finish %.1f s after it began; exiting now", seconds)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None


def tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing every stream at once.

    With thousands of open streams the heap holds millions of long-lived objects, and a full
    collection walks all of them while no stream is served (a second at 10,000 streams). The
    objects alive after start-up (modules, the app, SQLAlchemy's caches) are frozen out of
    collection, and young collections run less often; almost everything a stream allocates is
    freed by reference counting anyway. Pauses over 100 ms are logged.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, 10, 10)
    started: list[float] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            took = time.perf_counter() - started[0]
            if took > 0.1:
                log.warning(
                    "garbage collection of generation %d took %.0f ms",
                    info.get("generation", -1),
                    took * 1000,
                )

    gc.callbacks.append(watch)


def loop_factory(settings: Settings) -> LoopFactory:
    """The event loop to serve on: uvloop unless told otherwise or not installed."""
    if settings.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if settings.event_loop == "uvloop":
            raise SettingsError("LOGSTREAM_EVENT_LOOP=uvloop but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def run_loop(factory: LoopFactory, main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to its end on a new event loop from `factory` (None: asyncio's own)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


class StartupError(Exception):
    """The server cannot start; the message is one line for the operator (exit non-zero)."""


def listen(settings: Settings) -> Sockets:
    """Bind the listening sockets now, so a port in use is one line, not a traceback."""
    try:
        return hypercorn_config(settings).create_sockets()
    except OSError as error:
        where = f"{settings.host}:{settings.port}"
        raise StartupError(f"cannot listen on {where}: {error.strerror or error}") from None


def check_store(settings: Settings) -> None:
    """Migrate the embedded default if configured to; then the store must answer, migrated."""
    from logstream.server.store.migrate import StoreProblem, check_store, safe_url, upgrade

    try:
        if settings.should_auto_migrate:
            try:
                upgrade(settings.database_url)
            except Exception as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
                raise StoreProblem(
                    f"cannot migrate the store at {safe_url(settings.database_url)}: {first}"
                ) from None
        check_store(settings.database_url)
    except StoreProblem as problem:
        raise StartupError(str(problem)) from None


def run(settings: Settings) -> None:
    """Listen, migrate the embedded default if needed, check the store, then serve (blocking).

    Raises SettingsError (before doing anything) when the event loop asked for is missing, and
    StartupError when the port is taken or the store is unreachable or not migrated.
    """
    factory = loop_factory(settings)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiosqlite's debug lines repeat every statement with its parameters: noise, and hashes.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.root.level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    sockets = listen(settings)
    check_store(settings)
    log.info("event loop: %s", "asyncio" if factory is None else "uvloop")
    tune_gc()
    if settings.workers <= 1:
        run_loop(factory, serve(settings, sockets=sockets, force_exit=True))
        return
    run_workers(settings, factory, sockets)


def _worker(settings: Settings, sockets: Sockets, factory: LoopFactory) -> None:
    run_loop(factory, serve(settings, sockets=sockets, force_exit=True))


def run_workers(
    settings: Settings, factory: LoopFactory = None, sockets: Sockets | None = None
) -> None:
    """Serve with several processes sharing the listening sockets (forked, so they inherit).

    Each worker is a whole logstream (writer, hub, broker). On PostgreSQL they share hints by
    LISTEN/NOTIFY; on SQLite each sees the others' writes by its periodic re-check, so a tail
    lags a line written through another worker by at most LOGSTREAM_POLL_INTERVAL. A worker
    that dies is replaced; SIGTERM/SIGINT is passed on to all of them.
    """
    if sockets is None:
        sockets = listen(settings)
    context = multiprocessing.get_context("fork")
    workers: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def spawn() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(settings, sockets, factory), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    workers.extend(spawn() for _ in range(settings.workers))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("started %d workers: %s", len(workers), [p.pid for p in workers])
    while workers:
        for process in list(workers):
            process.join(timeout=0.2)
            if process.is_alive():
                continue
            workers.remove(process)
            if process.pid is not None:
                metrics.process_exited(process.pid)
            if not stopping:
                log.warning(
                    "worker %s exited with %s; starting another", process.pid, process.exitcode
                )
                workers.append(spawn())
