"""Tokens and sessions in the store and the access checks, in process, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging

import pytest

from logstream.server import auth
from logstream.server.auth import Credentials, require_role
from logstream.server.errors import Forbidden, Unauthorized
from logstream.server.live.streams import Grant
from logstream.server.services import Services

BACKENDS = pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)


@BACKENDS
@pytest.mark.services(auth="tokens", auth_recheck=0.2)
async def test_tokens_are_stored_hashed_and_names_are_unique_among_live_ones(
    services: Services,
) -> None:
    token, row = await auth.create_token(services.engine, "alice", "read", None)
    assert token.startswith("lsk_") and len(token) > 40
    assert row.role == "read" and row.expires_ms is None and row.state(auth.now_ms()) == "active"
    found = await services.access.token(auth.hash_token(token))
    assert found == row
    with pytest.raises(auth.TokenNameTaken):
        await auth.create_token(services.engine, "alice", "admin", None)
    with pytest.raises(ValueError):
        await auth.create_token(services.engine, "bob", "root", None)
    assert await auth.revoke_token(services.engine, "alice") is not None
    assert await auth.revoke_token(services.engine, "alice") is None
    again, _ = await auth.create_token(services.engine, "alice", "admin", 3600)
    rows = await auth.list_tokens(services.engine)
    assert [(r.name, r.role, r.state(auth.now_ms())) for r in rows] == [
        ("alice", "read", "revoked"),
        ("alice", "admin", "active"),
    ]
    assert rows[1].expires_ms is not None
    assert again != token


@BACKENDS
@pytest.mark.services(auth="tokens", auth_recheck=0.2)
async def test_require_role_orders_roles_and_scopes_job_tokens(services: Services) -> None:
    read, _ = await auth.create_token(services.engine, "r", "read", None)
    runner, _ = await auth.create_token(services.engine, "w", "runner", None)
    admin, _ = await auth.create_token(services.engine, "a", "admin", None)
    job, job_token = await services.writer.create_job("j", {})

    def bearer(token: str) -> Credentials:
        return Credentials(authorization=f"Bearer {token}")

    with pytest.raises(Unauthorized):
        await require_role(services, Credentials(), "read")
    for token, allowed in (
        (read, {"read"}),
        (runner, {"read", "runner"}),
        (admin, set(auth.ROLES)),
    ):
        for role in auth.ROLES:
            if role in allowed:
                assert await require_role(services, bearer(token), role) is not None
            else:
                with pytest.raises(Forbidden):
                    await require_role(services, bearer(token), role)
    # A job's token: its own job only, for reading, writing and (cancel) admin actions on it.
    for role in auth.ROLES:
        principal = await require_role(services, bearer(job_token), role, own_job=job.id)
        assert principal is not None and principal.job_id == job.id and principal.grant() is None
        with pytest.raises(Forbidden):
            await require_role(services, bearer(job_token), role, own_job=job.id + 1)
        with pytest.raises(Forbidden):
            await require_role(services, bearer(job_token), role)


@BACKENDS
@pytest.mark.services(auth="tokens", auth_recheck=0.2, session_ttl=60)
async def test_sessions_follow_their_token(services: Services) -> None:
    token, row = await auth.create_token(services.engine, "s", "read", 30)
    cookie, found = await services.access.sign_in(token)
    assert found.token.id == row.id
    assert row.expires_ms is not None and found.expires_ms == row.expires_ms  # capped by it
    principal = await require_role(services, Credentials(session=cookie), "read")
    assert principal is not None and principal.session_id == found.id
    # A change from another site may not use the cookie; a read may.
    with pytest.raises(Forbidden):
        await require_role(services, Credentials(session=cookie, cross_site=True), "read")
    with pytest.raises(Unauthorized):
        await require_role(services, Credentials(session="made-up"), "read")
    await auth.revoke_token(services.engine, "s")
    await asyncio.sleep(0.25)  # the cached lookup runs out
    with pytest.raises(Unauthorized):  # an ended session is no credential
        await require_role(services, Credentials(session=cookie), "read")
    with pytest.raises(Forbidden):
        await services.access.sign_in(token)


@BACKENDS
@pytest.mark.services(auth="tokens", auth_recheck=0.2)
async def test_the_watch_lapses_grants_with_the_reason(services: Services) -> None:
    hub = services.hub
    kept, _ = await auth.create_token(services.engine, "kept", "read", None)
    gone, gone_row = await auth.create_token(services.engine, "gone", "read", None)
    kept_row = await services.access.token(auth.hash_token(kept))
    assert kept_row is not None
    cookie, session = await services.access.sign_in(kept)
    grants = {
        "kept": Grant(kept_row.id, None, None),
        "revoked": Grant(gone_row.id, None, None),
        "expired": Grant(kept_row.id, None, auth.now_ms() - 1),
        "signed_out": Grant(kept_row.id, session.id, session.expires_ms),
    }
    hub.streams.grants.update(grants.values())
    assert await services.access.check_streams(hub) == 1  # only the expiry so far
    await auth.revoke_token(services.engine, "gone")
    await services.access.sign_out(cookie)
    assert await services.access.check_streams(hub) == 2
    assert {name: grant.lapsed for name, grant in grants.items()} == {
        "kept": None,
        "revoked": "revoked",
        "expired": "expired",
        "signed_out": "signed_out",
    }
    hub.streams.grants.clear()


@pytest.mark.services(auth="tokens", auth_recheck=60)
async def test_lookups_are_cached_misses_too(services: Services) -> None:
    digest = auth.hash_token("lsk_unknown")
    assert await services.access.token(digest) is None
    token, _ = await auth.create_token(services.engine, "late", "read", None)
    # Cached for the recheck interval: a miss stays a miss, a hit needs no query.
    assert await services.access.token(digest) is None
    found = await services.access.token(auth.hash_token(token))
    assert found is not None
    await auth.revoke_token(services.engine, "late")
    assert await services.access.token(auth.hash_token(token)) == found
    services.access.forget()
    refreshed = await services.access.token(auth.hash_token(token))
    assert refreshed is not None and refreshed.revoked_ms is not None


def test_the_log_filter_hides_secrets() -> None:
    record = logging.LogRecord(
        "x",
        logging.WARNING,
        __file__,
        1,
        "headers %s and %s, cookie logstream_session=abc123; token lsk_Zz-9 and Bearer xyz",
        ({"authorization": "Bearer s3cret"}, [(b"Authorization", b"Bearer raw")]),
        None,
    )
    auth.RedactSecrets().filter(record)
    message = record.getMessage()
    for secret in ("s3cret", "raw", "abc123", "lsk_Zz-9", "xyz"):
        assert secret not in message, message
    assert "[hidden]" in message
