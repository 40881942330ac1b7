"""Run the benchmarks: `python -m bench.run [--quick] [SCENARIO [options]]`.

Without a scenario every one runs (selfcheck, fanout, catchup, ingest, idle, h2). Prints a table
(scenario, figure, value, target, met?, server CPU s, load-generator CPU s) and writes every
number to bench/results/latest.json. The server is pinned to core 0, this process and its
helpers to core 1. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import peer_nchan
from .common import (
    LOADGEN_CORE,
    SERVER_CORE,
    Figure,
    cores_available,
    install_uvloop,
    pin_self,
    raise_nofile,
)
from .profile import render
from .scenarios import catchup, fanout, h2, idle, ingest, selfcheck, storage
from .scenarios.context import Context, Result
from .server import stop_all

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIOS = ("selfcheck", "fanout", "catchup", "storage", "ingest", "idle", "h2")


def build_parser() -> argparse.ArgumentParser:
    def common(parser: argparse.ArgumentParser, suppress: bool) -> None:
        # The same options before or after the scenario's name.
        d = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
        parser.add_argument(
            "--quick",
            action="store_true",
            default=d(False),
            help="short smoke version (everything: well under a minute)",
        )
        parser.add_argument(
            "--json",
            type=Path,
            default=d(RESULTS / "latest.json"),
            help="where to write the results (bench/results/latest.json)",
        )
        parser.add_argument(
            "--no-pin",
            action="store_true",
            default=d(False),
            help="do not pin server and load generator to cores 0 and 1",
        )
        parser.add_argument(
            "--profile",
            action="store_true",
            default=d(False),
            help="py-spy record the server in each measurement window (needs"
            " py-spy; costs load-generator CPU); print where time goes",
        )
        parser.add_argument(
            "--keep-workdir",
            action="store_true",
            default=d(False),
            help="keep the temporary directory (databases, server logs)",
        )
        parser.add_argument(
            "--scenario-timeout",
            type=float,
            default=d(900.0),
            help="seconds after which a scenario is abandoned (900)",
        )
        parser.add_argument(
            "--peer",
            action="store_true",
            default=d(False),
            help="after each scenario, run it against the peers too, in the"
            " same run: a typical Python SSE service (sse-starlette on"
            " uvicorn, in memory; bench/peer_starlette.py; its fan-out"
            " S>=1000 appends for 3 s, since it delivers ~2%% of what is"
            " asked) and nchan on nginx when installed"
            " (bench/peer_nchan.py: fanout, idle, and catch-up of"
            " 30,000 lines); not selfcheck or h2",
        )

    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(parser, suppress=False)
    shared = argparse.ArgumentParser(add_help=False)
    common(shared, suppress=True)
    sub = parser.add_subparsers(dest="scenario", metavar="SCENARIO")

    p = sub.add_parser(
        "selfcheck",
        parents=[shared],
        help="the bench's own ceiling: fan-out readers against a trivial server",
    )
    p.add_argument("--readers", type=int, default=1000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--duration", type=float, help="seconds (default 5)")

    p = sub.add_parser(
        "fanout", parents=[shared], help="S readers tail one job over SSE (HTTP/1.1)"
    )
    p.add_argument("--readers", type=int, nargs="+", help="S values (default 100 1000)")
    p.add_argument("--rate", type=int, default=1000, help="lines/s appended (default 1000)")
    p.add_argument("--duration", type=float, help="seconds of appending (default 10)")
    p.add_argument("--batch", type=int, default=10, help="lines per POST (default 10)")
    p.add_argument(
        "--full-readers",
        type=int,
        help="readers that parse and check every event (default: all up to 100"
        " readers, else 10 spread over the set)",
    )
    p.add_argument("--p99-target", type=float, help="ms (default 50 for S<1000, else 250)")

    p = sub.add_parser(
        "catchup", parents=[shared], help="read a finished log from line 1 (SSE and raw text)"
    )
    p.add_argument("--lines", type=int, help="log size (default 1,000,000)")
    p.add_argument("--ingest-batch", type=int, default=5000)

    p = sub.add_parser(
        "storage",
        parents=[shared],
        help="a finished log as rows vs compacted (zstd, zlib): bytes/line, catch-up, search",
    )
    p.add_argument("--lines", type=int, help="log size (default 1,000,000)")
    p.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(storage.VARIANTS),
        help="what to measure (default rows zstd zlib; rows is what the others are held to)",
    )
    p.add_argument("--repeat", type=int, help="reads per figure, the best kept (default 2)")
    p.add_argument(
        "--text",
        choices=["words", "padded"],
        help="the lines: build output from a word list (default) or catchup's padded lines",
    )

    p = sub.add_parser(
        "ingest", parents=[shared], help="durable appends as fast as possible; raw SQLite limit"
    )
    p.add_argument("--seconds", type=float, help="per mode (default 5)")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 100 1000)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="requests in flight for the extra batch-1 mode (default 8)",
    )
    p.add_argument("--runners", type=int, default=4, help="runners on as many jobs (default 4)")
    p.add_argument("--runners-batch", type=int, default=100)
    p.add_argument("--sqlite-seconds", type=float, help="per raw SQLite mode (default 3)")

    p = sub.add_parser(
        "idle", parents=[shared], help="many open SSE streams on idle jobs: memory, reach time"
    )
    p.add_argument("--streams", type=int, nargs="+", help="counts (default 1000 10000)")
    p.add_argument("--jobs", type=int, default=100, help="jobs to spread streams over")
    p.add_argument("--open-batch", type=int, default=500, help="connections opened at a time")
    p.add_argument(
        "--reach-lines",
        type=int,
        default=5,
        help="single lines appended (one at a time) to time their reach",
    )

    p = sub.add_parser(
        "h2", parents=[shared], help="fan-out over HTTP/2 + TLS (h2 library readers)"
    )
    p.add_argument("--readers", type=int, nargs="+", help="S values (default 100)")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--duration", type=float, help="seconds of appending (default 10)")
    p.add_argument(
        "--connections",
        type=int,
        default=10,
        help="TLS connections the streams are spread over (default 10)",
    )
    p.add_argument("--full-readers", type=int)
    p.add_argument("--p99-target", type=float)
    return parser


def plan(
    args: argparse.Namespace,
) -> list[tuple[str, Callable[[Context], Awaitable[Result]]]]:
    """The (name, coroutine factory) list to run, with options (or defaults, or --quick)."""
    quick = args.quick
    chosen = [args.scenario] if args.scenario else list(SCENARIOS)
    jobs: list[tuple[str, Callable[[Context], Awaitable[Result]]]] = []

    def get(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    for name in chosen:
        if name in ("fanout", "h2"):
            is_h2 = name == "h2"
            duration = get("duration", 1.0 if quick else 10.0)
            for readers in get("readers", [100] if is_h2 else [100, 1000]):
                kwargs: dict[str, Any] = {
                    "batch": get("batch", 10),
                    "full_readers": get("full_readers", None),
                    "p99_target_ms": get("p99_target", None),
                }
                if is_h2:
                    kwargs["connections"] = get("connections", 10)
                jobs.append(
                    (
                        f"{'h2 ' if is_h2 else ''}fanout S={readers}",
                        functools.partial(
                            h2.run if is_h2 else fanout.run,
                            readers=readers,
                            rate=get("rate", 1000),
                            duration=duration,
                            **kwargs,
                        ),
                    )
                )
        elif name == "selfcheck":
            jobs.append(
                (
                    "selfcheck",
                    functools.partial(
                        selfcheck.run,
                        readers=get("readers", 1000),
                        rate=get("rate", 1000),
                        duration=get("duration", 1.0 if quick else 5.0),
                    ),
                )
            )
        elif name == "catchup":
            lines = get("lines", 50_000 if quick else 1_000_000)
            jobs.append(
                (
                    "catchup",
                    functools.partial(
                        catchup.run,
                        lines=lines,
                        ingest_batch=get("ingest_batch", 5000),
                        sse_target_s=3.0 * lines / 1_000_000,
                    ),
                )
            )
        elif name == "storage":
            jobs.append(
                (
                    "storage",
                    functools.partial(
                        storage.run,
                        lines=get("lines", 50_000 if quick else 1_000_000),
                        variants=tuple(get("variants", ["rows", "zstd", "zlib"])),
                        repeat=get("repeat", 1 if quick else 2),
                        text=get("text", "words"),
                    ),
                )
            )
        elif name == "ingest":
            jobs.append(
                (
                    "ingest",
                    functools.partial(
                        ingest.run,
                        seconds=get("seconds", 0.5 if quick else 5.0),
                        batches=tuple(get("batches", [1, 100, 1000])),
                        concurrency=get("concurrency", 8),
                        runners=get("runners", 4),
                        runners_batch=get("runners_batch", 100),
                        sqlite_seconds=get("sqlite_seconds", 0.3 if quick else 3.0),
                    ),
                )
            )
        elif name == "idle":
            jobs.append(
                (
                    "idle",
                    functools.partial(
                        idle.run,
                        counts=tuple(get("streams", [300] if quick else [1000, 10000])),
                        jobs=get("jobs", 100),
                        open_batch=get("open_batch", 500),
                        reach_lines=get("reach_lines", 3 if quick else 5),
                    ),
                )
            )
    if not args.peer:
        return jobs
    nchan_missing = peer_nchan.available()
    if nchan_missing:
        print(f"warning: the nchan peer is skipped: {nchan_missing}", file=sys.stderr)
    with_peers: list[tuple[str, Callable[[Context], Awaitable[Result]]]] = []
    for name, factory in jobs:
        with_peers.append((name, factory))
        if name.startswith(("h2", "selfcheck", "storage")):
            continue
        peer_factory = factory
        if (
            name.startswith("fanout")
            and isinstance(factory, functools.partial)
            and factory.keywords.get("readers", 0) >= 1000
        ):
            peer_factory = functools.partial(
                factory, duration=min(factory.keywords["duration"], 3.0)
            )
        with_peers.append((f"peer {name}", _as_peer(peer_factory, "peer_starlette")))
        if nchan_missing or name.startswith("ingest"):  # nchan takes no batches
            continue
        nchan_factory = factory
        if name == "catchup" and isinstance(factory, functools.partial):
            # nchan's catch-up time grows with the square of its buffer, and from about 60,000
            # buffered messages on its subscriber skipped messages here (bench/README.md).
            lines = min(factory.keywords["lines"], NCHAN_CATCHUP_LINES)
            nchan_factory = functools.partial(
                factory, lines=lines, sse_target_s=3.0 * lines / 1_000_000
            )
        with_peers.append((f"nchan {name}", _as_peer(nchan_factory, "peer_nchan")))
    return with_peers


NCHAN_CATCHUP_LINES = 30_000


def _as_peer(
    factory: Callable[[Context], Awaitable[Result]], peer: str
) -> Callable[[Context], Awaitable[Result]]:
    def run(ctx: Context) -> Awaitable[Result]:
        return factory(dataclasses.replace(ctx, peer=peer))

    return run


def render_table(figures: list[Figure]) -> str:
    headers = [
        "scenario",
        "figure",
        "value",
        "target",
        "met?",
        "server CPU s",
        "loadgen CPU s",
        "window s",
        "others on core 0 s",
    ]
    rows = []
    for f in figures:
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        rows.append(
            [
                f.scenario,
                f.figure,
                f.value,
                f.target,
                met,
                "" if f.server_cpu_s is None else f"{f.server_cpu_s:.2f}",
                "" if f.loadgen_cpu_s is None else f"{f.loadgen_cpu_s:.2f}",
                "" if f.window_s is None else f"{f.window_s:.2f}",
                "" if f.other_core0_s is None else f"{f.other_core0_s:.2f}",
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


async def run_all(args: argparse.Namespace, ctx: Context, outcome: dict[str, Any]) -> None:
    """Run the planned scenarios, adding to `outcome` as they finish (kept on Ctrl-C)."""
    figures: list[Figure] = outcome.setdefault("figures", [])
    raw: dict[str, Any] = outcome.setdefault("raw", {})
    for name, factory in plan(args):
        load_before = os.getloadavg()
        if load_before[0] > 1.5:
            print(
                f"--- warning: load average {load_before[0]:.1f} before {name}: other"
                " processes compete for the cores, figures will be noisy",
                file=sys.stderr,
                flush=True,
            )
        print(f"--- {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(factory(ctx), args.scenario_timeout)
        except (TimeoutError, Exception) as error:
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            print(f"--- {name} FAILED: {detail}", file=sys.stderr, flush=True)
            traceback.print_exc(file=sys.stderr)
            figures.append(Figure(name, "error", detail[:160], "", False))
            raw[name] = {"error": detail, "traceback": traceback.format_exc()}
            stop_all()
            continue
        took = time.monotonic() - started
        print(f"--- {name}: {took:.1f} s", file=sys.stderr, flush=True)
        figures.extend(result.figures)
        result.raw["scenario_seconds"] = round(took, 1)
        result.raw["loadavg_before_after"] = [
            round(load_before[0], 2),
            round(os.getloadavg()[0], 2),
        ]
        raw[
            name.split(" ", 1)[0] + " " + result.name
            if name.startswith(("peer ", "nchan "))
            else result.name
        ] = result.raw
        for fig in result.figures:
            print(f"    {fig.figure}: {fig.value}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cores = cores_available()
    pin = not args.no_pin and {SERVER_CORE, LOADGEN_CORE} <= cores
    if pin:
        pin_self(LOADGEN_CORE)
    elif not args.no_pin:
        print(f"warning: cores {sorted(cores)} available; not pinning", file=sys.stderr)
    nofile = raise_nofile()
    loop_name = install_uvloop()
    workdir = Path(tempfile.mkdtemp(prefix="logstream-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    ctx = Context(workdir=workdir, results_dir=RESULTS, pin=pin, profile=args.profile)
    started = time.monotonic()

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    interrupted = False
    outcome: dict[str, Any] = {"figures": [], "raw": {}}
    try:
        asyncio.run(run_all(args, ctx, outcome))
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: the table holds the scenarios that finished", file=sys.stderr)
    finally:
        stop_all()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"workdir kept: {workdir}", file=sys.stderr)
    figures: list[Figure] = outcome["figures"]
    table = render_table(figures)
    print(table)
    print(
        "CPU columns: CPU seconds over the window (wall-clock seconds). others on core 0 s: CPU"
        " time other processes took on the server's core meanwhile (> 0: the machine's other"
        " load disturbed that figure)"
    )
    if args.profile:
        for name, raw in outcome["raw"].items():
            for prof in _profiles(raw):
                print(f"\n== server profile: {name} ({prof.get('file')})")
                print(render(prof))
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "quick": args.quick,
        "interrupted": interrupted,
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "pinned": pin,
            "loadavg_end": os.getloadavg(),
            "server_core": SERVER_CORE,
            "loadgen_core": LOADGEN_CORE,
            "loop": loop_name,
            "nofile": nofile,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "table": [f.to_json() for f in figures],
        "table_text": table,
        "scenarios": outcome["raw"],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nresults: {args.json}  ({report['seconds']} s)", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if any(f.figure == "error" for f in figures) else 0


def _profiles(raw: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(raw, dict):
        if "samples" in raw and "self_pct" in raw:
            return [raw]
        for value in raw.values():
            found.extend(_profiles(value))
    elif isinstance(raw, list):
        for value in raw:
            found.extend(_profiles(value))
    return found


if __name__ == "__main__":
    sys.exit(main())
