"""The access check of a Quart request: its credentials, and `require` for the routes."""

from __future__ import annotations

from quart import current_app, request

from logstream.server.auth import Credentials, Principal, require_role
from logstream.server.http import session
from logstream.server.services import Services


def services() -> Services:
    """The running app's services."""
    return current_app.extensions["logstream"]  # type: ignore[no-any-return]


def request_credentials() -> Credentials:
    """The current request's bearer token or session cookie (see http/session.py)."""
    headers = request.headers
    cookies = headers.getlist("Cookie")
    return session.credentials(
        request.method,
        authorization=headers.get("Authorization"),
        cookie="; ".join(cookies) if cookies else None,
        host=headers.get("Host"),
        origin=headers.get("Origin"),
        fetch_site=headers.get("Sec-Fetch-Site"),
    )


async def require(
    role: str, *, own_job: int | None = None, even_open: bool = False
) -> Principal | None:
    """`auth.require_role` for the current request (401/403 as the API's JSON errors)."""
    return await require_role(
        services(), request_credentials(), role, own_job=own_job, even_open=even_open
    )


def secure_cookies() -> bool:
    """Whether the session cookie gets `Secure`: over TLS, unless LOGSTREAM_SECURE_COOKIES says."""
    setting = services().settings.secure_cookies
    return request.scheme == "https" if setting is None else setting
