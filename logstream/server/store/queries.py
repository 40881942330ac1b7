"""Every SQL statement logstream runs. Functions take a connection first and return plain values.

The caller owns the transaction. Reads are async and run in short connections opened per page.
Writes (and the reads a write checks under its lock) are plain synchronous functions on a sync
`Connection`: the writer runs a whole batch of them in one call, on SQLite on its own sync
connection (on the event loop for small batches, in its thread for large ones) and through
`run_sync` on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from logstream.protocol import STATUSES_FINAL
from logstream.server.store import chunks
from logstream.server.store.driver import Prepared, fetch_raw
from logstream.server.store.limits import SizeState
from logstream.server.store.models import job_events, job_masks, jobs, lines


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO 8601 UTC timestamp (millisecond precision)."""
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclasses.dataclass(frozen=True)
class Job:
    """A job as the API shows it."""

    id: int
    name: str
    meta: dict[str, Any]
    status: str
    exit_code: int | None
    line_count: int
    created_ms: int
    finished_ms: int | None
    cancel_ms: int | None = None

    @property
    def finished(self) -> bool:
        """True once the job has a final status."""
        return self.status in STATUSES_FINAL

    def to_json(self) -> dict[str, Any]:
        """The job's public JSON form (never the token)."""
        duration = None
        if self.finished_ms is not None:
            duration = (self.finished_ms - self.created_ms) / 1000
        return {
            "id": self.id,
            "name": self.name,
            "meta": self.meta,
            "status": self.status,
            "exit_code": self.exit_code,
            "line_count": self.line_count,
            "created_at": iso(self.created_ms),
            "finished_at": iso(self.finished_ms),
            "duration": duration,
            "cancel_requested_at": iso(self.cancel_ms),
        }


@dataclasses.dataclass(frozen=True)
class JobState:
    """The part of a job that appends and finishes check under the job's lock."""

    line_count: int
    status: str
    exit_code: int | None
    mask_version: int = 0
    last_seen_ms: int | None = None
    cancel_ms: int | None = None


_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.name,
    jobs.c.meta,
    jobs.c.status,
    jobs.c.exit_code,
    jobs.c.line_count,
    jobs.c.created_ms,
    jobs.c.finished_ms,
    jobs.c.cancel_ms,
)


def _job(row: Sequence[Any]) -> Job:
    """A Job from a row in _JOB_COLUMNS order (a SQLAlchemy row or a raw driver row)."""
    id_, name, meta, status, exit_code, line_count, created_ms, finished_ms, cancel_ms = row
    return Job(
        id_,
        name,
        json.loads(meta),
        status,
        exit_code,
        line_count,
        created_ms,
        finished_ms,
        cancel_ms,
    )


def create_job(
    conn: Connection, name: str, meta: dict[str, Any], token_hash: str, now_ms: int
) -> Job:
    """Insert a running job with no lines."""
    result = conn.execute(
        jobs.insert()
        .values(
            name=name,
            meta=json.dumps(meta, separators=(",", ":")),
            status="running",
            line_count=0,
            token_hash=token_hash,
            created_ms=now_ms,
            last_seen_ms=now_ms,
        )
        .returning(*_JOB_COLUMNS)
    )
    return _job(result.one())


async def get_job(conn: AsyncConnection, job_id: int) -> Job | None:
    """One job by id, or None."""
    rows = await fetch_raw(conn, _GET_JOB, job_id=job_id)
    return _job(rows[0]) if rows else None


