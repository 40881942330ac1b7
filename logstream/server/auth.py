"""Who may do what: tokens and sessions, and the checks both HTTP fronts share. Framework-free.

Credentials, from narrowest to widest:
- a job's token (made with the job, shown once): writes to that job, and reads it;
- API tokens (`logstream token create --role ...`), each with a role: `read` (logs, the job
  list, search, events, the dashboard), `runner` (that, plus creating jobs and writing to any
  job) and `admin` (everything, plus cancelling jobs and managing tokens). Roles are ordered:
  each may do what the ones before it may;
- `LOGSTREAM_RUNNER_TOKEN`, which acts as a `runner` token;
- a browser session: a cookie that a sign-in exchanged for an API token, with that token's
  role, ending at its expiry, at sign-out, or when the token is revoked.

`LOGSTREAM_AUTH=open` (the default) keeps the behaviour from before tokens: reads need nothing,
creating a job needs the runner token only when one is set, writing needs the job's token (or
the runner token; an API runner or admin token works too). `tokens` makes every read need a
credential as well. The one check to call is `require_role`.

Lookups are cached per process for `LOGSTREAM_AUTH_RECHECK` seconds (2 by default), so a busy
stream of requests costs no query per request; the same interval drives `Access.watch`, which
ends the open streams whose credential lapsed. A revocation through any process is therefore
seen by every process within about two intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.server.errors import Forbidden, NotFound, Unauthorized
from logstream.server.live.streams import Grant
from logstream.server.store import tokens as store
from logstream.server.store.db import writing

if TYPE_CHECKING:
    from logstream.config import Settings
    from logstream.server.live.hub import Hub
    from logstream.server.services import Services

log = logging.getLogger("logstream")

ROLES = ("read", "runner", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}
# API tokens carry a prefix, so a secret scanner (and our own log filter) can recognise one.
API_TOKEN_PREFIX = "lsk_"
SESSION_COOKIE = "logstream_session"
MAX_TOKEN_NAME = 100
# Entries kept per lookup cache; past it the cache starts over (a flood of made-up tokens
# must not grow memory).
CACHE_SIZE = 10_000


def new_token() -> str:
    """A fresh random write token (shown once; only its hash is stored)."""
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    """A fresh API token: the prefix and 256 random bits."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def now_ms() -> int:
    """The wall clock in integer milliseconds (what the store's times are)."""
    return time.time_ns() // 1_000_000


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presents: its `Authorization` header and its session cookie's value.

    `cross_site` is set (by http/session.py) for a request that changes something and does not
    come from a page of this server: a session cookie may not authorise it (CSRF). A bearer
    token still may, since no browser sends one by itself.
    """

    authorization: str | None = None
    session: str | None = None
    cross_site: bool = False


NO_CREDENTIALS = Credentials()


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is, as far as what it may do goes."""

    name: str
    role: str | None  # None: a job's token, which may touch only `job_id`
    job_id: int | None = None
    token_id: int | None = None
    session_id: int | None = None
    expires_ms: int | None = None

    def may(self, role: str, own_job: int | None = None) -> bool:
        """Whether this may act as `role`; a job token may only for its own job."""
        if self.role is not None:
            return _RANK[self.role] >= _RANK[role]
        return own_job is not None and self.job_id == own_job

    def grant(self) -> Grant | None:
        """What a stream opened by this holds while it is open (None: it cannot lapse)."""
        if self.token_id is None:
            return None
        return Grant(self.token_id, self.session_id, self.expires_ms)


RUNNER = Principal(name="LOGSTREAM_RUNNER_TOKEN", role="runner")


def is_runner(svc: Services, token: str) -> bool:
    """True when `token` is the configured runner token (compared in constant time)."""
    runner = svc.settings.runner_token
    return runner is not None and hmac.compare_digest(token.encode(), runner.encode())


def _api_principal(row: store.TokenRow, at_ms: int) -> Principal:
    state = row.state(at_ms)
    if state == "revoked":
        raise Forbidden(f"the token {row.name!r} was revoked", reason="revoked")
    if state == "expired":
        raise Forbidden(f"the token {row.name!r} has expired", reason="expired")
    return Principal(name=row.name, role=row.role, token_id=row.id, expires_ms=row.expires_ms)


