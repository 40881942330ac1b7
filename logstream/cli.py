"""The `logstream` command. Server commands import the server stack only when they run."""

from __future__ import annotations

import sys

import click

from .config import Settings, SettingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="logstream")
def main() -> None:
    """logstream: push build logs as numbered lines, tail them live over SSE."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (LOGSTREAM_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (LOGSTREAM_PORT, 8000).")
@click.option("--database-url", default=None, help="LOGSTREAM_DATABASE_URL (SQLite file default).")
@click.option("--certfile", default=None, help="TLS certificate: serves HTTP/2 over TLS.")
@click.option("--keyfile", default=None, help="TLS private key.")
@click.option("--heartbeat", type=float, default=None, help="Seconds between idle heartbeats.")
@click.option("--log-level", default=None, help="debug, info, warning, error.")
def serve(
    host: str | None,
    port: int | None,
    database_url: str | None,
    certfile: str | None,
    keyfile: str | None,
    heartbeat: float | None,
    log_level: str | None,
) -> None:
    """Run the server (Hypercorn: HTTP/1.1, h2c, and HTTP/2 over TLS with a cert)."""
    try:
        settings = Settings.from_env(
            host=host,
            port=port,
            database_url=database_url,
            certfile=certfile,
            keyfile=keyfile,
            heartbeat=heartbeat,
            log_level=log_level,
        )
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    from .server import run

    run(settings)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--database-url", default=None, help="LOGSTREAM_DATABASE_URL.")
def db_upgrade(database_url: str | None) -> None:
    """Apply the Alembic migrations (run before starting new code on PostgreSQL)."""
    try:
        settings = Settings.from_env(database_url=database_url)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    from .migrate import upgrade

    upgrade(settings.database_url)
    click.echo(f"database at {settings.database_url} is up to date", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