def get_job_tx(conn: Connection, job_id: int) -> Job | None:
    """One job by id, inside the writer's transaction."""
    row = conn.execute(select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).first()
    return None if row is None else _job(row)


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing shows: every condition given holds (an empty filter: all jobs).

    `statuses`: any of these; `name`: exactly this; `name_prefix`: names starting with it
    (case-sensitive on both stores); `meta`: (key, value) pairs, each a top-level key of the
    job's meta whose value is this string (a number or an object never matches).
    """

    statuses: tuple[str, ...] = ()
    name: str | None = None
    name_prefix: str | None = None
    meta: tuple[tuple[str, str], ...] = ()


# What json.dumps (logstream's only writer of meta) can put in the text that PostgreSQL's
# JSON parser refuses: NUL and lone surrogate escapes, bare NaN and Infinity. Rows stored
# with them before the API cleaned meta (see routes.create_job) must not fail every filtered
# listing: they match no meta filter. Case-insensitive (~*), as the hex digits of an escape are.
_PG_UNPARSABLE_META = (
    r"\\u0000"
    r"|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})"
    r"|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
    r"|[:,\[]\s*-?(nan|infinity)\s*[,}\]]"
)
# A value JSON writes as it is, between quotes (printable ASCII but " and \).
_PLAIN_VALUE = re.compile(r"[ !#-\[\]-~]*")


def _like_escaped(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _meta_is(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """SQL for "the job's meta has `key` with the string value `value`".

    A plain value is looked for in the text first (LIKE '%"key"%"value"%': the value follows
    its key in any JSON that has it), so the JSON functions run only on the rows that may
    match: on 100,000 jobs a rare value took ~3 s on PostgreSQL with every row parsed.
    """
    meta = jobs.c.meta
    found: list[ColumnElement[bool]] = []
    if _PLAIN_VALUE.fullmatch(value):  # (SQLite's LIKE ignores ASCII case: still a superset)
        pattern = f'%"{_like_escaped(key)}"%"{_like_escaped(value)}"%'
        found.append(meta.like(pattern, escape="/"))
    if dialect == "postgresql":
        # CASE, not AND: PostgreSQL may evaluate AND's operands in any order. The regular
        # expression (slow: lookarounds) runs only on text with an escape, NaN or Infinity.
        clean = and_(*(func.strpos(meta, mark) == 0 for mark in ("\\u", "NaN", "Infinity")))
        document = case(
            (clean, meta), (meta.regexp_match(_PG_UNPARSABLE_META, "i"), null()), else_=meta
        )
        value_json = cast(document, JSONB).op("->")(key)
        found.append(value_json == func.to_jsonb(cast(literal(value), Text)))
        return and_(*found)
    path = '$."' + key + '"'  # keys are [A-Za-z0-9_.-]: nothing to escape inside the quotes
    string = case(
        (func.json_valid(meta) == 1, case((func.json_type(meta, path) == "text", meta))),
    )
    found.append(func.json_extract(string, path) == value)
    return and_(*found)


def _where(dialect: str, where: JobFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.statuses:
        status: ColumnElement[str] = jobs.c.status
        if dialect == "sqlite" and where.name is not None:
            # Without statistics (logstream runs no ANALYZE) SQLite walks ix_jobs_status_id
            # when given both, i.e. every failed job for `failed`, rather than the one name's
            # jobs: `status || ''` is no indexed column, so it keeps to ix_jobs_name_id.
            status = jobs.c.status.concat("")
        # The statuses go into the SQL as literals (they are from a fixed list): a prepared
        # statement's generic plan guesses a quarter of all jobs for `status = $1`, walks the
        # primary key, and reads nearly every job to find the few old running ones.
        values: BindParameter[list[str]] = bindparam(
            "statuses", list(where.statuses), expanding=True, literal_execute=True
        )
        conditions.append(status.in_(values))
    if where.name is not None:
        conditions.append(jobs.c.name == where.name)
    if where.name_prefix is not None:
        prefix = where.name_prefix
        conditions.append(func.substr(jobs.c.name, 1, len(prefix)) == prefix)
    conditions += [_meta_is(dialect, key, value) for key, value in where.meta]
    return conditions


async def list_jobs(
    conn: AsyncConnection, limit: int, before_id: int | None, where: JobFilter | None = None
) -> list[Job]:
    """Jobs newest first, keyset-paged by id, those `where` allows (all without it).

    A name or a status filter walks ix_jobs_name_id / ix_jobs_status_id newest first; meta
    is checked row by row (no index: a key is anything a runner chose to send).
    """
    query = select(*_JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(jobs.c.id < before_id)
    if where is not None:
        query = query.where(*_where(conn.dialect.name, where))
    result = await conn.execute(query)
    return [_job(row) for row in result]


async def get_token_hash(conn: AsyncConnection, job_id: int) -> str | None:
    """The stored hash of a job's write token, or None for an unknown job."""
    rows = await fetch_raw(conn, _GET_TOKEN_HASH, job_id=job_id)
    return rows[0][0] if rows else None