async def authenticate(
    svc: Services, credentials: Credentials, job_id: int | None = None
) -> Principal | None:
    """Who presents `credentials` (None: nobody, or a session that has ended).

    A bearer token is tried as the token of `job_id` (the hot path of appends: a cached hash),
    then as the runner token, then as an API token; one that is none of them, or is revoked or
    expired, is refused (403). A bearer token wins over a session cookie.
    """
    if credentials.authorization is not None:
        token = parse_bearer(credentials.authorization)
        assert token is not None
        digest = hash_token(token)
        if job_id is not None:
            expected = await svc.token_hash(job_id)
            if expected is not None and hmac.compare_digest(digest, expected):
                return Principal(name=f"job {job_id}", role=None, job_id=job_id)
        if is_runner(svc, token):
            return RUNNER
        row = await svc.access.token(digest)
        if row is None:
            raise Forbidden("the token is not valid", reason="unknown")
        return _api_principal(row, now_ms())
    if credentials.session is not None:
        session = await svc.access.session(hash_token(credentials.session))
        at_ms = now_ms()
        if session is None or session.expires_ms <= at_ms or session.token.state(at_ms) != "active":
            return None  # an ended session is no credential: sign in again
        if credentials.cross_site:
            raise Forbidden(
                "a request from another site cannot use the session cookie", reason="cross_site"
            )
        row = session.token
        expires = session.expires_ms
        if row.expires_ms is not None:
            expires = min(expires, row.expires_ms)
        return Principal(
            name=row.name,
            role=row.role,
            token_id=row.id,
            session_id=session.id,
            expires_ms=expires,
        )
    return None


async def require_role(
    svc: Services,
    credentials: Credentials,
    role: str,
    *,
    own_job: int | None = None,
    even_open: bool = False,
) -> Principal | None:
    """Check that a request may act as `role` (read, runner or admin); a job token of
    `own_job` passes too. Returns who it is, or None when open mode let it through without
    looking. Raises Unauthorized (401: no credential) or Forbidden (403: not enough).

    For a route that acts on a job as admin or as that job's runner (cancel):
    `await require_role(svc, credentials, "admin", own_job=job_id)`.

    In open mode, as before tokens existed: reads need nothing, nor do admin actions that
    name no job (`even_open` makes the check apply there too: the tokens API); creating a job
    needs the runner token when one is set; acting on a job (`own_job`: writing, and admin
    actions on it) needs its token or a runner token. Session cookies count only in tokens mode.
    """
    if own_job is not None and credentials.authorization is not None:
        # The hot path of appends, in either mode: the job's own token against its cached
        # hash, with no other lookup (what the check cost before there were roles).
        token = parse_bearer(credentials.authorization)
        assert token is not None
        expected = await svc.token_hash(own_job)
        if expected is not None and hmac.compare_digest(hash_token(token), expected):
            return Principal(name=f"job {own_job}", role=None, job_id=own_job)
    if svc.settings.auth == "open" and not even_open:
        return await _require_open(svc, credentials, role, own_job)
    principal = await authenticate(svc, credentials)
    if principal is None:
        raise Unauthorized(
            "this needs 'Authorization: Bearer <token>' or a signed-in session",
            needs=role,
        )
    if not principal.may(role, own_job):
        scope = "" if own_job is None else f" or the token of job {own_job}"
        who = "a job token" if principal.role is None else f"a {principal.role} token"
        raise Forbidden(
            f"this needs a {role} token{scope}; {principal.name!r} is {who}", needs=role
        )
    return principal


