"""storage: one finished log stored as rows (today's layout, LOGSTREAM_COMPACT=0) and compacted
into chunks (zstd, zlib), in the same run: bytes on disk per line, catch-up over SSE and raw
text, and search, each compacted figure against the rows' figure.

Each variant gets its own server and database. The log is built as in catchup (80-byte lines in
batches of 5,000) and finished; a compacted variant then waits until the background compaction
has moved every line and given the freed pages back. Bytes on disk: the database file plus its
WAL after a TRUNCATE checkpoint, divided by the lines. Reads: the best of `repeat` runs each
(the machine is shared), from line 1 to the `end` event; search: a text on one line and a text
on none, best of `repeat`. The lines (`text`): "words" (default) are build output of ~80 bytes
drawn from a word list (every tenth colored), which compresses about as a real log does;
"padded" are catchup's lines, whose fixed padding compresses 80-fold.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..common import CpuMeter, Figure, fmt_int, line_texts
from ..httpc import HttpConnection, append_request
from ..readers import ReaderSet, SseCounter
from .catchup import TextCounter, _read_one
from .context import HOST, Context, Result, request_json

# Words of build output, for lines that compress like a real log rather than like the padding
# of catchup's lines (which zstd shrinks 80-fold).
WORDS = (
    "compiling linking test passed failed warning error module package build step run cache"
    " hit miss download src lib tests target release debug info ok done fetch install"
).split()


def word_texts(t_ns: int, first: int, count: int) -> list[str]:
    """`count` lines numbered from `first`: `t=<ns> n=<no> ` (what the readers check) and
    ~60 bytes of words, paths and numbers drawn from the line's number; every tenth colored."""
    out = []
    for no in range(first, first + count):
        r = random.Random(no)
        words = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 8)))
        path = f"src/{r.choice(WORDS)}/{r.choice(WORDS)}_{r.randint(0, 999)}.py"
        body = f"{path}:{r.randint(1, 999)} {words}"
        if no % 10 == 0:
            body = f"\x1b[3{no % 7}m{body}\x1b[0m"
        out.append(f"t={t_ns} n={no} {body}")
    return out


TEXTS = {"words": word_texts, "padded": line_texts}

VARIANTS = {
    "rows": {"LOGSTREAM_COMPACT": "0"},
    "zstd": {"LOGSTREAM_COMPACT": "1", "LOGSTREAM_COMPACT_CODEC": "zstd"},
    "zlib": {"LOGSTREAM_COMPACT": "1", "LOGSTREAM_COMPACT_CODEC": "zlib"},
}


def _db_state(db: Path, job_id: int) -> tuple[int, int]:
    """(rows of the job still in `lines`, free pages) of the server's SQLite file."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        left = conn.execute("SELECT count(*) FROM lines WHERE job_id = ?", (job_id,)).fetchone()
        free = conn.execute("PRAGMA freelist_count").fetchone()
        return int(left[0]), int(free[0])
    finally:
        conn.close()


async def _raw_bytes(conn: HttpConnection, job_id: int) -> int:
    """The size of the job's raw text log (what `?format=text` sends), from its JSON pages."""
    total = 0
    after = 0
    while True:
        page = await request_json(
            conn, "GET", f"/api/jobs/{job_id}/lines?after={after}&limit=10000"
        )
        total += sum(len(row["text"].encode()) + 1 for row in page["lines"])
        if page["next_after"] is None:
            return total
        after = page["next_after"]


