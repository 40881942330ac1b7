"""The drivers underneath the store: statements compiled once and run on the DB-API cursor or
the async driver itself, and telling the drivers' errors apart from bugs.

The append and replay paths run a few statements per request; going through SQLAlchemy's
statement execution for each cost more than the database's own work, so those paths call the
drivers directly. The SQL itself stays in queries.py, defined as SQLAlchemy Core.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

# The broker's two statements, run on its own asyncpg connection (live/pgbroker.py).
PG_NOTIFY = "SELECT pg_notify($1, $2)"
PG_PING = "SELECT 1"

# Errors raised by the database drivers themselves: the hot paths (`Prepared.rows`,
# `run_many`, `fetch_raw`) call the drivers directly, so theirs are not wrapped in SQLAlchemy's.
_DRIVER_MODULES = ("asyncpg", "sqlite3", "aiosqlite", "sqlalchemy.dialects")


def is_store_error(error: BaseException) -> bool:
    """True when `error` says the database failed (connection lost, restarting, I/O, a
    constraint), as opposed to a bug: the client gets 503 and retries."""
    if isinstance(error, (DBAPIError, PoolTimeout, OSError)):  # OSError: refused, reset...
        return True
    module = type(error).__module__ or ""
    return module.startswith(_DRIVER_MODULES)


SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_storage_full(error: BaseException) -> bool:
    """True when the database refused a write for lack of space (SQLITE_FULL, PostgreSQL
    disk_full): not an outage that retrying soon mends, so it is answered apart."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == SQLITE_FULL:
            return True
        if getattr(current, "sqlstate", None) == PG_DISK_FULL:
            return True
        # SQLAlchemy keeps the driver's error in .orig; its asyncpg adapter chains asyncpg's.
        current = getattr(current, "orig", None) or current.__cause__
    return False


def describe_error(error: BaseException) -> str:
    """A store error in one short line for the log: its class and first line."""
    first = (str(error).splitlines() or [""])[0][:200]
    return f"{error.__class__.__name__}: {first}"


def is_busy_error(error: BaseException) -> bool:
    """True when SQLite refused because another connection holds the write lock (BUSY/LOCKED)."""
    cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    return isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause)


class Prepared:
    """A Core statement compiled once per dialect and run on the driver (its DB-API cursor,
    or `fetch_raw` for async reads).

    The append and replay paths run a few statements per request; building and compiling them
    each time costs more than SQLite takes to execute them. The SQL stays defined (and
    portable) here as Core; only the per-call compile is skipped. Parameters are named by
    `bindparam`; parameters the compiler adds itself (SQLite's `OFFSET ?`) keep their defaults.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {}

    def compiled(self, dialect: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """The SQL text for `dialect`, its positional parameter names, and their defaults."""
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            found = (str(compiled), names, dict(compiled.params))
            self._compiled[dialect.name] = found
        return found

    def args(self, dialect: Any, params: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """SQL and positional arguments for one execution."""
        sql, names, defaults = self.compiled(dialect)
        return sql, tuple(params[n] if n in params else defaults[n] for n in names)

    def rows(self, conn: Connection, **params: Any) -> list[Any]:
        """Execute once on the DB-API cursor directly; all result rows as tuples.

        The writer's per-operation statements (lock a job, move its count) take this path:
        inside a batch, SQLAlchemy's statement execution costs more than SQLite's work.
        """
        sql, args = self.args(conn.dialect, params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, args)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            cursor.close()

    def run_many(
        self, conn: Connection, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
    ) -> None:
        """Execute once per positional parameter tuple, on the DB-API cursor directly.

        The rows go to the driver's executemany as they are (an iterator is fine): the bulk
        insert of a batch of lines is the ingest path's hot spot, and SQLAlchemy's own
        executemany handling costs more than SQLite's insert.
        """
        sql, names, _defaults = self.compiled(conn.dialect)
        if names != columns:
            raise AssertionError(f"parameters are {names}, rows give {columns}")
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, rows)  # type: ignore[arg-type]  # drivers take iterators
        finally:
            cursor.close()


async def fetch_raw(conn: AsyncConnection, prepared: Prepared, **params: Any) -> list[Any]:
    """Run a prepared read straight on the driver (aiosqlite or asyncpg): rows as tuples.

    The read paths that every request or stream takes (a job, a page of lines) skip
    SQLAlchemy's statement execution and per-row result processing: on aiosqlite that is
    several thread hops per statement where the driver needs one.
    """
    sql, args = prepared.args(conn.dialect, params)
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "sqlite":
        return await driver.execute_fetchall(sql, args)  # type: ignore[no-any-return]
    return await driver.fetch(sql, *args)  # type: ignore[no-any-return]