async def _require_open(
    svc: Services, credentials: Credentials, role: str, own_job: int | None
) -> Principal | None:
    if role == "read" or (role == "admin" and own_job is None):
        return None
    no_session = Credentials(authorization=credentials.authorization)
    if own_job is None:  # creating a job
        if svc.settings.runner_token is None:
            return None
        if credentials.authorization is None:
            raise Unauthorized("creating a job needs 'Authorization: Bearer <runner token>'")
        try:
            principal = await authenticate(svc, no_session)
        except Forbidden:
            principal = None
        if principal is None or not principal.may("runner"):
            raise Forbidden("the runner token is not valid")
        return principal
    if credentials.authorization is None:
        raise Unauthorized("this needs 'Authorization: Bearer <job token>'")
    if await svc.token_hash(own_job) is None:
        raise NotFound(f"job {own_job} does not exist", job_id=own_job)
    try:
        principal = await authenticate(svc, no_session)  # not the job's token: seen above
    except Forbidden:
        principal = None
    if principal is None or not principal.may("runner", own_job):
        raise Forbidden(f"the token is not valid for job {own_job}")
    return principal


def sealing_token(principal: Principal | None, credentials: Credentials, job_id: int) -> str:
    """The bearer token an append masks with: the job's own, or LOGSTREAM_RUNNER_TOKEN.

    A job's masks are stored sealed with keys derived from those two tokens only (the server
    keeps neither; server/masks.py), so only they can unseal them on any instance. Appending
    with any other credential that may write (an API runner or admin token, a session) would
    work only where the masks happen to be cached, so it is refused: such a holder writes
    with the job's token it got when it created the job.
    """
    if principal is not None and (principal.role is None or principal is RUNNER):
        token = parse_bearer(credentials.authorization)
        if token is not None:
            return token
    raise Forbidden(
        f"appending to job {job_id} needs its own token (or LOGSTREAM_RUNNER_TOKEN): a job's"
        " masks are sealed for those",
        reason="needs_job_token",
    )


def check_runner(svc: Services, authorization: str | None) -> None:
    """Creating a job needs the runner token, when one is configured (open mode's rule; the
    routes call `require_role(..., "runner")`, which also takes API tokens)."""
    if svc.settings.runner_token is None:
        return
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("creating a job needs 'Authorization: Bearer <runner token>'")
    if not is_runner(svc, token):
        raise Forbidden("the runner token is not valid")


async def check_job_token(svc: Services, job_id: int, authorization: str | None) -> None:
    """The job's own token, or a runner (or admin) token, may write to a job."""
    await require_role(svc, Credentials(authorization=authorization), "runner", own_job=job_id)


# --- the store side: lookups (cached), tokens, sessions ---------------------------------------


