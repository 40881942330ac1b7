"""The async engine: connection pool, SQLite PRAGMAs and transaction control."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import create_engine as create_plain_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Transactions that write must take SQLite's write lock up front (BEGIN IMMEDIATE): a deferred
# transaction that reads and then writes can fail with SQLITE_BUSY instead of waiting.
IMMEDIATE = {"sqlite_immediate": True}
# How long a SQLite connection waits for another's write lock before failing with "locked".
BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """Create the engine for `url`; SQLite gets WAL, a busy timeout and explicit BEGINs."""
    # hide_parameters: a failed statement's error (which may be logged) never shows its bound
    # values: log text, token and cookie hashes.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _configure_sqlite(engine.sync_engine)
    return engine


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A short write transaction outside the writer (tokens, sessions): committed on exit, on
    SQLite with the write lock taken up front (BEGIN IMMEDIATE, waiting out the writer's)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**IMMEDIATE)
        async with conn.begin():
            yield conn


def create_sync_engine(url: str) -> Engine:
    """A synchronous SQLite engine on the same file (the writer uses it)."""
    sync_url = url.replace("sqlite+aiosqlite://", "sqlite://", 1)
    connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    engine = create_plain_engine(
        sync_url, pool_size=1, max_overflow=0, connect_args=connect_args, hide_parameters=True
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # A new database gives freed pages back (a prune shrinks the file); an existing one
        # changes only by migration 0003's VACUUM.
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Straight on the DB-API cursor: exec_driver_sql's statement machinery cost more than
        # the rest of a one-line append's transaction (about 18 us of 29 for BEGIN + COMMIT).
        options = connection.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # e.g. a migration's VACUUM, which cannot run inside a transaction
        immediate = options.get("sqlite_immediate")
        cursor = connection.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        finally:
            cursor.close()


def incremental_vacuum(conn: Connection, pages: int) -> int:
    """SQLite: give up to `pages` free pages back to the file system (auto_vacuum=INCREMENTAL,
    set by migration 0003); returns how many free pages are left. Outside any transaction:
    the pragma frees one page per step, so it runs as a script that steps it to the end."""
    driver: Any = conn.connection.driver_connection
    driver.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
    return int(driver.execute("PRAGMA freelist_count").fetchone()[0])


def pragma(conn: Connection, statement: str) -> None:
    """Run a PRAGMA on the driver's connection (through SQLAlchemy it would begin a
    transaction)."""
    driver: Any = conn.connection.driver_connection
    driver.execute(f"PRAGMA {statement}").fetchall()
