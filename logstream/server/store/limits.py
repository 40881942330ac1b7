"""The per-job size limit (LOGSTREAM_MAX_JOB_BYTES): keep a job's head and its latest tail.

Bytes are counted as the raw log's: each line's UTF-8 and its LF. A job whose stored bytes pass
the limit keeps running; its first lines (the head: up to half the limit) stay, and lines right
after the head are dropped as the tail moves, so the stored bytes fall back to the limit less
a step (TRIM_STEP). Line numbers never change: the dropped lines' rows are simply absent, and
one marker line is stored at the LAST dropped number, saying which range was dropped and why.
So every read path needs nothing special: a reader whose cursor is anywhere before the marker
(also inside the dropped range, a reader that resumes there) gets the marker next, with the id
of the last dropped line, and goes on after it; one that resumes after it continues exactly.
As the tail moves on, the range grows: the old marker row goes with the next lines dropped and
a new one is stored at the new last number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from sqlalchemy import Integer, LargeBinary, bindparam, cast, func, select, update
from sqlalchemy.engine import Connection

from logstream.server.store.driver import Prepared
from logstream.server.store.models import jobs, lines

# The most bytes one trim drops beyond what it must (so it runs about once per this much
# appended, not on every append), and at most limit/16 of them.
TRIM_STEP = 1 << 20
SCAN_PAGE = 2000


@dataclasses.dataclass(frozen=True)
class SizeState:
    """A job's stored bytes, the last line of its head, and its dropped range (if any)."""

    stored_bytes: int
    head_last: int | None
    dropped_first: int | None
    dropped_last: int | None


def line_bytes(texts: Sequence[str]) -> int:
    """The raw log bytes of `texts` (UTF-8, a LF after each)."""
    return len("\n".join(texts).encode("utf-8")) + 1 if texts else 0


def marker(first: int, last: int, limit: int) -> str:
    """The text of the line standing for the dropped lines first..last."""
    which = f"line {first}" if first == last else f"lines {first}-{last}"
    return (
        f"[logstream: {which} dropped: the job passed LOGSTREAM_MAX_JOB_BYTES={limit} bytes;"
        " its first and its latest lines are kept]"
    )


def head_end(texts: Sequence[str], first: int, stored_before: int, limit: int) -> int:
    """The last line of the head, for the batch `texts` (numbered from `first`) that takes the
    stored bytes past half the limit: the last line whose running total stays within it."""
    half = limit // 2
    last = first - 1
    sizes = (len(text.encode("utf-8")) + 1 for text in texts)
    for no, total in enumerate(accumulate(sizes, initial=stored_before), first - 1):
        if total > half:
            break
        last = no
    return max(last, first - 1)


def _sizes_query(size: Any) -> Prepared:
    return Prepared(
        select(lines.c.no, size)
        .where(
            lines.c.job_id == bindparam("job_id"),
            lines.c.no >= bindparam("start"),
            lines.c.no < bindparam("stop"),
        )
        .order_by(lines.c.no)
        .limit(bindparam("limit", type_=Integer))
    )


# Bytes of a stored text: SQLite's length(text) counts characters, the length of its BLOB cast
# counts bytes; PostgreSQL has octet_length (a cast to bytea would parse backslash escapes).
_SIZES_SQLITE = _sizes_query(func.length(cast(lines.c.text, LargeBinary)))
_SIZES_PG = _sizes_query(func.octet_length(lines.c.text))
_DROP = Prepared(
    lines.delete().where(
        lines.c.job_id == bindparam("job_id"),
        lines.c.no >= bindparam("first"),
        lines.c.no <= bindparam("last"),
    )
)
_MARK = Prepared(
    lines.insert().values(
        job_id=bindparam("job_id"),
        no=bindparam("no"),
        ts_ms=bindparam("ts_ms"),
        text=bindparam("text"),
    )
)
_SET_DROPPED = Prepared(
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(
        stored_bytes=bindparam("stored"),
        dropped_first=bindparam("first"),
        dropped_last=bindparam("last"),
    )
)
_SET_HEAD = Prepared(
    update(jobs).where(jobs.c.id == bindparam("job_id")).values(head_last=bindparam("head"))
)


def set_head(conn: Connection, job_id: int, head_last: int) -> None:
    """Record where the job's head ends."""
    _SET_HEAD.rows(conn, job_id=job_id, head=head_last)


def trim(
    conn: Connection,
    job_id: int,
    size: SizeState,
    line_count: int,
    limit: int,
    now_ms: int,
) -> SizeState:
    """Drop the lines right after the head (and after what was dropped before) until the
    stored bytes are at most the limit less a step, keeping at least the newest line; store
    the marker at the last dropped number. Returns the new size state (unchanged when there
    was nothing to drop). Inside the append's transaction, under the job's lock."""
    head = size.head_last or 0
    start = size.dropped_first if size.dropped_first is not None else head + 1
    step = max(1, min(limit // 16, TRIM_STEP))
    need = size.stored_bytes - (limit - step) + 200  # room for the marker itself
    sizes = _SIZES_SQLITE if conn.dialect.name == "sqlite" else _SIZES_PG
    freed = 0
    last = None
    cursor = start
    while freed < need:
        rows = sizes.rows(conn, job_id=job_id, start=cursor, stop=line_count, limit=SCAN_PAGE)
        if not rows:
            break
        for no, nbytes in rows:
            freed += int(nbytes) + 1
            last = int(no)
            if freed >= need:
                break
        cursor = rows[-1][0] + 1
    if last is None:
        return size
    _DROP.rows(conn, job_id=job_id, first=start, last=last)
    text = marker(start, last, limit)
    _MARK.rows(conn, job_id=job_id, no=last, ts_ms=now_ms, text=text)
    stored = size.stored_bytes - freed + line_bytes([text])
    _SET_DROPPED.rows(conn, job_id=job_id, stored=stored, first=start, last=last)
    return SizeState(stored, size.head_last, start, last)