def _disk_bytes(db: Path) -> int:
    """The database file and its WAL, after the WAL is copied back and truncated."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    wal = Path(str(db) + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def _variant(
    ctx: Context, name: str, lines: int, repeat: int, queries: list[str], text: str
) -> dict[str, Any]:
    server = ctx.server(f"storage-{name}", env=VARIANTS[name])
    server.start()
    out: dict[str, Any] = {"variant": name, "text": text}
    try:
        conn = await HttpConnection(HOST, server.port).connect()
        job = await ctx.create_job(conn, f"storage-{name}")
        started = time.monotonic()
        no = 1
        while no <= lines:
            count = min(5000, lines - no + 1)
            texts = TEXTS[text](time.monotonic_ns(), no, count)
            conn.send(append_request(conn, job, texts, no))
            status, body = await conn.answer(60)
            if status != 200:
                raise RuntimeError(f"append failed: {status} {body[:200]!r}")
            no += count
        out["build_s"] = round(time.monotonic() - started, 3)
        out["raw_bytes"] = await _raw_bytes(conn, job["id"])
        meter = CpuMeter(server.pid).start()
        finished = time.monotonic()
        await ctx.finish(conn, job, lines)
        if name != "rows":  # wait for the background compaction (and its page give-back)
            deadline = finished + 600
            while True:
                left, free = await asyncio.to_thread(_db_state, server.db_path, job["id"])
                if left == 0 and free == 0:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"compaction not done after 600 s ({left} rows left)")
                await asyncio.sleep(0.05)
            out["compact_s"] = round(time.monotonic() - finished, 3)
        meter.stop()
        out["compact_cpu"] = meter.to_json()
        disk = await asyncio.to_thread(_disk_bytes, server.db_path)
        out["disk_bytes"] = disk
        out["bytes_per_line"] = round(disk / lines, 2)

        path = f"/api/jobs/{job['id']}/log"
        best: dict[str, float] = {}
        for _ in range(repeat):
            seconds, sink = await _read_one(
                server.port, path, "text/event-stream", SseCounter(block_latency=False)
            )
            if not (sink.count == lines and sink.ok and sink.end_id == lines):
                raise RuntimeError(f"SSE catch-up of {name} wrong: {sink.errors[:3]}")
            best["sse"] = min(best.get("sse", 1e9), seconds)
            seconds, text = await _read_one(
                server.port, path + "?format=text", "text/plain", TextCounter(ReaderSet(1))
            )
            if text.count != lines or text.bad:
                raise RuntimeError(f"text catch-up of {name} wrong: {text.errors[:3]}")
            best["text"] = min(best.get("text", 1e9), seconds)
            for q in queries:
                t = time.monotonic()
                found = await request_json(
                    conn, "GET", f"/api/jobs/{job['id']}/search?q={q.replace(' ', '+')}"
                )
                key = f"search {q}"
                best[key] = min(best.get(key, 1e9), time.monotonic() - t)
                out[f"hits {q}"] = found["count"]
        out.update({key: round(value, 3) for key, value in best.items()})
        await conn.close()
    finally:
        server.stop()
    return out


async def run(
    ctx: Context,
    lines: int,
    variants: tuple[str, ...] = ("rows", "zstd", "zlib"),
    repeat: int = 2,
    text: str = "words",
) -> Result:
    """Measure each variant in turn on its own server; compare each with rows."""
    label = ctx.label(f"storage {lines:,} {text} lines")
    rare = f"n={int(lines * 0.777) or 1} "  # the text of exactly one line
    queries = [rare, "no such text"]
    measured = {name: await _variant(ctx, name, lines, repeat, queries, text) for name in variants}
    rows = measured.get("rows")
    figures: list[Figure] = []
    for name, got in measured.items():
        tag = f"[{name}]"
        base = rows if rows is not None and name != "rows" else None
        if "compact_s" in got:
            figures.append(
                with_cpu_json(
                    Figure(
                        label,
                        f"{tag} compaction after finish (background, incl. page give-back)",
                        f"{got['compact_s']:.2f} s = {fmt_int(lines / got['compact_s'])} lines/s",
                        "(info)",
                    ),
                    got["compact_cpu"],
                )
            )
        per_line = got["bytes_per_line"]
        raw_line = got["raw_bytes"] / lines
        value = (
            f"{per_line:.2f} B/line ({got['disk_bytes'] / 1e6:.1f} MB;"
            f" the raw log: {raw_line:.1f} B/line)"
        )
        if base is None:
            figures.append(Figure(label, f"{tag} bytes on disk per line", value, "(today)"))
        else:
            quarter = base["bytes_per_line"] / 4
            figures.append(
                Figure(
                    label,
                    f"{tag} bytes on disk per line",
                    f"{value}, {base['bytes_per_line'] / per_line:.1f}x smaller than rows",
                    f"<= {quarter:.2f} (a quarter of rows)",
                    per_line <= quarter,
                )
            )
        for key, what in (
            ("sse", "SSE catch-up from line 1"),
            ("text", "raw text from line 1"),
            *((f"search {q}", f"search {q!r} ({got[f'hits {q}']} hits)") for q in queries),
        ):
            seconds = got[key]
            shown = f"{seconds:.3f} s (best of {repeat})"
            if key in ("sse", "text"):
                shown += f" = {fmt_int(lines / seconds)} lines/s"
            if base is None:
                figures.append(Figure(label, f"{tag} {what}", shown, "(today)"))
            else:
                figures.append(
                    Figure(
                        label,
                        f"{tag} {what}",
                        f"{shown}; rows: {base[key]:.3f} s",
                        "at least as fast as rows",
                        seconds <= base[key],
                    )
                )
    return Result("storage", figures, {"lines": lines, "variants": measured, "pid": os.getpid()})


def with_cpu_json(figure: Figure, cpu: dict[str, Any]) -> Figure:
    """A figure's CPU columns from a CpuMeter's JSON."""
    figure.server_cpu_s = cpu.get("server_cpu_s")
    figure.loadgen_cpu_s = cpu.get("loadgen_cpu_s")
    figure.window_s = cpu.get("wall_s")
    figure.other_core0_s = cpu.get("other_processes_on_server_core_s")
    return figure