class Access:
    """The token and session lookups of one process (cached briefly), the token and session
    writes, and the watch that ends open streams whose credential lapsed."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.ttl = settings.auth_recheck
        self._tokens: dict[str, tuple[float, store.TokenRow | None]] = {}
        self._sessions: dict[str, tuple[float, store.SessionRow | None]] = {}
        self._watch: asyncio.Task[None] | None = None

    # --- lookups ----------------------------------------------------------------------------

    async def token(self, token_hash: str) -> store.TokenRow | None:
        """The API token with this hash (cached for `ttl` seconds, misses too)."""
        now = time.monotonic()
        cached = self._tokens.get(token_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.engine.connect() as conn:
            found = await store.token_by_hash(conn, token_hash)
        if len(self._tokens) >= CACHE_SIZE:
            self._tokens.clear()
        self._tokens[token_hash] = (now + self.ttl, found)
        return found

    async def session(self, cookie_hash: str) -> store.SessionRow | None:
        """The session with this cookie hash, with its token (cached for `ttl` seconds)."""
        now = time.monotonic()
        cached = self._sessions.get(cookie_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.engine.connect() as conn:
            found = await store.session_by_hash(conn, cookie_hash)
        if len(self._sessions) >= CACHE_SIZE:
            self._sessions.clear()
        self._sessions[cookie_hash] = (now + self.ttl, found)
        return found

    def forget(self) -> None:
        """Drop every cached lookup (after a revocation through this process)."""
        self._tokens.clear()
        self._sessions.clear()

    # --- writes -----------------------------------------------------------------------------

    async def sign_in(self, token: str) -> tuple[str, store.SessionRow]:
        """Exchange an API token for a new session: (the cookie value, the session)."""
        if not token.startswith(API_TOKEN_PREFIX):
            raise Forbidden(
                "sign in with an API token (logstream token create); a job token or the"
                " runner token cannot open a session",
                reason="not_api_token",
            )
        row = await self.token(hash_token(token))
        if row is None:
            raise Forbidden("the token is not valid", reason="unknown")
        at_ms = now_ms()
        _api_principal(row, at_ms)  # refuses a revoked or expired one
        expires = at_ms + int(self.settings.session_ttl * 1000)
        if row.expires_ms is not None:
            expires = min(expires, row.expires_ms)
        cookie = secrets.token_urlsafe(32)
        async with writing(self.engine) as conn:
            session_id = await store.insert_session(
                conn, hash_token(cookie), row.id, at_ms, expires
            )
        return cookie, store.SessionRow(id=session_id, expires_ms=expires, token=row)

    async def sign_out(self, cookie: str) -> None:
        """End the session of this cookie (its streams end at the next watch)."""
        digest = hash_token(cookie)
        async with writing(self.engine) as conn:
            await store.delete_session(conn, digest)
        self._sessions.pop(digest, None)

    # --- open streams -----------------------------------------------------------------------

    def start(self, hub: Hub) -> None:
        """Watch the credentials of the hub's open streams (tokens mode)."""
        self._watch = asyncio.create_task(self._watch_loop(hub), name="logstream-auth-watch")

    async def stop(self) -> None:
        """Stop watching."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def _watch_loop(self, hub: Hub) -> None:
        while True:
            await asyncio.sleep(self.ttl)
            try:
                await self.check_streams(hub)
            except Exception:
                log.warning("checking the credentials of open streams failed", exc_info=True)

    async def check_streams(self, hub: Hub) -> int:
        """End (by their grants) the open streams whose token or session no longer holds: two
        queries for all of them. Returns how many lapsed."""
        grants = [grant for grant in hub.streams.grants if grant.lapsed is None]
        if not grants:
            return 0
        token_ids = {g.token_id for g in grants if g.token_id is not None}
        session_ids = {g.session_id for g in grants if g.session_id is not None}
        async with self.engine.connect() as conn:
            token_states = await store.token_states(conn, token_ids)
            session_states = await store.session_states(conn, session_ids)
        at_ms = now_ms()
        lapsed: list[Grant] = []
        for grant in grants:
            reason = _lapse(grant, token_states, session_states, at_ms)
            if reason is None:
                continue
            grant.lapsed = reason
            lapsed.append(grant)
            if grant.job_id is not None:
                hub.wake(grant.job_id)
        if lapsed:
            # What ended a stream here ends new requests here at once too, not a cache later.
            self._drop(
                {g.token_id for g in lapsed if g.token_id is not None},
                {g.session_id for g in lapsed if g.session_id is not None},
            )
        return len(lapsed)

    def _drop(self, token_ids: set[int], session_ids: set[int]) -> None:
        """Forget the cached lookups of these tokens and sessions."""
        for digest, (_, token) in list(self._tokens.items()):
            if token is not None and token.id in token_ids:
                del self._tokens[digest]
        for digest, (_, session) in list(self._sessions.items()):
            if session is not None and (session.id in session_ids or session.token.id in token_ids):
                del self._sessions[digest]


def _lapse(
    grant: Grant,
    token_states: dict[int, tuple[int | None, int | None]],
    session_states: dict[int, int],
    at_ms: int,
) -> str | None:
    """Why a grant no longer holds, or None."""
    if grant.session_id is not None:
        expires = session_states.get(grant.session_id)
        if expires is None:
            return "signed_out"
        if expires <= at_ms:
            return "expired"
    if grant.token_id is not None:
        state = token_states.get(grant.token_id)
        if state is None or state[1] is not None:
            return "revoked"
        if state[0] is not None and state[0] <= at_ms:
            return "expired"
    if grant.expires_ms is not None and grant.expires_ms <= at_ms:
        return "expired"
    return None


# --- managing tokens (the CLI and the admin API) ----------------------------------------------


class TokenNameTaken(ValueError):
    """A live token already has the name asked for."""


def check_token_name(name: str) -> str:
    """A token name: one line of printable text, at most MAX_TOKEN_NAME characters."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_TOKEN_NAME or not cleaned.isprintable():
        raise ValueError(f"a token name is 1 to {MAX_TOKEN_NAME} printable characters")
    return cleaned


