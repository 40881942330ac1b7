"""The single writer: every write goes through one queue and commits in batched transactions.

SQLite allows one writer at a time, so concurrent requests are funnelled into one task that
takes many queued operations into one `BEGIN IMMEDIATE` transaction: one commit (one fsync of
the WAL) pays for all of them. Each operation checks its own preconditions first and raises a
client error before it writes anything, so one bad request never spoils the batch. Hints go to
the broker only after the commit, so a reader woken by one always finds the lines.

On SQLite a small batch commits on the event loop itself (WAL with synchronous=NORMAL does not
fsync on commit, and a hop to a thread and back cost more than the transaction); large batches,
checkpoints and waiting for another process's write lock happen in the writer thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.protocol import (
    JOB_CANCELING,
    JOB_RUNNING,
    REASON_FINISHED,
    REASON_GAP,
    REASON_LINE_COUNT,
    REASON_MISMATCH,
)
from logstream.server import metrics
from logstream.server.auth import hash_token, new_token
from logstream.server.errors import (
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    ShuttingDown,
    StorageFull,
    Unavailable,
)
from logstream.server.live.broker import Broker, Hint
from logstream.server.store import driver, limits, queries
from logstream.server.store.db import (
    BUSY_TIMEOUT_MS,
    IMMEDIATE,
    create_sync_engine,
    incremental_vacuum,
    pragma,
)
from logstream.server.store.queries import Job, JobState

log = logging.getLogger(__name__)
T = TypeVar("T")

# How much one transaction may take on: enough to amortise the commit, small enough that a
# batch never holds the write lock for long.
MAX_OPS_PER_BATCH = 512
MAX_LINES_PER_BATCH = 50_000

# SQLite: a batch of at most this many lines commits right on the event loop (tens of us, no
# fsync: WAL with synchronous=NORMAL); a larger one goes to the writer thread, so the loop
# never stops for long. A thread hop costs about as much as a one-line append's transaction.
INLINE_MAX_LINES = 256
# The writer's connection does not checkpoint on commit (a checkpoint fsyncs, and the loop must
# not wait for that): after about this many WAL pages (SQLite's own default is 1,000) the
# writer task runs the checkpoint in the writer thread before its next batch. Writes wait for
# it meanwhile (as they did for SQLite's own checkpoint), so it completes and the WAL restarts.
CHECKPOINT_PAGES = 1000
# A compaction step reads, compresses and moves 1,000 lines: counted as that many lines, so on
# SQLite it runs in the writer thread.
COMPACT_SIZE = 1000
PAGES_PER_COMMIT = 3  # a line page, its index page and the job's row
LINES_PER_PAGE = 30  # lines of ~80 characters with their index entries


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(frozen=True)
class AppendResult:
    """What an append did: lines first..last are stored; `stored` of them by this request."""

    first: int
    last: int
    line_count: int
    stored: int
    skipped: int
    # Lines dropped by the size limit (first, last) and the limit, once the job passed it.
    dropped: tuple[int, int, int] | None = None
    # JOB_RUNNING, or JOB_CANCELING once a cancel was requested: the runner should stop.
    job_status: str = JOB_RUNNING

    def to_json(self) -> dict[str, Any]:
        """The JSON answer to an append (`dropped` only once the job passed its size limit)."""
        body: dict[str, Any] = {
            "first": self.first,
            "last": self.last,
            "line_count": self.line_count,
            "stored": self.stored,
            "skipped": self.skipped,
            "job_status": self.job_status,
        }
        if self.dropped is not None:
            first, last, limit = self.dropped
            body["dropped"] = {"first": first, "last": last, "max_job_bytes": limit}
        return body


class StaleMasks(Unavailable):
    """The job's masks changed (another request or instance added one) after this append was
    masked: the caller masks again with the new ones and retries."""


@dataclasses.dataclass(frozen=True)
class MaskChange:
    """How an append was masked (server/masks.py): with the job's masks at `version`, which
    the append checks under the job's lock, and what it adds to them."""

    version: int
    sealed: Sequence[str] = ()  # values added by ::add-mask:: lines, sealed
    keys: dict[str, str] = dataclasses.field(default_factory=dict)  # a new data key, sealed
    block: bool | None = None  # the private-key block state after the lines, if it changed
    mask: Callable[[str], str] | None = None  # masks a stored line, for the overlap check
    data_key: bytes | None = None  # what the values are sealed with (kept by the cache)

    @property
    def changes(self) -> bool:
        """Whether the append moves the job's masks to a new version."""
        return bool(self.sealed) or self.block is not None


