"""The `logstream` command. Server commands import the server stack only when they run."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from logstream.config import Settings, SettingsError, parse_duration
from logstream.protocol import DEFAULT_SERVER, STATUSES_FINISH

F = TypeVar("F", bound=Callable[..., Any])

# What `logstream serve` and `db upgrade` import beyond the runner's two dependencies.
SERVER_MODULES = (
    "quart",
    "hypercorn",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "prometheus_client",
    "re2",
)


def _need_server_extra() -> None:
    """One line, not a traceback, when the server stack is not installed (runner-only)."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            "the server needs logstream[server]: pip install 'logstream[server]'"
            f" (missing: {', '.join(missing)})"
        )


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
@click.option("--workers", type=int, default=None, help="Server processes (LOGSTREAM_WORKERS, 1).")
def serve(
    host: str | None,
    port: int | None,
    database_url: str | None,
    certfile: str | None,
    keyfile: str | None,
    heartbeat: float | None,
    log_level: str | None,
    workers: int | None,
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
            workers=workers,
        )
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    _need_server_extra()
    made = _metrics_dir(settings.workers)  # before prometheus_client is imported
    from logstream.server.run import StartupError, run

    try:
        run(settings)
    except (SettingsError, StartupError) as error:  # uvloop missing, port taken, store away...
        raise click.ClickException(str(error)) from None
    finally:
        if made is not None:
            import shutil

            shutil.rmtree(made, ignore_errors=True)


def _metrics_dir(workers: int) -> str | None:
    """Several workers: give prometheus-client a directory for its multiprocess mode (unless
    PROMETHEUS_MULTIPROC_DIR names one); returns the one made here, removed at exit."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    import tempfile

    made = tempfile.mkdtemp(prefix="logstream-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


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
    _need_server_extra()
    from logstream.server.store.migrate import safe_url, upgrade

    shown = safe_url(settings.database_url)
    try:
        upgrade(settings.database_url)
    except Exception as error:  # unreachable, refused...: one line, not a traceback
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise click.ClickException(f"cannot migrate the store at {shown}: {first}") from None
    click.echo(f"database at {shown} is up to date", err=True)


@main.command()
@click.option("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 90m.")
@click.option("--keep", type=click.IntRange(min=0), default=0, help="Keep the newest N per name.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--database-url", default=None, help="LOGSTREAM_DATABASE_URL.")
def prune(older_than: str, keep: int, dry_run: bool, database_url: str | None) -> None:
    """Delete finished jobs that ended longer ago than DURATION (server side, on the store).

    Safe while the server runs: it deletes in short transactions, as the retention sweep does.
    """
    try:
        settings = Settings.from_env(database_url=database_url)
        seconds = parse_duration(older_than)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    _need_server_extra()
    import asyncio

    from logstream.server.retention import prune_store

    report = asyncio.run(prune_store(settings, seconds, keep_per_name=keep, dry_run=dry_run))
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report.jobs} jobs ({report.lines} lines)")


@main.group()
def token() -> None:
    """API tokens (server side: works on LOGSTREAM_DATABASE_URL directly)."""


_database_url = click.option("--database-url", default=None, help="LOGSTREAM_DATABASE_URL.")


def _token_engine(database_url: str | None) -> Any:
    """An engine on the server's database, migrated first if it is the SQLite default."""
    try:
        settings = Settings.from_env(database_url=database_url)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    _need_server_extra()
    if settings.should_auto_migrate:
        from logstream.server.store.migrate import upgrade

        upgrade(settings.database_url)
    from logstream.server.store.db import create_engine

    return create_engine(settings.database_url, pool_size=1)


