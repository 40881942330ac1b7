"""Run the Alembic migrations (shipped as `logstream.migrations`) against a database URL, and
check before serving that the store answers and its schema is the one this code needs.

The Alembic configuration is built here in code, so `logstream db upgrade` needs no
alembic.ini (the one at the repository's top is for running Alembic by hand).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from logstream.server.shipped import shipped_dir

T = TypeVar("T")

# How long the start-up check waits for the store before saying it is unreachable (seconds).
CONNECT_TIMEOUT = 10.0


class StoreProblem(Exception):
    """The store cannot serve this code: unreachable, or its schema is not migrated. The
    message is one line fit for the operator (the URL without its password)."""


def _config(database_url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(shipped_dir("logstream.migrations")))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _outside_loop(work: Callable[[], T]) -> T:
    """Run `work` (which runs an event loop of its own) here, or in a thread when a loop runs."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at `database_url` up to `revision` (safe to repeat)."""
    from alembic import command

    config = _config(database_url)
    # env.py runs its own event loop; inside a running one, it gets a thread.
    _outside_loop(lambda: command.upgrade(config, revision))


def safe_url(database_url: str) -> str:
    """The URL as the operator wrote it, without its password (and without our driver)."""
    from sqlalchemy.engine import make_url

    shown = make_url(database_url).render_as_string(hide_password=True)  # user:***@host
    for driver in ("+asyncpg", "+aiosqlite"):
        shown = shown.replace(driver, "", 1)
    return shown


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_store(database_url: str) -> None:
    """Raise StoreProblem unless the store answers and its schema is at this code's head."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from logstream.server.store.db import create_engine

    head = ScriptDirectory.from_config(_config(database_url)).get_current_head()
    shown = safe_url(database_url)

    def current(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async def ask() -> str | None:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                async with engine.connect() as conn:
                    return await conn.run_sync(current)
        finally:
            await engine.dispose()

    def run(main: Callable[[], Coroutine[Any, Any, str | None]]) -> str | None:
        return asyncio.run(main())

    try:
        revision = _outside_loop(lambda: run(ask))
    except TimeoutError:
        raise StoreProblem(
            f"the store at {shown} is unreachable: no answer within {CONNECT_TIMEOUT:g} s"
        ) from None
    except Exception as error:
        raise StoreProblem(f"the store at {shown} is unreachable: {_first_line(error)}") from None
    upgrade_hint = "run `logstream db upgrade` (with the same LOGSTREAM_DATABASE_URL) first"
    if revision is None:
        raise StoreProblem(f"the database at {shown} has no logstream schema: {upgrade_hint}")
    if revision != head:
        raise StoreProblem(
            f"the database at {shown} is at schema revision {revision}, this logstream needs"
            f" {head}: {upgrade_hint} (a revision it does not know means newer code migrated"
            " it)"
        )