# What the sweep decides for a job, given its state under the lock: None (leave it), or the
# final status to end it with and the line that says why.
Verdict = Callable[[JobState], tuple[str, str] | None]


@dataclasses.dataclass
class _Op(Generic[T]):
    run: Callable[[Connection], tuple[T, Hint | None]]
    future: asyncio.Future[T]
    size: int = 1
    job_id: int = 0
    lifecycle: bool = False
    # Work outside any transaction between batches (SQLite maintenance), in the writer thread.
    outside: Callable[[Connection], T] | None = None


def _never(_conn: Connection) -> tuple[Any, Hint | None]:
    raise AssertionError("an `outside` operation runs outside any batch")


def _merge(previous: Hint | None, hint: Hint) -> Hint:
    """One hint per job per batch: the furthest count, finished if either is."""
    if previous is None:
        return hint
    return Hint(
        hint.job_id,
        max(previous.line_count, hint.line_count),
        previous.finished or hint.finished,
        max(previous.event_id, hint.event_id),
    )


_Done = tuple[_Op[Any], tuple[Any, Hint | None]]


def _write_failed(error: Exception) -> Unavailable:
    """What a write the store failed answers: 503, `storage_full` when it had no room."""
    if driver.is_storage_full(error):
        return StorageFull("the store has no room for the write; retry later")
    return Unavailable("the store could not commit the write; retry")


