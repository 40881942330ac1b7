"""Run the Alembic migrations (shipped as `logstream.migrations`) against a database URL.

The Alembic configuration is built here in code, so `logstream db upgrade` needs no
alembic.ini (the one at the repository's top is for running Alembic by hand).
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from logstream.server.shipped import shipped_dir


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at `database_url` up to `revision` (safe to repeat)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(shipped_dir("logstream.migrations")))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    # env.py runs its own event loop; inside a running one, give it a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, config, revision).result()
