"""Tokens: creating, hashing and checking them. Framework-free, so both HTTP fronts share it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from logstream.server.errors import Forbidden, NotFound, Unauthorized

if TYPE_CHECKING:
    from logstream.server.services import Services


def new_token() -> str:
    """A fresh random write token (shown once; only its hash is stored)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


def is_runner(svc: Services, token: str) -> bool:
    """True when `token` is the configured runner token (compared in constant time)."""
    runner = svc.settings.runner_token
    return runner is not None and hmac.compare_digest(token.encode(), runner.encode())


def check_runner(svc: Services, authorization: str | None) -> None:
    """Creating a job needs the runner token, when one is configured."""
    if svc.settings.runner_token is None:
        return
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("creating a job needs 'Authorization: Bearer <runner token>'")
    if not is_runner(svc, token):
        raise Forbidden("the runner token is not valid")


async def check_job_token(svc: Services, job_id: int, authorization: str | None) -> None:
    """The job's own token, or the runner token, may write to a job."""
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("this needs 'Authorization: Bearer <job token>'")
    expected = await svc.token_hash(job_id)
    if expected is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    if hmac.compare_digest(hash_token(token), expected) or is_runner(svc, token):
        return
    raise Forbidden(f"the token is not valid for job {job_id}")


async def check_cancel(svc: Services, job_id: int, authorization: str | None) -> None:
    """Who may cancel a job: its own token or the runner token; anyone while the server runs
    open (no runner token: the dashboard's Cancel button needs no token then).

    The one place that decides it, so roles (an admin may cancel) slot in here.
    """
    if svc.settings.runner_token is None:
        if await svc.token_hash(job_id) is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        return
    await check_job_token(svc, job_id, authorization)


async def may_cancel(svc: Services, job_id: int, authorization: str | None) -> bool:
    """Whether check_cancel would let this request through (the dashboard shows the button)."""
    try:
        await check_cancel(svc, job_id, authorization)
    except (Unauthorized, Forbidden, NotFound):
        return False
    return True


def check_metrics(svc: Services, authorization: str | None) -> None:
    """/metrics: the runner token or LOGSTREAM_METRICS_TOKEN when either is set, else open
    (an admin role slots in here)."""
    metrics_token = svc.settings.metrics_token
    if svc.settings.runner_token is None and metrics_token is None:
        return
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("/metrics needs 'Authorization: Bearer <metrics or runner token>'")
    if is_runner(svc, token) or (
        metrics_token is not None and hmac.compare_digest(token.encode(), metrics_token.encode())
    ):
        return
    raise Forbidden("the token may not read /metrics")
