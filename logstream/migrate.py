"""Run the Alembic migrations in `migrations/` against a database URL."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at `database_url` up to `revision` (safe to repeat)."""
    from alembic import command
    from alembic.config import Config

    if not MIGRATIONS.is_dir():
        raise RuntimeError(f"migrations not found at {MIGRATIONS}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    # env.py runs its own event loop; inside a running one, give it a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, config, revision).result()