_LOCK_JOB = Prepared(
    select(
        jobs.c.line_count,
        jobs.c.status,
        jobs.c.exit_code,
        jobs.c.mask_version,
        jobs.c.last_seen_ms,
        jobs.c.cancel_ms,
    )
    .where(jobs.c.id == bindparam("job_id"))
    .with_for_update()
)
_INSERT_LINE = Prepared(
    lines.insert().values(
        job_id=bindparam("job_id"),
        no=bindparam("no"),
        ts_ms=bindparam("ts_ms"),
        text=bindparam("text"),
    )
)
# The statement every append runs anyway: moving the count also records that the runner was
# heard from (a keepalive, an empty append, runs it alone).
_SET_COUNT = Prepared(
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(line_count=bindparam("count"), last_seen_ms=bindparam("seen"))
)
_SET_COUNT_BYTES = Prepared(
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(
        line_count=bindparam("count"),
        last_seen_ms=bindparam("seen"),
        stored_bytes=jobs.c.stored_bytes + bindparam("nbytes"),
    )
    .returning(jobs.c.stored_bytes, jobs.c.head_last, jobs.c.dropped_first, jobs.c.dropped_last)
)


def lock_job(conn: Connection, job_id: int) -> JobState | None:
    """Read the job's count and status, locking its row until the transaction ends.

    PostgreSQL takes a row lock (FOR UPDATE); SQLite already holds the database write lock.
    """
    rows = _LOCK_JOB.rows(conn, job_id=job_id)
    if not rows:
        return None
    line_count, status, exit_code, mask_version, last_seen_ms, cancel_ms = rows[0]
    return JobState(
        line_count=line_count,
        status=status,
        exit_code=exit_code,
        mask_version=mask_version,
        last_seen_ms=last_seen_ms,
        cancel_ms=cancel_ms,
    )


async def job_states(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, JobState]:
    """Count and status of many jobs at once (the periodic re-check of live tails)."""
    if not job_ids:
        return {}
    query = select(jobs.c.id, jobs.c.line_count, jobs.c.status, jobs.c.exit_code).where(
        jobs.c.id.in_(list(job_ids))
    )
    return {
        row.id: JobState(line_count=row.line_count, status=row.status, exit_code=row.exit_code)
        for row in await conn.execute(query)
    }


def read_texts(conn: Connection, job_id: int, first: int, last: int) -> list[str]:
    """The texts of lines first..last of a job, in order (from its chunks too)."""
    return chunks.read_texts(conn, job_id, first, last)


_GET_JOB = Prepared(select(*_JOB_COLUMNS).where(jobs.c.id == bindparam("job_id")))
_GET_TOKEN_HASH = Prepared(select(jobs.c.token_hash).where(jobs.c.id == bindparam("job_id")))


async def read_lines(
    conn: AsyncConnection, job_id: int, after: int, limit: int
) -> Sequence[Sequence[Any]]:
    """Up to `limit` lines numbered above `after`, as (no, ts_ms, text) rows, from the job's
    lines and its compacted chunks (store/chunks.py); `limit` of them unless the log ends.

    The hot path of replay (a million lines must stream in seconds): one prepared statement
    straight to the driver, skipping SQLAlchemy's per-row result processing; a chunk is
    decompressed once per page (and kept a while in a small cache).
    """
    return await chunks.read_rows(conn, job_id, after, limit)


def can_prefilter(needle: str, case: bool) -> bool:
    """Whether `read_candidates` finds every line that can match `needle`: case-sensitively
    always; ignoring case only for ASCII text (SQLite folds only ASCII letters)."""
    return case or needle.isascii()


async def read_candidates(
    conn: AsyncConnection,
    job_id: int,
    after: int,
    limit: int,
    needle: str,
    case: bool,
    may_match: Callable[[chunks.Decoded], bool] | None = None,
) -> Sequence[Sequence[Any]]:
    """Up to `limit` lines above `after` that may contain `needle`, as (no, ts_ms, text) rows.

    The search's first pass, in the database: every line whose stored text contains the
    needle (ASCII case folded by SQLite's LIKE, or exactly), and every line with an escape
    sequence (an escape can split a visible match) or one of chunks.LOWER_TO_ASCII. The caller
    checks each candidate's visible text; this only saves reading the lines that cannot match.
    A compacted log's chunks are read in Python instead: every line of each chunk that
    `may_match` accepts (default `chunks.chunk_may_match`) is a candidate.
    """
    return await chunks.read_candidate_rows(conn, job_id, after, limit, needle, case, may_match)