def _run_on_store(database_url: str | None, work: Callable[[Any], Any]) -> Any:
    """Run `work(engine)` (a coroutine function) on the server's database, then close it."""
    import asyncio

    async def main() -> Any:
        engine = _token_engine(database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:
        from logstream.server.store.driver import is_store_error

        if not is_store_error(error):
            raise
        raise click.ClickException(
            f"cannot use the database ({type(error).__name__}); run `logstream db upgrade`"
            " first on PostgreSQL"
        ) from None


def _check_duration(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except SettingsError as error:
        raise click.BadParameter(str(error)) from None


@token.command("create")
@click.option(
    "--role", type=click.Choice(("read", "runner", "admin")), required=True, help="What it may do."
)
@click.option("--name", required=True, help="A unique name (who or what holds it).")
@click.option(
    "--expires",
    default=None,
    callback=_check_duration,
    metavar="DURATION",
    help="Lifetime, e.g. 90d, 12h, 30m (default: until revoked).",
)
@_database_url
def token_create(role: str, name: str, expires: float | None, database_url: str | None) -> None:
    """Make an API token; it is printed alone on stdout, once: T=$(logstream token create ...)."""

    async def work(engine: Any) -> tuple[str, Any]:
        from logstream.server.auth import create_token

        return await create_token(engine, name, role, expires)

    secret, row = _run_on_store(database_url, work)
    click.echo(secret)
    until = "" if row.expires_ms is None else f", expires {_iso(row.expires_ms)}"
    _warn(f"created {row.role} token {row.name!r}{until}; it is shown only this once")


def _iso(ms: int | None) -> str:
    from logstream.server.store.queries import iso

    return iso(ms) or "-"


@token.command("list")
@_database_url
def token_list(database_url: str | None) -> None:
    """List the tokens: name, role, state (active, expired, revoked), created, expires."""

    async def work(engine: Any) -> list[Any]:
        from logstream.server.auth import list_tokens

        return await list_tokens(engine)

    from logstream.server.auth import now_ms

    rows = _run_on_store(database_url, work)
    now = now_ms()
    table = [("NAME", "ROLE", "STATE", "CREATED", "EXPIRES")]
    table += [
        (row.name, row.role, row.state(now), _iso(row.created_ms), _iso(row.expires_ms))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    for line in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


@token.command("revoke")
@click.argument("name")
@_database_url
def token_revoke(name: str, database_url: str | None) -> None:
    """Revoke a token: requests with it fail and its open streams end within seconds."""

    async def work(engine: Any) -> Any:
        from logstream.server.auth import revoke_token

        return await revoke_token(engine, name)

    if _run_on_store(database_url, work) is None:
        raise click.ClickException(f"no live token is named {name!r}")
    _warn(f"revoked token {name!r}")


# --- runner and reader commands: these import httpx, never the server stack ------------------


def _warn(message: str) -> None:
    click.echo(f"logstream: {message}", err=True)


@contextlib.contextmanager
def _client_errors(code: int = 1) -> Iterator[None]:
    """Turn a failed request into one line on stderr and exit `code`; Ctrl-C exits 130."""
    from logstream.runner.client import ClientError

    try:
        yield
    except ClientError as error:
        _warn(str(error))
        raise click.exceptions.Exit(code) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except BrokenPipeError:
        # Our reader went away (`logstream tail 3 | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise click.exceptions.Exit(141) from None


_server = click.option(
    "--server",
    envvar="LOGSTREAM_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="The logstream server (LOGSTREAM_SERVER).",
)
_read_token = click.option(
    "--token",
    envvar="LOGSTREAM_TOKEN",
    default=None,
    help="A token that may read (LOGSTREAM_TOKEN), for a server with LOGSTREAM_AUTH=tokens;"
    " prefer the variable: flags show in `ps`.",
)
_runner_token = click.option(
    "--runner-token",
    envvar="LOGSTREAM_RUNNER_TOKEN",
    default=None,
    help="Token that may create jobs (LOGSTREAM_RUNNER_TOKEN; prefer the variable: flags show"
    " in `ps`).",
)


_mask_env = click.option(
    "--mask-env",
    "mask_env",
    multiple=True,
    metavar="NAME",
    help="Mask the value of this environment variable in the output (repeatable; a value"
    " shorter than 6 characters is refused).",
)
_mask_env_patterns = click.option(
    "--mask-env-pattern",
    "mask_env_patterns",
    multiple=True,
    metavar="GLOB",
    help="Mask the values of variables whose names match (repeatable; replaces the default"
    " *_TOKEN, *_SECRET, *_PASSWORD, *_KEY, *_PRIVATE_KEY, *_ACCESS_KEY, *_SECRET_KEY,"
    " *_CONNECTION_STRING; LOGSTREAM_MASK_ENV_PATTERNS, comma-separated, 'none' for none).",
)


def _mask_options(names: tuple[str, ...], env_patterns: tuple[str, ...]) -> Any:
    """What `run` and `push` mask (see runner/run.py MaskOptions)."""
    from logstream import masking
    from logstream.runner.run import MaskOptions

    patterns: tuple[str, ...] = tuple(env_patterns)
    if not patterns:
        raw = os.environ.get("LOGSTREAM_MASK_ENV_PATTERNS")
        if raw is None or not raw.strip():
            patterns = masking.DEFAULT_ENV_PATTERNS
        elif raw.strip().lower() != "none":
            patterns = tuple(p.strip() for p in raw.split(",") if p.strip())
    try:
        formats = masking.pattern_names(os.environ.get("LOGSTREAM_MASK_PATTERNS", "all"))
    except masking.MaskError as error:
        raise click.UsageError(f"LOGSTREAM_MASK_PATTERNS: {error}") from None
    return MaskOptions(names=names, env_patterns=patterns, patterns=formats)


_keepalive = click.option(
    "--keepalive",
    type=click.FloatRange(min=0.1),
    envvar="LOGSTREAM_KEEPALIVE",
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="While the output is silent, tell the server this often that the job is alive (and"
    " learn of a cancel) (LOGSTREAM_KEEPALIVE).",
)


# How long `run` and `push` wait for an absent server once the output has ended: a log server
# that is away must not hold a CI step for long (what is left is kept for `resend`).
GIVE_UP_AFTER_OUTPUT = 30.0


def _give_up(what: str, default: float = 300.0) -> Callable[[F], F]:
    return click.option(
        "--give-up",
        type=click.FloatRange(min=0),
        default=default,
        show_default=True,
        metavar="SECONDS",
        help=f"How long to keep retrying an unreachable server {what}.",
    )


@main.command(
    short_help="Run a command as a job, streaming its output.",
    context_settings={"allow_interspersed_args": False},
)
@_server
@click.option("--name", default=None, help="Job name (default: the command line).")
@_runner_token
@click.option(
    "--tty/--no-tty",
    default=False,
    help="Run the command on a pseudo-terminal so it keeps its colors (stdout and stderr merge).",
)
@_give_up("after the command exits", GIVE_UP_AFTER_OUTPUT)
@click.option(
    "--require-server",
    is_flag=True,
    help="Exit 125 without running the command when no job can be created at start.",
)
@_mask_env
@_mask_env_patterns
@_keepalive
@click.option(
    "--cancel-grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="When the job is canceled on the server: SIGTERM, then SIGKILL after this long.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    server: str,
    name: str | None,
    runner_token: str | None,
    tty: bool,
    give_up: float,
    require_server: bool,
    mask_env: tuple[str, ...],
    mask_env_patterns: tuple[str, ...],
    keepalive: float,
    cancel_grace: float,
    command: tuple[str, ...],
) -> None:
    """Run a command as a job, streaming its output: `logstream run -- make test`.

    Exits with the command's exit status, so it can wrap any CI step. The job's URL goes to
    stderr; the output goes to the terminal unchanged and to the job as
    numbered lines, batched every 0.1 s. A line in progress (a prompt, a progress bar) is sent
    after 0.5 s and stays a line of its own. While the server is away the output is kept (on
    disk past 16 MiB) and resent without duplicates. Ctrl-C is passed to the command and the
    job ends canceled. A cancel on the server (the dashboard's Cancel button) is heard in the
    answer to the next append or keepalive (sent every --keepalive seconds of silence): the
    command gets SIGTERM, then SIGKILL after --cancel-grace seconds, its output is sent and the
    job finished as canceled. A server that is away at start does not stop the command: the job
    is created once it answers (--require-server exits 125 instead); what never reached it is
    kept in a file for `logstream resend`. Exit status: the command's (128+N if killed by signal
    N; never 0 when canceled), 126/127 if it cannot be run, 125 for a bad --server or with
    --require-server.

    Secrets are masked (as ***) before any line leaves this machine: the values of --mask-env
    variables and of variables named like *_TOKEN or *_PASSWORD (--mask-env-pattern), values
    the output declares with a line `::add-mask::VALUE`, and well-known token formats.
    """
    from logstream.runner.run import EXIT_ERROR, run_command

    masks = _mask_options(mask_env, mask_env_patterns)
    with _client_errors(EXIT_ERROR):
        code = run_command(
            server,
            list(command),
            name=name,
            runner_token=runner_token,
            tty=tty,
            give_up=give_up,
            warn=_warn,
            require_server=require_server,
            masks=masks,
            keepalive=keepalive,
            cancel_grace=cancel_grace,
        )
    raise click.exceptions.Exit(code)


@main.command(short_help="Deliver what `run` kept while the server was away.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--server", default=None, help="Server (default: the one the file names).")
@_runner_token
@_give_up("", GIVE_UP_AFTER_OUTPUT)
def resend(path: str, server: str | None, runner_token: str | None, give_up: float) -> None:
    """Send the lines (and the finish) of a file `logstream run` left: no line twice."""
    from pathlib import Path

    from logstream.runner.run import resend as resend_file

    with _client_errors():
        code = resend_file(
            server, Path(path), give_up=give_up, warn=_warn, runner_token=runner_token
        )
    raise click.exceptions.Exit(code)


@main.command(short_help="Append stdin to a job.")
@click.argument("job", type=click.IntRange(min=1), required=False)
@_server
@click.option("--name", default=None, help="Create a new job with this name instead of JOB.")
@click.option(
    "--token", envvar="LOGSTREAM_TOKEN", default=None, help="JOB's write token (LOGSTREAM_TOKEN)."
)
@_runner_token
@click.option(
    "--finish",
    type=click.Choice(STATUSES_FINISH),
    default=None,
    help="Finish the job with this status at the end of the input.",
)
@click.option("--exit-code", type=int, default=None, help="The exit code --finish records.")
@click.option(
    "--tee",
    is_flag=True,
    help="Also copy the input to stdout as it is read (so the CI console keeps it).",
)
@_give_up("at the end of the input", GIVE_UP_AFTER_OUTPUT)
@_mask_env
@_mask_env_patterns
@_keepalive
def push(
    job: int | None,
    server: str,
    name: str | None,
    token: str | None,
    runner_token: str | None,
    finish: str | None,
    exit_code: int | None,
    tee: bool,
    give_up: float,
    mask_env: tuple[str, ...],
    mask_env_patterns: tuple[str, ...],
    keepalive: float,
) -> None:
    """Append stdin to a job: `make 2>&1 | logstream push 42` (or --name NAME for a new one).

    Lines are delivered like `run`'s: batched, retried while the server is away, never twice;
    a keepalive goes out while the input is silent. A cancel on the server stops the reading
    and finishes the job as canceled. Exits 0 once everything is stored (and the job finished,
    with --finish), 1 otherwise (and when canceled).
    """
    if (job is None) == (name is None):
        raise click.UsageError("give either JOB or --name NAME (to create a job)")
    from logstream.runner.run import push_input

    masks = _mask_options(mask_env, mask_env_patterns)
    with _client_errors():
        code = push_input(
            server,
            job,
            name=name,
            token=token,
            runner_token=runner_token,
            finish=finish,
            exit_code=exit_code,
            give_up=give_up,
            warn=_warn,
            masks=masks,
            keepalive=keepalive,
            echo=sys.stdout.buffer if tee else None,
        )
    raise click.exceptions.Exit(code)


@main.command()
@click.argument("job")
@_server
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option(
    "--tail",
    "last",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Start with the last N lines.",
)
@click.option(
    "--from",
    "first",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Start at line N.",
)
@click.option(
    "--since",
    default=None,
    metavar="DURATION",
    help="Start with the lines stored in the last DURATION (90s, 10m, 2h, 1d).",
)
@click.option(
    "-t",
    "--timestamps",
    is_flag=True,
    help="Print the time the server stored each line before it (ISO 8601, UTC).",
)
@_give_up("while following")
@_read_token
def tail(
    job: str,
    server: str,
    follow: bool,
    last: int | None,
    first: int | None,
    since: str | None,
    timestamps: bool,
    give_up: float,
    token: str | None,
) -> None:
    """Print a job's log; -f follows it live until the job ends.

    JOB is a job's number, or a name: the newest job of that name. Following resumes after
    the last line printed across dropped connections and server restarts (no line twice,
    none skipped), then exits 0 if the job succeeded and 1 if not.
    """
    if sum(option is not None for option in (last, first, since)) > 1:
        raise click.UsageError("--tail, --from and --since do not go together")
    if job.isdigit() and int(job) == 0:
        raise click.UsageError("JOB is a job's number (from 1) or a job's name")
    since_s = None
    if since is not None:
        from logstream.config import parse_duration

        try:
            since_s = parse_duration(since)
        except SettingsError as error:
            raise click.BadParameter(str(error), param_hint="--since") from None
    import time

    from logstream.runner.client import Client
    from logstream.runner.tail import (
        Follower,
        line_at,
        print_log,
        print_stamped,
        resolve_job,
        start_after,
    )

    out = sys.stdout.buffer
    with _client_errors(), Client(server, token=token) as client:
        job_id = resolve_job(client, job)
        after: int | None = None
        if since_s is not None:
            after = line_at(client, job_id, round((time.time() - since_s) * 1000))
        elif first is not None:
            after = first - 1
        if not follow and not timestamps:
            print_log(client, job_id, out, after=after, tail=last)
            return
        if after is None:
            after = start_after(client, job_id, first=None, tail=last)
        if not follow:
            print_stamped(client, job_id, out, after=after)
            return
        end = Follower(client, job_id, out, after, _warn, stamps=timestamps).run(give_up)
    if end.get("status") != "succeeded":
        _warn(f"job {job_id} {end.get('status')} (exit code {end.get('exit_code')})")
        raise click.exceptions.Exit(1)


def _meta_pair(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    pairs = []
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx, param)
        pairs.append((key, text))
    return tuple(pairs)


@main.command()
@_server
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only jobs with this status (running, succeeded, failed, canceled, lost); repeatable.",
)
@click.option("--name", default=None, help="Only jobs with exactly this name.")
@click.option(
    "--meta",
    multiple=True,
    callback=_meta_pair,
    metavar="KEY=VALUE",
    help="Only jobs whose meta has KEY with this string value; repeatable (all must hold).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.option("-w", "--watch", is_flag=True, help="Refresh the list until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="How often --watch refreshes.",
)
@_read_token
def jobs(
    server: str,
    limit: int,
    statuses: tuple[str, ...],
    name: str | None,
    meta: tuple[tuple[str, str], ...],
    as_json: bool,
    watch: bool,
    interval: float,
    token: str | None,
) -> None:
    """List recent jobs (id, name, status, lines, duration), newest first, filtered by the
    server; --watch keeps the list on screen, redrawn every --interval seconds."""
    if watch and as_json:
        raise click.UsageError("--watch and --json do not go together")
    from logstream.runner.client import Client
    from logstream.runner.tail import format_jobs, watch_jobs

    with _client_errors(), Client(server, token=token) as client:

        def fetch() -> list[dict[str, Any]]:
            return client.list_jobs(limit, statuses=statuses, name=name, meta=meta)

        if watch:
            title = " ".join(["logstream jobs", *sys.argv[2:]])
            screen = sys.stdout.isatty()
            watch_jobs(fetch, click.echo, _warn, interval=interval, screen=screen, title=title)
            return
        found = fetch()
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        for row in format_jobs(found):
            click.echo(row)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
