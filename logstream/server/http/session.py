"""The HTTP side of credentials, framework-free (both fronts use it): reading them off a
request, the CSRF rule for session cookies, and the cookie itself.

CSRF: a browser attaches the session cookie to any request to this server, including one a
page of another site makes it send. SameSite=Strict already keeps the cookie off cross-site
requests in current browsers; on top of that, a request that changes something (any method but
GET, HEAD and OPTIONS) may use the cookie only if the browser says it comes from this origin:
`Sec-Fetch-Site: same-origin`, or, from a browser that does not send that header, an `Origin`
whose host is the request's `Host`. Anything else (no header at all included: only browsers
use cookies, and they send one of them) is `cross_site`, and `auth.authenticate` refuses the
cookie for it. Bearer tokens need no such check: no browser sends one by itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from logstream.server.auth import SESSION_COOKIE, Credentials

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What the fronts read from a request for credentials (lower case, as ASGI gives them).
HEADERS = (b"authorization", b"cookie", b"origin", b"sec-fetch-site", b"host")


def session_cookie(header: str | None) -> str | None:
    """The session cookie's value in a `Cookie` header, if there is one."""
    if not header or SESSION_COOKIE not in header:
        return None
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == SESSION_COOKIE and value:
            return value.strip('"')
    return None


def same_origin(host: str | None, origin: str | None, fetch_site: str | None) -> bool:
    """Whether a browser says the request comes from a page of this server (see above)."""
    if fetch_site is not None:
        return fetch_site.strip().lower() == "same-origin"
    if not origin or not host or origin.strip() == "null":
        return False
    return urlsplit(origin.strip()).netloc.lower() == host.strip().lower()


def credentials(
    method: str,
    *,
    authorization: str | None,
    cookie: str | None,
    host: str | None,
    origin: str | None,
    fetch_site: str | None,
) -> Credentials:
    """A request's credentials. The cookie is looked at only without an Authorization header."""
    if authorization is not None:
        return Credentials(authorization=authorization)
    session = session_cookie(cookie)
    if session is None:
        return Credentials()
    cross_site = method not in SAFE_METHODS and not same_origin(host, origin, fetch_site)
    return Credentials(session=session, cross_site=cross_site)


def credentials_from_asgi(
    method: str, headers: dict[bytes, str], cookie: str | None
) -> Credentials:
    """Credentials from the raw headers the bare-ASGI front collected (names in HEADERS)."""
    return credentials(
        method,
        authorization=headers.get(b"authorization"),
        cookie=cookie,
        host=headers.get(b"host"),
        origin=headers.get(b"origin"),
        fetch_site=headers.get(b"sec-fetch-site"),
    )


def joined_cookies(raw_headers: list[tuple[bytes, bytes]]) -> str | None:
    """Every `Cookie` header of a request in one (HTTP/2 may split them into several)."""
    found = [value.decode("latin-1") for name, value in raw_headers if name == b"cookie"]
    if not found:
        return None
    return found[0] if len(found) == 1 else "; ".join(found)


def set_cookie(value: str, max_age: int, *, secure: bool) -> str:
    """The Set-Cookie value of a new session: HttpOnly (no script reads it), SameSite=Strict,
    Secure over TLS, for the whole site, gone when the session ends."""
    flags = "; Secure" if secure else ""
    age = max(0, max_age)
    return f"{SESSION_COOKIE}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Strict{flags}"


def clear_cookie(*, secure: bool) -> str:
    """The Set-Cookie value that removes the session cookie."""
    flags = "; Secure" if secure else ""
    return f"{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{flags}"
