"""Checks every request passes before either front sees it: the Host allow-list, the size of
the request head, the HTTP version. Framework-free; asgi.FastPaths runs it for all requests.

Host: a page on another site can make a browser resolve its own name to 127.0.0.1 (DNS
rebinding) and then read whatever the server on loopback answers, as same-origin. The browser
still sends `Host: attacker.example`, so a server that answers only its own names is safe.
`LOGSTREAM_ALLOWED_HOSTS` lists them (comma-separated; `*` allows any, `*.example.com` any
name under example.com). Unset, a server bound to loopback allows only loopback names and
addresses, and a server bound elsewhere allows any Host (it is reached by names only its
operator knows; the start-up log says so).

Head sizes: Hypercorn's h11 limit (`h11_max_incomplete_size`) holds only while a request head
is incomplete: a head that arrives whole in one read (up to 64 KiB) is parsed and served
however many headers or query parameters it holds. So the parsed head is checked here too.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

from logstream.server.errors import (
    ApiError,
    BadHost,
    HeadersTooLarge,
    TargetTooLong,
    VersionNotSupported,
)

# The limits of a request head: what browsers and runners send fits with room to spare.
MAX_TARGET_BYTES = 8 * 1024  # path and query
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024  # names and values together (Hypercorn's h11 limit)
# Versions Hypercorn's protocols report: h11 gives "1.0"/"1.1" (and whatever digit.digit a
# request line claims, "2.0" too), h2 gives "2".
HTTP_VERSIONS = frozenset({"1.0", "1.1", "2"})

LOOPBACK_NAMES = ("localhost", "*.localhost")  # RFC 6761: browsers resolve these to loopback


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name or address of a Host header value, without its port, lower case; IPv6
    without its brackets; without a final dot."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, colon, port = value.rpartition(":")
    if colon and (port.isdigit() or not port) and ":" not in name:
        value = name
    return value.rstrip(".")


@dataclasses.dataclass(frozen=True)
class HostRule:
    """Which Host names a server answers: None allows any."""

    exact: frozenset[str] | None
    suffixes: tuple[str, ...] = ()
    loopback: bool = False

    @classmethod
    def from_settings(cls, allowed: str | None, bind_host: str) -> HostRule:
        """The rule for LOGSTREAM_ALLOWED_HOSTS (`allowed`) on a server bound to `bind_host`."""
        if allowed is None or not allowed.strip():
            if is_loopback(bind_host):
                return cls(frozenset(), loopback=True)
            return cls(None)
        return cls.parse(allowed.split(","))

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> HostRule:
        exact: set[str] = set()
        suffixes: list[str] = []
        for raw in patterns:
            pattern = raw.strip().lower()
            if not pattern:
                continue
            if pattern == "*":
                return cls(None)
            if pattern.startswith("*."):
                suffixes.append(pattern[1:].rstrip("."))
            else:
                exact.add(pattern.strip("[]").rstrip("."))
        return cls(frozenset(exact), tuple(suffixes))

    @property
    def allows_any(self) -> bool:
        return self.exact is None

    def allows(self, header: str) -> bool:
        """True when a request with this Host header value may be answered."""
        if self.exact is None:
            return True
        name = host_name(header)
        if name in self.exact or (self.suffixes and name.endswith(self.suffixes)):
            return True
        return self.loopback and is_loopback(name)


class Guard:
    """The checks of guard.py, for one server's settings."""

    def __init__(self, rule: HostRule) -> None:
        self.rule = rule

    def check(self, scope: MutableMapping[str, Any]) -> ApiError | None:
        """The refusal for this request's head, or None when it may go on."""
        if scope.get("http_version") not in HTTP_VERSIONS:
            return VersionNotSupported(
                "this server speaks HTTP/1.0, HTTP/1.1 and HTTP/2 (over TLS, or h2c by"
                " prior knowledge or Upgrade)"
            )
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS:
            return HeadersTooLarge(f"a request may carry at most {MAX_HEADERS} headers")
        size = 0
        host = None
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"host" and host is None:
                host = value
        if size > MAX_HEADER_BYTES:
            return HeadersTooLarge(f"the request headers exceed {MAX_HEADER_BYTES} bytes")
        if len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) > (
            MAX_TARGET_BYTES
        ):
            return TargetTooLong(f"the request target exceeds {MAX_TARGET_BYTES} bytes")
        # A request without Host (HTTP/1.0) does not come from a browser: only browsers can
        # be turned against the server by DNS rebinding, and they always send it.
        if host and not self.rule.allows(host.decode("latin-1")):
            return BadHost(
                "this server does not answer for that Host; list it in LOGSTREAM_ALLOWED_HOSTS",
                host=host.decode("latin-1")[:100],
            )
        return None