def insert_lines(
    conn: Connection,
    job_id: int,
    first: int,
    texts: Sequence[str],
    ts_ms: int,
    nbytes: int | None = None,
) -> SizeState | None:
    """Store texts as lines first, first+1, ... and move the job's count past them; the job
    was heard from at `ts_ms` (with no texts, that is all it records: a keepalive). With
    `nbytes` (their raw bytes: the size limit is on) the job's stored bytes grow by it, and
    the job's size state after that is returned."""
    n = len(texts)
    if n:
        _INSERT_LINE.run_many(
            conn,
            ("job_id", "no", "ts_ms", "text"),
            zip(repeat(job_id, n), range(first, first + n), repeat(ts_ms, n), texts, strict=True),
        )
    if nbytes is None or not n:
        _SET_COUNT.rows(conn, job_id=job_id, count=first + n - 1, seen=ts_ms)
        return None
    row = _SET_COUNT_BYTES.rows(
        conn, job_id=job_id, count=first + n - 1, seen=ts_ms, nbytes=nbytes
    )[0]
    return SizeState(*row)


def request_cancel(conn: Connection, job_id: int, now_ms: int) -> None:
    """Record that the job was asked to cancel (it runs until its runner finishes it)."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_ms=now_ms))


async def stale_jobs(
    conn: AsyncConnection, lost_before: int | None, cancel_before: int, limit: int
) -> list[int]:
    """Running jobs last heard from before `lost_before` (None: none of these), or asked to
    cancel before `cancel_before`: what the sweep ends (it re-checks each under its lock)."""
    stale = [jobs.c.cancel_ms < cancel_before]
    if lost_before is not None:
        stale.append(jobs.c.last_seen_ms < lost_before)
    query = (
        select(jobs.c.id)
        .where(jobs.c.status == "running", or_(*stale))
        .order_by(jobs.c.id)
        .limit(limit)
    )
    return [row[0] for row in await conn.execute(query)]


async def ping(conn: AsyncConnection) -> None:
    """The cheapest question the store must answer (readiness)."""
    await conn.execute(select(func.count()).select_from(jobs).where(jobs.c.id == 0))


def finish_job(
    conn: Connection, job_id: int, status: str, exit_code: int | None, now_ms: int
) -> None:
    """Give a job its final status."""
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(status=status, exit_code=exit_code, finished_ms=now_ms)
    )


# --- masks (server/masks.py) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StoredMasks:
    """A job's mask state: its version, whether a private-key block is open, its data key
    sealed per token kind ({kind: sealed}), and its values sealed with that key, in order."""

    version: int
    block: bool
    keys: dict[str, str]
    values: list[str]


async def read_masks(conn: AsyncConnection, job_id: int) -> StoredMasks | None:
    """A job's mask state (None for an unknown job).

    The version is read before the values: values and version change in one transaction, so
    values read afterwards are at least those of that version (an append checks the version
    under the job's lock, so a newer one only means a retry, never a missed value).
    """
    row = (
        await conn.execute(
            select(jobs.c.mask_version, jobs.c.mask_block).where(jobs.c.id == job_id)
        )
    ).first()
    if row is None:
        return None
    keys: dict[str, str] = {}
    values: list[str] = []
    query = (
        select(job_masks.c.seq, job_masks.c.key, job_masks.c.sealed)
        .where(job_masks.c.job_id == job_id)
        .order_by(job_masks.c.seq)
    )
    for seq, key, sealed in await conn.execute(query):
        if seq < 0:
            keys[key] = sealed
        else:
            values.append(sealed)
    return StoredMasks(int(row[0]), bool(row[1]), keys, values)


def add_masks(
    conn: Connection,
    job_id: int,
    keys: dict[str, str],
    values: Sequence[str],
    block: bool | None,
    version: int,
) -> None:
    """Store a job's sealed data key (per token kind), more sealed values, and the block
    state (when given), as mask version `version`."""
    rows = [{"job_id": job_id, "seq": -1, "key": kind, "sealed": v} for kind, v in keys.items()]
    if values:
        last = conn.execute(
            select(func.max(job_masks.c.seq)).where(job_masks.c.job_id == job_id)
        ).scalar_one()
        first = 0 if last is None or last < 0 else int(last) + 1
        rows += [
            {"job_id": job_id, "seq": first + i, "key": "value", "sealed": v}
            for i, v in enumerate(values)
        ]
    if rows:
        conn.execute(job_masks.insert(), rows)
    update_values: dict[str, Any] = {"mask_version": version}
    if block is not None:
        update_values["mask_block"] = int(block)
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(**update_values))


def erase_masks(conn: Connection, job_id: int) -> None:
    """Forget a job's mask values (it has finished: nothing more will be masked)."""
    conn.execute(delete(job_masks).where(job_masks.c.job_id == job_id))
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(mask_version=jobs.c.mask_version + 1, mask_block=0)
    )


LIFECYCLE_LOCK = 0x6C6F6773  # "logs"