class Writer:
    """Owns all writes; start() before use, stop() to drain and end."""

    def __init__(self, engine: AsyncEngine, broker: Broker, *, max_job_bytes: int = 0) -> None:
        self._engine = engine
        self._broker = broker
        # LOGSTREAM_MAX_JOB_BYTES (0: no limit): past it a job keeps its head and latest tail.
        self.max_job_bytes = max_job_bytes
        self._queue: asyncio.Queue[_Op[Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite: batches run on a sync connection kept open, small ones on the loop, large
        # ones in one dedicated thread (aiosqlite would hop threads for every statement).
        self._sync_engine: Engine | None = None
        self._sync_conn: Connection | None = None
        self._waits: bool | None = None  # busy timeout BUSY_TIMEOUT_MS (True) or 0 (False)
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._wal_pages = 0  # estimated WAL pages written since the last checkpoint
        if self._sqlite:
            self._sync_engine = create_sync_engine(engine.url.render_as_string(hide_password=False))
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "logstream-writer")

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="logstream-writer")

    async def stop(self) -> None:
        """Finish what is queued, then end the task."""
        if self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close_sync_conn)
            self._thread.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    # --- operations -----------------------------------------------------------------------

    async def create_job(
        self,
        name: str,
        meta: dict[str, Any],
        seal: Callable[[str], MaskChange] | None = None,
    ) -> tuple[Job, str]:
        """Create a running job; returns it with its write token (only the hash is stored).
        `seal(token)` gives the job's masks: its data key and declared values, sealed."""
        token = new_token()
        masks = seal(token) if seal is not None else None

        def run(conn: Connection) -> tuple[Job, Hint | None]:
            now = now_ms()
            job = queries.create_job(conn, name, meta, hash_token(token), now)
            if masks is not None:
                version = masks.version + 1 if masks.changes else masks.version
                queries.add_masks(conn, job.id, masks.keys, masks.sealed, None, version)
            event_id = queries.add_job_event(conn, job.id, "created", now)
            return job, Hint(job.id, 0, event_id=event_id)

        return await self._submit(run, lifecycle=True), token

    async def append(
        self,
        job_id: int,
        texts: Sequence[str],
        first: int | None,
        masks: MaskChange | None = None,
    ) -> AppendResult:
        """Append lines, or skip those already stored when `first` overlaps (a retry).
        With `masks`, the lines were masked with the job's masks at `masks.version`.

        No lines at all is a keepalive: it only records that the runner was heard from.
        """

        def run(conn: Connection) -> tuple[AppendResult, Hint | None]:
            state = queries.lock_job(conn, job_id)
            if state is None:
                raise NotFound(f"job {job_id} does not exist", job_id=job_id)
            if masks is not None and state.mask_version != masks.version:
                raise StaleMasks("the job's masks changed; retry")
            mask = masks.mask if masks is not None else None
            count = state.line_count
            start = count + 1 if first is None else first
            if start < 1:
                raise BadRequest("first must be >= 1", field="first")
            if start > count + 1:
                raise Conflict(
                    f"line {start} would leave a gap: the next line expected is {count + 1}",
                    reason=REASON_GAP,
                    expected_first=count + 1,
                    line_count=count,
                )
            overlap = min(count - start + 1, len(texts))
            if overlap > 0:
                stored = queries.read_texts(conn, job_id, start, start + overlap - 1)
                for i, (have, got) in enumerate(zip(stored, texts, strict=False)):
                    # A mask added since the line was stored masks the retry but not it.
                    if have != got and (mask is None or mask(have) != mask(got)):
                        raise Conflict(
                            f"line {start + i} is already stored with different text",
                            reason=REASON_MISMATCH,
                            line=start + i,
                            expected_first=count + 1,
                            line_count=count,
                        )
            new = texts[overlap:]
            if state.status != "running" and (new or overlap == 0):
                raise Conflict(
                    f"job {job_id} is finished ({state.status}); it takes no more lines",
                    reason=REASON_FINISHED,
                    status=state.status,
                    line_count=count,
                )
            limit = self.max_job_bytes
            size = None
            if state.status == "running":  # (a finished job only answers retries)
                nbytes = limits.line_bytes(new) if limit and new else None
                size = queries.insert_lines(conn, job_id, count + 1, new, now_ms(), nbytes)
            if masks is not None and masks.changes:
                queries.add_masks(
                    conn, job_id, masks.keys, masks.sealed, masks.block, masks.version + 1
                )
            line_count = count + len(new)
            dropped = None
            if size is not None:
                size = self._limit(conn, job_id, size, new, count, line_count)
                if size.dropped_first is not None and size.dropped_last is not None:
                    dropped = (size.dropped_first, size.dropped_last, limit)
            result = AppendResult(
                first=start,
                last=start + len(texts) - 1,
                line_count=line_count,
                stored=len(new),
                skipped=overlap,
                dropped=dropped,
                job_status=JOB_RUNNING if state.cancel_ms is None else JOB_CANCELING,
            )
            return result, (Hint(job_id, line_count) if new else None)

        return await self._submit(run, size=len(texts), job_id=job_id)

    def _limit(
        self,
        conn: Connection,
        job_id: int,
        size: limits.SizeState,
        new: Sequence[str],
        count: int,
        line_count: int,
    ) -> limits.SizeState:
        """After an append: note where the head ends once half the limit is passed, and drop
        lines after it once the whole limit is (store/limits.py)."""
        limit = self.max_job_bytes
        if size.head_last is None and size.stored_bytes > limit // 2:
            before = size.stored_bytes - limits.line_bytes(new)
            head = limits.head_end(new, count + 1, before, limit)
            limits.set_head(conn, job_id, head)
            size = dataclasses.replace(size, head_last=head)
        if size.stored_bytes > limit:
            size = limits.trim(conn, job_id, size, line_count, limit, now_ms())
        return size

    async def finish(
        self, job_id: int, status: str, exit_code: int | None, line_count: int | None
    ) -> Job:
        """Give a job its final status; repeating the same finish is fine."""

        def run(conn: Connection) -> tuple[Job, Hint | None]:
            state = queries.lock_job(conn, job_id)
            if state is None:
                raise NotFound(f"job {job_id} does not exist", job_id=job_id)
            if state.status != "running":
                same_count = line_count is None or line_count == state.line_count
                if state.status == status and state.exit_code == exit_code and same_count:
                    job = queries.get_job_tx(conn, job_id)
                    assert job is not None
                    return job, None
                raise Conflict(
                    f"job {job_id} already finished as {state.status}"
                    f" (exit code {state.exit_code})",
                    reason=REASON_FINISHED,
                    status=state.status,
                    exit_code=state.exit_code,
                    line_count=state.line_count,
                )
            if line_count is not None and line_count != state.line_count:
                raise Conflict(
                    f"the job has {state.line_count} lines stored, not {line_count}:"
                    " send the missing lines first",
                    reason=REASON_LINE_COUNT,
                    line_count=state.line_count,
                    expected_first=state.line_count + 1,
                )
            now = now_ms()
            queries.finish_job(conn, job_id, status, exit_code, now)
            queries.erase_masks(conn, job_id)
            event_id = queries.add_job_event(conn, job_id, "finished", now)
            job = queries.get_job_tx(conn, job_id)
            assert job is not None
            return job, Hint(job_id, state.line_count, finished=True, event_id=event_id)

        return await self._submit(run, job_id=job_id, lifecycle=True)

    async def prune_lines(self, job_id: int, limit: int) -> int:
        """Delete up to `limit` of a finished job's oldest lines (retention), one short
        transaction; once none are left, the job itself goes. Returns the lines deleted."""

        def run(conn: Connection) -> tuple[int, Hint | None]:
            state = queries.lock_job(conn, job_id)
            if state is None:
                return 0, None
            if state.status == "running":
                raise Conflict(f"job {job_id} is running; only finished jobs are pruned")
            gone = queries.delete_lines_chunk(conn, job_id, limit)
            if gone:
                return gone, None
            queries.delete_job(conn, job_id)
            return 0, Hint(job_id, state.line_count, finished=True)  # its tails end

        return await self._submit(run, size=limit, job_id=job_id)

    async def compact(self, job_id: int, codec: int) -> int:
        """Move a finished job's oldest lines into one compressed chunk, one short transaction
        (server/compaction.py); how many moved, 0 when none are left or the job runs."""

        def run(conn: Connection) -> tuple[int, Hint | None]:
            state = queries.lock_job(conn, job_id)
            if state is None or state.status == "running":
                return 0, None
            return queries.compact_step(conn, job_id, codec), None

        # Sized as its lines: on SQLite it runs in the writer thread, not on the loop.
        return await self._submit(run, size=COMPACT_SIZE, job_id=job_id)

    async def reclaim_space(self, pages: int) -> int:
        """SQLite: return up to `pages` free pages to the file system between batches (so the
        file shrinks after a prune); the free pages left. PostgreSQL: 0 (autovacuum's job)."""
        if self._sync_engine is None:
            return 0
        if self._task is None or self._task.done():
            raise Unavailable("the server is shutting down")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def outside(conn: Connection) -> int:
            return incremental_vacuum(conn, pages)

        await self._queue.put(_Op(_never, future, outside=outside))
        return await asyncio.shield(future)

    async def cancel(self, job_id: int) -> Job:
        """Ask a running job to stop: its runner hears it in the answer to its next append or
        keepalive, stops the command and finishes the job as canceled. Repeating is fine."""

        def run(conn: Connection) -> tuple[Job, Hint | None]:
            state = queries.lock_job(conn, job_id)
            if state is None:
                raise NotFound(f"job {job_id} does not exist", job_id=job_id)
            hint = None
            if state.status == "running" and state.cancel_ms is None:
                now = now_ms()
                queries.request_cancel(conn, job_id, now)
                event_id = queries.add_job_event(conn, job_id, "canceling", now)
                hint = Hint(job_id, state.line_count, event_id=event_id)
            elif state.status not in ("running", "canceled"):
                raise Conflict(
                    f"job {job_id} already finished as {state.status}",
                    reason=REASON_FINISHED,
                    status=state.status,
                    exit_code=state.exit_code,
                    line_count=state.line_count,
                )
            job = queries.get_job_tx(conn, job_id)
            assert job is not None
            return job, hint

        return await self._submit(run, job_id=job_id, lifecycle=True)

    async def expire(self, job_id: int, verdict: Verdict) -> str | None:
        """End a running job the server gave up on (lost, or a cancel never confirmed), if
        `verdict` says so under its lock: one last line saying why, then the final status.

        Checked under the lock, so several instances sweeping at once end it once; a job that
        was heard from or finished meanwhile is left alone. Returns the status it ended with.
        """

        def run(conn: Connection) -> tuple[str | None, Hint | None]:
            state = queries.lock_job(conn, job_id)
            if state is None or state.status != "running":
                return None, None
            decided = verdict(state)
            if decided is None:
                return None, None
            status, line = decided
            now = now_ms()
            count = state.line_count + 1
            queries.insert_lines(conn, job_id, count, [line], now)
            queries.finish_job(conn, job_id, status, None, now)
            queries.erase_masks(conn, job_id)  # as a finish does: an ended job needs none
            event_id = queries.add_job_event(conn, job_id, "finished", now)
            return status, Hint(job_id, count, finished=True, event_id=event_id)

        return await self._submit(run, job_id=job_id, lifecycle=True)

    # --- the loop ---------------------------------------------------------------------------

    async def _submit(
        self,
        run: Callable[[Connection], tuple[T, Hint | None]],
        size: int = 1,
        job_id: int = 0,
        lifecycle: bool = False,
    ) -> T:
        if self._task is None or self._task.done():
            raise ShuttingDown("the server is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Op(run, future, size, job_id, lifecycle))
        # Shield: a client that disconnects must not cancel a write already queued; the writer
        # finishes it either way, and the retry with `first` finds it stored.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        stopping = False
        later: _Op[Any] | None = None  # maintenance found while taking a batch: runs next
        while not stopping:
            op, later = (later, None) if later is not None else (await self._queue.get(), None)
            if op is None:
                break
            if op.outside is not None:
                await self._run_outside(op)
                continue
            batch = [op]
            lines = op.size
            while len(batch) < MAX_OPS_PER_BATCH and lines < MAX_LINES_PER_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    stopping = True
                    break
                if nxt.outside is not None:  # it cannot run inside a transaction
                    later = nxt
                    break
                batch.append(nxt)
                lines += nxt.size
            try:
                await self._commit_batch(batch)
            except Exception as error:  # never let the writer die: fail the batch, go on
                metrics.store_error("writer")
                if driver.is_storage_full(error):
                    log.error(
                        "writer batch failed, the store is full: %s", driver.describe_error(error)
                    )
                elif driver.is_store_error(error):  # an outage, not a bug: one line, no traceback
                    log.warning(
                        "writer batch failed, store unavailable: %s", driver.describe_error(error)
                    )
                else:
                    log.exception("writer batch failed")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(_write_failed(error))

    async def _commit_batch(self, batch: list[_Op[Any]]) -> None:
        try:
            done = await self._transaction(batch)
        except Exception as error:
            if not driver.is_store_error(error) or len(batch) == 1:
                raise
            # Something below the client-error level failed; isolate it by going one by one.
            log.warning("batch of %d failed; retrying one operation per transaction", len(batch))
            for item in batch:
                try:
                    await self._commit_batch([item])
                except Exception as one_error:
                    log.exception("write failed")
                    if not item.future.done():
                        item.future.set_exception(_write_failed(one_error))
            return
        hints: dict[int, Hint] = {}
        appends = lines = 0
        for item, (outcome, hint) in done:
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
                if isinstance(outcome, AppendResult):
                    appends += 1
                    lines += outcome.stored
            if hint is not None:
                hints[hint.job_id] = _merge(hints.get(hint.job_id), hint)
        metrics.batch_committed(len(batch), appends, lines)
        for hint in hints.values():
            await self._broker.publish(hint)

    async def _transaction(self, batch: list[_Op[Any]]) -> list[_Done]:
        started = time.perf_counter()
        try:
            return await self._commit(batch)
        finally:
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)

    async def _commit(self, batch: list[_Op[Any]]) -> list[_Done]:
        if self._sync_engine is None:
            async with self._engine.connect() as conn:
                return await conn.run_sync(self._run_batch, batch)
        lines = sum(item.size for item in batch)
        done: list[_Done] | None = None
        if lines <= INLINE_MAX_LINES:
            try:
                done = self._sqlite_batch(batch, wait=False)
            except Exception as error:
                # Another process holds SQLite's write lock: wait for it in the thread, not
                # on the loop. (The failed attempt rolled back; the operations run again.)
                if not driver.is_busy_error(error):
                    raise
        loop = asyncio.get_running_loop()
        if done is None:
            done = await loop.run_in_executor(self._thread, self._sqlite_batch, batch, True)
        self._wal_pages += PAGES_PER_COMMIT + lines // LINES_PER_PAGE
        if self._wal_pages >= CHECKPOINT_PAGES:
            self._wal_pages = 0
            await loop.run_in_executor(self._thread, self._run_checkpoint)
        return done

    def _sqlite_batch(self, batch: list[_Op[Any]], wait: bool) -> list[_Done]:
        """One transaction on the writer's connection, on the loop or in the writer thread.

        The connection is kept between batches (a checkout, a reset and new execution options
        per batch cost more than a one-line transaction itself); after any failure it is
        dropped and the next batch opens a fresh one. `wait`: whether BEGIN waits for another
        process's write lock (in the thread) or fails at once (on the loop).
        """
        conn = self._connection()
        try:
            if wait != self._waits:
                pragma(conn, f"busy_timeout={BUSY_TIMEOUT_MS if wait else 0}")
                self._waits = wait
            return self._run_batch(conn, batch)
        except BaseException:
            self._close_sync_conn()
            raise

    def _connection(self) -> Connection:
        """The writer's SQLite connection, opened on first use (and after a failure)."""
        assert self._sync_engine is not None
        conn = self._sync_conn
        if conn is None:
            conn = self._sync_conn = self._sync_engine.connect().execution_options(**IMMEDIATE)
            pragma(conn, "wal_autocheckpoint=0")
            self._waits = None  # the pool may hand back the one we had: set it again
        return conn

    async def _run_outside(self, op: _Op[Any]) -> None:
        """Run maintenance outside a transaction, in the writer thread, between batches."""
        assert op.outside is not None
        outside = op.outside

        def call() -> Any:
            return outside(self._connection())

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._thread, call)
        except Exception as error:
            log.warning("store maintenance failed: %s", error)
            if not op.future.done():
                op.future.set_exception(Unavailable("store maintenance failed; retry"))
            return
        if not op.future.done():
            op.future.set_result(result)

    def _run_checkpoint(self) -> None:
        """Copy the WAL back into the database file (writer thread, between batches)."""
        conn = self._sync_conn
        if conn is None:
            return
        try:
            pragma(conn, "wal_checkpoint(PASSIVE)")
        except Exception as error:  # the next checkpoint tries again
            log.warning("WAL checkpoint failed: %s", error)

    def _close_sync_conn(self) -> None:
        conn, self._sync_conn = self._sync_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.warning("closing the writer's connection failed", exc_info=True)

    def _run_batch(self, conn: Connection, batch: list[_Op[Any]]) -> list[_Done]:
        """One transaction for the whole batch (SQLite: on the loop or in the writer thread;
        PostgreSQL: under run_sync)."""
        done: list[_Done] = []
        if not self._sqlite:
            # Other processes lock job rows too: taking them in one global order (job id; the
            # sort is stable, so one job's operations keep their order) avoids deadlocks.
            batch = sorted(batch, key=lambda item: item.job_id)
        with conn.begin():
            if not self._sqlite and any(item.lifecycle for item in batch):
                queries.lock_lifecycle(conn)
            for item in batch:
                try:
                    result = item.run(conn)
                except ApiError as error:
                    done.append((item, (error, None)))
                else:
                    done.append((item, result))
        return done
