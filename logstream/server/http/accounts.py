"""Sign-in and sessions (`/api/session`) and the tokens API for admins (`/api/tokens`).

A browser signs in by posting an API token (in the body: tokens never travel in URLs) and gets
a session cookie for it; EventSource cannot send an Authorization header, so the cookie is
what lets the dashboard's streams through. The token itself is never stored by the browser.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from logstream.config import SettingsError, parse_duration
from logstream.server import auth
from logstream.server.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from logstream.server.http import session
from logstream.server.http.access import request_credentials, require, secure_cookies, services
from logstream.server.http.core import (
    drain_limited,
    json_bytes,
    parse_json_object,
    read_limited,
    require_json,
)
from logstream.server.store.queries import iso
from logstream.server.store.tokens import TokenRow

bp = Blueprint("accounts", __name__)

# A sign-in body is one token; anything much larger is not one.
MAX_SIGN_IN_BYTES = 4096


@bp.after_request
async def _drain_request_body(response: Response) -> Response:
    """An error answer to a request with a body (a refused sign-in or token creation): drain
    the body first, or Hypercorn closes the keep-alive connection under the client's next
    request (see core.drain_limited)."""
    if response.status_code >= 400 and request.method not in session.SAFE_METHODS:
        await drain_limited(
            request.body, request.content_length, services().settings.max_body_bytes
        )
    return response


def _json(payload: Any, status: int = 200) -> Response:
    response = Response(json_bytes(payload), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


async def _body(limit: int) -> dict[str, Any]:
    require_json(request.headers.get("Content-Type"), request.headers.get("Content-Encoding"))
    raw = await read_limited(request.body, request.content_length, limit)
    return parse_json_object(raw)


def _from_other_site() -> bool:
    """A browser says this request comes from a page of another site (login CSRF)."""
    headers = request.headers
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() not in ("same-origin", "none")
    origin = headers.get("Origin")
    return origin is not None and not session.same_origin(headers.get("Host"), origin, None)


@bp.post("/api/session")
async def sign_in() -> Response:
    """Exchange an API token (`{"token": "..."}`) for a session cookie."""
    if _from_other_site():
        raise Forbidden("sign in from this server's own page", reason="cross_site")
    payload = await _body(MAX_SIGN_IN_BYTES)
    token = payload.get("token")
    if not isinstance(token, str) or not token.strip():
        raise BadRequest("token must be a non-empty string", field="token")
    svc = services()
    cookie, found = await svc.access.sign_in(token.strip())
    max_age = (found.expires_ms - auth.now_ms()) // 1000
    response = _json(
        {
            "signed_in": True,
            "name": found.token.name,
            "role": found.token.role,
            "expires_at": iso(found.expires_ms),
        }
    )
    response.headers["Set-Cookie"] = session.set_cookie(cookie, max_age, secure=secure_cookies())
    return response


@bp.get("/api/session")
async def who_am_i() -> Response:
    """The auth mode, and who the request's credential is (never an error)."""
    svc = services()
    body: dict[str, Any] = {"auth": svc.settings.auth, "signed_in": False}
    credentials = request_credentials()
    try:
        principal = await auth.authenticate(svc, credentials)
    except ApiError:
        principal = None
    if principal is not None:
        body.update(
            signed_in=True,
            name=principal.name,
            role=principal.role,
            expires_at=iso(principal.expires_ms),
            via="session" if principal.session_id is not None else "token",
        )
    return _json(body)


@bp.delete("/api/session")
async def sign_out() -> Response:
    """End the request's session and remove its cookie."""
    credentials = request_credentials()
    if credentials.session is not None:
        if credentials.cross_site:
            raise Forbidden(
                "a request from another site cannot use the session cookie", reason="cross_site"
            )
        await services().access.sign_out(credentials.session)
    response = _json({"signed_in": False})
    response.headers["Set-Cookie"] = session.clear_cookie(secure=secure_cookies())
    return response


# --- tokens (admin, in either auth mode) ------------------------------------------------------


def token_json(row: TokenRow) -> dict[str, Any]:
    """A token's public form: never its hash."""
    return {
        "name": row.name,
        "role": row.role,
        "state": row.state(auth.now_ms()),
        "created_at": iso(row.created_ms),
        "expires_at": iso(row.expires_ms),
        "revoked_at": iso(row.revoked_ms),
    }


@bp.get("/api/tokens")
async def list_tokens() -> Response:
    """Every API token (revoked ones too), oldest first."""
    await require("admin", even_open=True)
    rows = await auth.list_tokens(services().engine)
    return _json({"tokens": [token_json(row) for row in rows]})


@bp.post("/api/tokens")
async def create_token() -> Response:
    """Make an API token: `{"name", "role", "expires": "90d" | null}`; the answer holds it."""
    await require("admin", even_open=True)
    payload = await _body(MAX_SIGN_IN_BYTES)
    name, role, expires = payload.get("name"), payload.get("role"), payload.get("expires")
    if not isinstance(name, str):
        raise BadRequest("name must be a string", field="name")
    if role not in auth.ROLES:
        raise BadRequest("role must be one of " + ", ".join(auth.ROLES), field="role")
    expires_in = None
    if expires is not None:
        if not isinstance(expires, str):
            raise BadRequest("expires must be a duration like 90d, or null", field="expires")
        try:
            expires_in = parse_duration(expires)
        except SettingsError as error:
            raise BadRequest(str(error), field="expires") from None
    try:
        token, row = await auth.create_token(services().engine, name, role, expires_in)
    except auth.TokenNameTaken as error:
        raise Conflict(str(error), reason="name_taken") from None
    except ValueError as error:
        raise BadRequest(str(error), field="name") from None
    body = token_json(row)
    body["token"] = token
    return _json(body, 201)


@bp.delete("/api/tokens/<name>")
async def revoke_token(name: str) -> Response:
    """Revoke a token by name: requests with it fail within seconds, its streams end."""
    await require("admin", even_open=True)
    svc = services()
    row = await auth.revoke_token(svc.engine, name)
    if row is None:
        raise NotFound(f"no live token is named {name!r}")
    svc.access.forget()
    return _json(token_json(row))