def lock_lifecycle(conn: Connection) -> None:
    """PostgreSQL: serialise lifecycle events until commit, so their ids commit in order.

    Sequence values are handed out at insert but become visible at commit; two processes
    could commit 6 before 5, and a feed that had moved past 6 would never see 5. Taken
    before any job row lock, so it cannot deadlock with transactions that only append.
    """
    conn.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": LIFECYCLE_LOCK})


def add_job_event(conn: Connection, job_id: int, kind: str, now_ms: int) -> int:
    """Record a lifecycle event (created, finished); returns its id, the feed's event id."""
    result = conn.execute(
        job_events.insert()
        .values(job_id=job_id, kind=kind, created_ms=now_ms)
        .returning(job_events.c.id)
    )
    return int(result.scalar_one())


async def last_job_event_id(conn: AsyncConnection) -> int:
    """The id of the newest lifecycle event (0 when there is none)."""
    result = await conn.execute(select(func.max(job_events.c.id)))
    return int(result.scalar_one() or 0)


async def read_job_events(
    conn: AsyncConnection, after: int, limit: int
) -> list[tuple[int, str, Job]]:
    """Lifecycle events after `after`, oldest first, each with its job as it is now."""
    query = (
        select(job_events.c.id.label("event_id"), job_events.c.kind, *_JOB_COLUMNS)
        .join(jobs, jobs.c.id == job_events.c.job_id)
        .where(job_events.c.id > after)
        .order_by(job_events.c.id)
        .limit(limit)
    )
    return [(row.event_id, row.kind, _job(row[2:])) for row in await conn.execute(query)]


# --- compaction (store/chunks.py) -------------------------------------------------------------


def compact_step(conn: Connection, job_id: int, codec: int) -> int:
    """Move the job's oldest lines into one compressed chunk; how many moved (0: none left)."""
    return chunks.compact_step(conn, job_id, codec)


async def uncompacted_jobs(conn: AsyncConnection, after_id: int, limit: int) -> list[int]:
    """Ids above `after_id` of finished jobs that still have rows in `lines`, in id order
    (compaction's scan: a finish another process saw, or a compaction a crash cut short)."""
    query = (
        select(jobs.c.id)
        .where(
            jobs.c.id > after_id,
            jobs.c.status != "running",
            exists().where(lines.c.job_id == jobs.c.id),
        )
        .order_by(jobs.c.id)
        .limit(limit)
    )
    return [int(row[0]) for row in await conn.execute(query)]


# --- retention -----------------------------------------------------------------------------------


async def prunable_jobs(
    conn: AsyncConnection, finished_before_ms: int, keep_per_name: int, limit: int
) -> list[tuple[int, int]]:
    """(id, line_count) of finished jobs that ended before the cutoff, oldest first, except
    the newest `keep_per_name` jobs of each name."""
    rank = func.row_number().over(partition_by=jobs.c.name, order_by=jobs.c.id.desc()).label("rank")
    ranked = (
        select(jobs.c.id, jobs.c.line_count, jobs.c.finished_ms, jobs.c.status, rank)
    ).subquery()
    query = (
        select(ranked.c.id, ranked.c.line_count)
        .where(
            ranked.c.status != "running",
            ranked.c.finished_ms < finished_before_ms,
            ranked.c.rank > keep_per_name,
        )
        .order_by(ranked.c.id)
        .limit(limit)
    )
    result = await conn.execute(query)
    return [(int(row[0]), int(row[1])) for row in result]


def delete_lines_chunk(conn: Connection, job_id: int, limit: int) -> int:
    """Delete up to `limit` of a job's oldest stored lines (its oldest chunks first: they hold
    the lower numbers); how many went."""
    gone = chunks.delete_oldest_chunks(conn, job_id, limit)
    if gone is not None:
        return gone
    last = conn.execute(
        select(lines.c.no)
        .where(lines.c.job_id == job_id)
        .order_by(lines.c.no)
        .offset(limit - 1)
        .limit(1)
    ).scalar()
    condition = lines.c.job_id == job_id
    if last is not None:
        condition = condition & (lines.c.no <= last)
    return int(conn.execute(lines.delete().where(condition)).rowcount or 0)


def delete_job(conn: Connection, job_id: int) -> None:
    """Delete a job's row and its lifecycle events (its lines first, by delete_lines_chunk)."""
    conn.execute(job_events.delete().where(job_events.c.job_id == job_id))
    conn.execute(lines.delete().where(lines.c.job_id == job_id))
    chunks.delete_all(conn, job_id)
    conn.execute(jobs.delete().where(jobs.c.id == job_id))
