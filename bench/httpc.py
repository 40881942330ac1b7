"""A minimal keep-alive HTTP/1.1 client on raw asyncio streams, and a chunked-body decoder.

Cheaper per request than a general client, so the load generator is not what limits the figures.
Only what the bench needs: Content-Length and chunked answers, JSON bodies.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any


class HttpError(Exception):
    """An unexpected answer."""


class Dechunker:
    """Incremental decoder of a chunked transfer-encoded body; feed() returns the payload."""

    def __init__(self) -> None:
        self.raw = b""
        self.remaining = 0  # payload bytes left in the current chunk
        self.skip = 0  # bytes of the CRLF after a chunk still to skip
        self.done = False

    def feed(self, data: bytes) -> bytes:
        raw = self.raw + data if self.raw else data
        out: list[bytes] = []
        pos, n = 0, len(raw)
        while pos < n and not self.done:
            if self.remaining:
                take = min(self.remaining, n - pos)
                out.append(raw[pos : pos + take])
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.skip = 2
                continue
            if self.skip:
                step = min(self.skip, n - pos)
                pos += step
                self.skip -= step
                continue
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:
                self.done = True  # trailers (none) and the final CRLF are ignored
                pos = n
                break
            self.remaining = size
        self.raw = raw[pos:] if pos < n else b""
        if len(out) == 1:
            return out[0]
        return b"".join(out)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (without the final CRLFCRLF)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"not an HTTP/1.x answer: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(parts[1]), headers


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        local_host: str | None = None,
        cafile: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.timeout = timeout  # for connecting and for each whole answer
        self.host = host
        self.port = port
        self.local_host = local_host
        self.cafile = cafile  # set: TLS (ALPN http/1.1) trusting this CA
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.authority = f"{host}:{port}".encode()

    async def connect(self) -> HttpConnection:
        kwargs: dict[str, Any] = {"limit": 1 << 22}
        if self.local_host:
            kwargs["local_addr"] = (self.local_host, 0)
        if self.cafile:
            context = ssl.create_default_context(cafile=self.cafile)
            context.set_alpn_protocols(["http/1.1"])
            kwargs["ssl"] = context
            kwargs["server_hostname"] = self.host
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, **kwargs), self.timeout
        )
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (TimeoutError, OSError):
                pass
            self.writer = None

    def build(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        """The request's bytes (so a caller can stamp the time right before sending)."""
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.authority]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}".encode())
        if body or method in ("POST", "PUT"):
            head.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    def send(self, request: bytes) -> None:
        assert self.writer is not None
        self.writer.write(request)

    async def response(self) -> tuple[int, bytes]:
        """Read one whole answer: (status, body)."""
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, headers = parse_head(head[:-4])
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            dechunker = Dechunker()
            parts = []
            while not dechunker.done:
                data = await self.reader.read(1 << 20)
                if not data:
                    raise HttpError("connection closed inside a chunked body")
                parts.append(dechunker.feed(data))
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def answer(self, timeout: float = 30.0) -> tuple[int, bytes]:
        """The next whole answer (see response), within `timeout` seconds."""
        return await asyncio.wait_for(self.response(), timeout)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        self.send(self.build(method, path, body, headers))
        return await self.answer(self.timeout)

    async def json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> Any:
        """A JSON request whose answer must have status `expect`; returns the decoded body."""
        hdrs = dict(headers or {})
        body = b""
        if payload is not None:
            body = json.dumps(payload).encode()
            hdrs["Content-Type"] = "application/json"
        status, answer = await self.request(method, path, body, hdrs)
        if status != expect:
            raise HttpError(f"{method} {path}: {status} {answer[:300]!r}")
        return json.loads(answer) if answer else None


async def create_job(conn: HttpConnection, name: str) -> dict[str, Any]:
    """POST /api/jobs; the answer holds `id` and `token`."""
    job: dict[str, Any] = await conn.json("POST", "/api/jobs", {"name": name}, expect=201)
    return job


async def finish_job(conn: HttpConnection, job: dict[str, Any], line_count: int | None) -> Any:
    payload: dict[str, Any] = {"status": "succeeded", "exit_code": 0}
    if line_count is not None:
        payload["line_count"] = line_count
    return await conn.json(
        "POST",
        f"/api/jobs/{job['id']}/finish",
        payload,
        headers={"Authorization": f"Bearer {job['token']}"},
    )


def append_request(
    conn: HttpConnection, job: dict[str, Any], texts: list[str], first: int | None
) -> bytes:
    """The bytes of one POST /api/jobs/{id}/lines (JSON form)."""
    payload: dict[str, Any] = {"lines": texts}
    if first is not None:
        payload["first"] = first
    return conn.build(
        "POST",
        f"/api/jobs/{job['id']}/lines",
        json.dumps(payload).encode(),
        {"Authorization": f"Bearer {job['token']}", "Content-Type": "application/json"},
    )
