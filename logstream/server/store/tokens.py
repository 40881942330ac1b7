"""Every SQL statement on API tokens and browser sessions. Functions take a connection first.

Token and session writes are rare (a sign-in, `logstream token create`), so they run in short
transactions of their own (`db.writing`), not through the job writer. The reads behind each
request are cached by server/auth.py; the re-check of open streams reads many ids at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from logstream.server.store.models import sessions, tokens

# At most this many ids in one IN list (PostgreSQL and SQLite both take far more; this keeps
# one statement small).
IN_CHUNK = 500


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRow:
    """An API token as stored (never the token itself, which only its holder has)."""

    id: int
    name: str
    role: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def state(self, now_ms: int) -> str:
        """active, expired or revoked."""
        if self.revoked_ms is not None:
            return "revoked"
        if self.expires_ms is not None and self.expires_ms <= now_ms:
            return "expired"
        return "active"


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRow:
    """A browser session and the token it was signed in with."""

    id: int
    expires_ms: int
    token: TokenRow


_TOKEN_COLUMNS = (
    tokens.c.id,
    tokens.c.name,
    tokens.c.role,
    tokens.c.created_ms,
    tokens.c.expires_ms,
    tokens.c.revoked_ms,
)


def _token(row: Sequence[Any]) -> TokenRow:
    return TokenRow(*row)


def _chunks(ids: Collection[int]) -> Iterator[list[int]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


async def insert_token(
    conn: AsyncConnection,
    name: str,
    role: str,
    token_hash: str,
    now_ms: int,
    expires_ms: int | None,
) -> TokenRow:
    """Store a new token (the caller checked that no live token has this name)."""
    result = await conn.execute(
        tokens.insert()
        .values(
            name=name,
            role=role,
            token_hash=token_hash,
            created_ms=now_ms,
            expires_ms=expires_ms,
        )
        .returning(*_TOKEN_COLUMNS)
    )
    return _token(result.one())


async def live_token_named(conn: AsyncConnection, name: str) -> TokenRow | None:
    """The token called `name` that is not revoked (at most one: a unique index)."""
    query = select(*_TOKEN_COLUMNS).where(tokens.c.name == name, tokens.c.revoked_ms.is_(None))
    row = (await conn.execute(query)).first()
    return None if row is None else _token(row)


async def list_tokens(conn: AsyncConnection) -> list[TokenRow]:
    """Every token, revoked ones too, oldest first."""
    result = await conn.execute(select(*_TOKEN_COLUMNS).order_by(tokens.c.id))
    return [_token(row) for row in result]


async def revoke_token(conn: AsyncConnection, name: str, now_ms: int) -> TokenRow | None:
    """Revoke the live token called `name` and end its sessions; None when there is none."""
    result = await conn.execute(
        update(tokens)
        .where(tokens.c.name == name, tokens.c.revoked_ms.is_(None))
        .values(revoked_ms=now_ms)
        .returning(*_TOKEN_COLUMNS)
    )
    row = result.first()
    if row is None:
        return None
    found = _token(row)
    await conn.execute(delete(sessions).where(sessions.c.token_id == found.id))
    return found


async def token_by_hash(conn: AsyncConnection, token_hash: str) -> TokenRow | None:
    """The token with this hash (revoked or expired ones too: the caller says why it fails)."""
    query = select(*_TOKEN_COLUMNS).where(tokens.c.token_hash == token_hash)
    row = (await conn.execute(query)).first()
    return None if row is None else _token(row)


async def count_live_tokens(conn: AsyncConnection, now_ms: int) -> int:
    """How many tokens are neither revoked nor expired."""
    query = select(tokens.c.id).where(
        tokens.c.revoked_ms.is_(None),
        (tokens.c.expires_ms.is_(None)) | (tokens.c.expires_ms > now_ms),
    )
    return len((await conn.execute(query)).all())


async def insert_session(
    conn: AsyncConnection, cookie_hash: str, token_id: int, now_ms: int, expires_ms: int
) -> int:
    """Store a new session; returns its id. Sessions that ended are cleared on the way."""
    await conn.execute(delete(sessions).where(sessions.c.expires_ms <= now_ms))
    result = await conn.execute(
        sessions.insert()
        .values(
            cookie_hash=cookie_hash, token_id=token_id, created_ms=now_ms, expires_ms=expires_ms
        )
        .returning(sessions.c.id)
    )
    return int(result.scalar_one())


async def session_by_hash(conn: AsyncConnection, cookie_hash: str) -> SessionRow | None:
    """The session with this cookie hash, with its token."""
    query = (
        select(sessions.c.id, sessions.c.expires_ms, *_TOKEN_COLUMNS)
        .join(tokens, tokens.c.id == sessions.c.token_id)
        .where(sessions.c.cookie_hash == cookie_hash)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return SessionRow(id=row[0], expires_ms=row[1], token=_token(row[2:]))


async def delete_session(conn: AsyncConnection, cookie_hash: str) -> int | None:
    """End a session (sign-out); returns its id, None when there was none."""
    result = await conn.execute(
        delete(sessions).where(sessions.c.cookie_hash == cookie_hash).returning(sessions.c.id)
    )
    found = result.scalar_one_or_none()
    return None if found is None else int(found)


async def token_states(
    conn: AsyncConnection, ids: Collection[int]
) -> dict[int, tuple[int | None, int | None]]:
    """(expires_ms, revoked_ms) of each of these tokens that exists."""
    found: dict[int, tuple[int | None, int | None]] = {}
    for chunk in _chunks(ids):
        query = select(tokens.c.id, tokens.c.expires_ms, tokens.c.revoked_ms).where(
            tokens.c.id.in_(chunk)
        )
        for row in await conn.execute(query):
            found[row[0]] = (row[1], row[2])
    return found


async def session_states(conn: AsyncConnection, ids: Collection[int]) -> dict[int, int]:
    """expires_ms of each of these sessions that still exists."""
    found: dict[int, int] = {}
    for chunk in _chunks(ids):
        query = select(sessions.c.id, sessions.c.expires_ms).where(sessions.c.id.in_(chunk))
        for row in await conn.execute(query):
            found[row[0]] = row[1]
    return found