async def create_token(
    engine: AsyncEngine, name: str, role: str, expires_in: float | None
) -> tuple[str, store.TokenRow]:
    """Make an API token: (the token, shown this once; its stored row). ValueError for a bad
    role or name, or a name a live token already has."""
    if role not in _RANK:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    name = check_token_name(name)
    token = new_api_token()
    at_ms = now_ms()
    expires = None if expires_in is None else at_ms + int(expires_in * 1000)
    async with writing(engine) as conn:
        if await store.live_token_named(conn, name) is not None:
            raise TokenNameTaken(f"a token named {name!r} exists: revoke it first")
        row = await store.insert_token(conn, name, role, hash_token(token), at_ms, expires)
    return token, row


async def revoke_token(engine: AsyncEngine, name: str) -> store.TokenRow | None:
    """Revoke the live token called `name` (and end its sessions); None when there is none."""
    async with writing(engine) as conn:
        return await store.revoke_token(conn, name, now_ms())


async def list_tokens(engine: AsyncEngine) -> list[store.TokenRow]:
    """Every token, revoked ones too, oldest first."""
    async with engine.connect() as conn:
        return await store.list_tokens(conn)


async def count_live_tokens(engine: AsyncEngine) -> int:
    """How many tokens can be used now."""
    async with engine.connect() as conn:
        return await store.count_live_tokens(conn, now_ms())


# --- keeping secrets out of the server's log --------------------------------------------------

_SECRETS = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*b?['\"]?)(?:(?:bearer|basic)\s+)?[^'\"\s,;)]+"
    r"|(bearer\s+)[^'\"\s,;)]+"
    r"|(" + SESSION_COOKIE + r"=)[^;\s'\"]+"
    r"|" + API_TOKEN_PREFIX + r"[A-Za-z0-9_-]+"
)


def _scrub(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + "[hidden]", text)


class RedactSecrets(logging.Filter):
    """A log filter that hides anything shaped like a bearer token, an API token, a session
    cookie or an Authorization header value: defence in depth, since nothing logs them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message (with its arguments) if it holds a secret."""
        try:
            message = record.getMessage()
        except Exception:
            return True
        scrubbed = _scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _scrub(record.exc_text)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


async def check_cancel(svc: Services, credentials: Credentials, job_id: int) -> None:
    """Who may cancel a job: an admin, or the job's own token (or a runner token). While the
    server runs open with no runner token, anyone may (the dashboard's Cancel button needs no
    token there, as creating a job needs none)."""
    if svc.settings.auth == "open" and svc.settings.runner_token is None:
        if await svc.token_hash(job_id) is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        return
    await require_role(svc, credentials, "admin", own_job=job_id)


async def may_cancel(svc: Services, credentials: Credentials, job_id: int) -> bool:
    """Whether check_cancel would let this request through (the dashboard shows the button)."""
    try:
        await check_cancel(svc, credentials, job_id)
    except (Unauthorized, Forbidden, NotFound):
        return False
    return True


async def check_metrics(svc: Services, credentials: Credentials) -> None:
    """/metrics: LOGSTREAM_METRICS_TOKEN, or an admin (tokens mode); open mode asks for the
    runner or metrics token when either is set, else nothing."""
    metrics_token = svc.settings.metrics_token
    token = parse_bearer(credentials.authorization)
    if metrics_token is not None and token is not None:
        if hmac.compare_digest(token.encode(), metrics_token.encode()):
            return
    if svc.settings.auth == "open":
        if svc.settings.runner_token is None and metrics_token is None:
            return
        if token is None:
            raise Unauthorized("/metrics needs 'Authorization: Bearer <metrics or runner token>'")
        if is_runner(svc, token):
            return
        raise Forbidden("the token may not read /metrics")
    await require_role(svc, credentials, "admin", even_open=True)
