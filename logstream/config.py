"""Settings: read from LOGSTREAM_* environment variables, overridable by CLI flags.

Imports nothing from the package, so the CLI can load it without the server stack.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///logstream.db"
AUTH_MODES = ("open", "tokens")


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration like `90s`, `15m`, `12h`, `30d` or `2w` (a bare number: seconds)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], None) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise SettingsError(f"{text!r} is not a duration like 30d, 12h, 15m or 90s") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{text!r} is not a positive duration")
    return value


def normalise_database_url(url: str) -> str:
    """Map the URL forms platforms hand out onto the async drivers logstream uses."""
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
        raise SettingsError(
            f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://..."
        )
    return url


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the server needs to know; one immutable object passed around."""

    database_url: str = DEFAULT_DATABASE_URL
    runner_token: str | None = None
    # "open": reads need no credential (a laptop); "tokens": every read needs a token of role
    # read or more, or a browser session signed in with one (see server/auth.py).
    auth: str = "open"
    # How long a browser session lasts after sign-in (seconds; never past its token's expiry).
    session_ttl: float = 12 * 3600.0
    # Seconds a token or session lookup is cached, and between checks that the credentials of
    # open streams still hold: what bounds how long a revocation takes to be seen.
    auth_recheck: float = 2.0
    # The session cookie's Secure flag: None sets it when the request came over TLS (set it
    # on behind a proxy that terminates TLS).
    secure_cookies: bool | None = None
    host: str = "127.0.0.1"
    # The Host names (comma-separated; "*" any, "*.example.com" the names under it) the
    # server answers. Unset: on a loopback address only loopback names and addresses, else
    # any (see server/http/guard.py).
    allowed_hosts: str | None = None
    port: int = 8000
    certfile: str | None = None
    keyfile: str | None = None
    # Idle SSE streams send a comment this often (seconds) so proxies keep them open.
    heartbeat: float = 15.0
    # The `retry:` the stream tells browsers to wait before reconnecting (milliseconds).
    retry_ms: int = 2000
    max_body_bytes: int = 8 * 1024 * 1024
    # Lines longer than this many characters are stored cut, with a marker.
    max_line_chars: int = 64 * 1024
    # How many lines one page of replay reads from the store (and the most one write carries).
    page_lines: int = 2000
    # How many recent lines each live job keeps in memory for its readers.
    feed_lines: int = 8192
    # Seconds a request head may take to arrive once begun (else 408 and close).
    header_timeout: float = 10.0
    # Seconds given to open streams to end themselves on shutdown.
    graceful_timeout: float = 3.0
    # With SQLite and several processes, how often a live tail re-checks the store (seconds).
    poll_interval: float = 1.0
    # Database connections per process (plus as many again in overflow). Streams hold none
    # while idle and one only for a page read, so thousands of streams share a few.
    pool_size: int = 10
    # Server processes sharing the port (see server.run_workers).
    workers: int = 1
    auto_migrate: bool | None = None
    log_level: str = "info"
    # Finished jobs older than this (a duration: 30d, 12h...) are deleted; unset keeps all.
    retention: str | None = None
    # With retention, the newest N jobs of each name are kept whatever their age.
    retention_keep: int = 0
    # A job's log past this many bytes (UTF-8, a LF per line) keeps its first half-limit and its
    # latest lines; the lines between are dropped, one marker line says which (0: no limit).
    max_job_bytes: int = 100 * 1024 * 1024
    # Finished logs are compacted into compressed chunks of 1,000 lines (server/compaction.py);
    # off keeps every line a row of its own (reads handle both either way).
    compact: bool = True
    # The chunks' compression: "zstd" (the zstandard package) or "zlib" (the standard library).
    compact_codec: str = "zstd"
    # A running job with no append and no keepalive for this long (seconds) ends as `lost`;
    # 0 turns the sweep off. Runners send a keepalive every 30 s of silence.
    job_timeout: float = 600.0
    # A job asked to cancel that its runner has not finished after this long (seconds) is
    # ended as `canceled` by the server (the runner hears of a cancel within ~30 s).
    cancel_timeout: float = 120.0
    # Who may read /metrics besides the runner token when tokens are on (unset: only it).
    metrics_token: str | None = None
    # The event loop: "auto" runs on uvloop when it is installed (it is with the server extra
    # on Linux and macOS), else on asyncio's own; "asyncio" or "uvloop" force one.
    event_loop: str = "auto"
    # Token formats masked in every job (logstream/masking.py PATTERNS): all, none, or names.
    mask_patterns: str = "all"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from LOGSTREAM_* variables; explicit overrides (not None) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get("LOGSTREAM_" + field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.name, field.type, raw)
        for key, value in overrides.items():
            if value is not None:
                values[key] = value
        if "database_url" in values:
            values["database_url"] = normalise_database_url(values["database_url"])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that cannot work, with a message naming the setting."""
        if self.heartbeat <= 0:
            raise SettingsError("heartbeat must be > 0 seconds")
        if self.header_timeout <= 0:
            raise SettingsError("header_timeout must be > 0 seconds")
        if self.max_line_chars < 64:
            raise SettingsError("max_line_chars must be at least 64")
        if self.max_body_bytes < 1024:
            raise SettingsError("max_body_bytes must be at least 1024")
        if self.page_lines < 1 or self.feed_lines < 1:
            raise SettingsError("page_lines and feed_lines must be positive")
        if not 1 <= self.workers <= 64:
            raise SettingsError("workers must be between 1 and 64")
        if self.event_loop not in ("auto", "asyncio", "uvloop"):
            raise SettingsError("event_loop must be auto, asyncio or uvloop")
        if self.job_timeout < 0 or self.cancel_timeout <= 0:
            raise SettingsError("job_timeout must be >= 0 and cancel_timeout > 0 seconds")
        if self.auth not in AUTH_MODES:
            raise SettingsError("auth must be open or tokens (LOGSTREAM_AUTH)")
        if self.session_ttl <= 0 or self.auth_recheck <= 0:
            raise SettingsError("session_ttl and auth_recheck must be > 0 seconds")
        if bool(self.certfile) != bool(self.keyfile):
            raise SettingsError("certfile and keyfile go together")
        if self.retention is not None:
            parse_duration(self.retention)
        if self.max_job_bytes != 0 and self.max_job_bytes < 1024:
            raise SettingsError("max_job_bytes must be 0 (no limit) or at least 1024")
        if self.compact_codec not in ("zstd", "zlib"):
            raise SettingsError("compact_codec must be zstd or zlib")
        if self.retention_keep < 0:
            raise SettingsError("retention_keep must be >= 0")

    @property
    def retention_seconds(self) -> float | None:
        """LOGSTREAM_RETENTION in seconds, or None to keep every job."""
        return None if self.retention is None else parse_duration(self.retention)

    @property
    def is_sqlite(self) -> bool:
        """True when the store is the embedded SQLite default."""
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        """SQLite migrates itself on start; PostgreSQL waits for `logstream db upgrade`."""
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


def _parse(name: str, type_: Any, raw: str) -> Any:
    kind = str(type_)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool"):
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"LOGSTREAM_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
