"""The two hot routes served as bare ASGI middleware around Quart's own ASGI app.

Runners append in small batches, often one line per request, so what the framework costs per
request is what an append costs: an empty Quart route costs about twice a bare ASGI callable
(`python -m bench.run ingest` measures both in the same run). And every viewer holds a log
stream open for as long as it watches: through Quart each one would also keep a request
object, its context and two extra tasks, and each chunk written would pass one more layer. So
`POST /api/jobs/{id}/lines` and `GET /api/jobs/{id}/log` are answered here (`app.asgi_app =
FastPaths(app.asgi_app, ...)`, Quart's idiom for middleware, so Hypercorn and the test client
take the same path); every other request goes on to Quart.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from logstream.protocol import JOB_CANCELING, JOB_RUNNING
from logstream.server.auth import Credentials
from logstream.server.errors import ApiError, BadRequest
from logstream.server.http import session
from logstream.server.http.core import (
    answer_headers,
    append_core,
    drain_limited,
    error_answer,
    json_bytes,
    open_log,
    parse_job_id,
    read_limited,
)
from logstream.server.http.guard import Guard
from logstream.server.live.tail import StreamCut
from logstream.server.services import Services

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ROUTE = re.compile(r"/api/jobs/([^/]+)/(lines|log)")  # the id is checked by parse_job_id


ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# On every answer: a browser must not guess a type other than the one sent (an error's JSON
# or a log's text rendered as HTML).
NOSNIFF = (b"x-content-type-options", b"nosniff")

JOB_STATUS = {status: status.encode("ascii") for status in (JOB_RUNNING, JOB_CANCELING)}


class FastPaths:
    """ASGI middleware: the checks of guard.py for every request, then append and log stream
    directly, everything else on to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        services: Callable[[], Services | None],
        guard: Guard,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.services = services
        self.guard = guard
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the two hot routes; pass everything else (and lifespan) to the app."""
        if scope["type"] == "http":
            refusal = self.guard.check(scope)
            if refusal is not None:
                await _refuse(refusal, scope, receive, send, self.max_body_bytes)
                return
            match = ROUTE.fullmatch(scope["path"])
            services = self.services()
            if match is not None and services is not None:
                method = scope["method"]
                if method == "POST" and match[2] == "lines":
                    await _append(services, match[1], scope, receive, send)
                    return
                if method in ("GET", "HEAD") and match[2] == "log":
                    await _log(services, match[1], scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """Answer a request the guard refused, after draining its body (see drain_limited)."""
    length = _headers(scope, b"content-length").get(b"content-length")
    declared = int(length) if length is not None and length.isdigit() and len(length) < 19 else None
    await drain_limited(_Body(receive).chunks(), declared, limit)
    await _answer(send, error.status, error.body())


def _headers(scope: Scope, *names: bytes) -> dict[bytes, str]:
    """The first value of each wanted request header (names in lower case)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _credentials(scope: Scope, headers: dict[bytes, str]) -> Credentials:
    """The request's token or session cookie (every Cookie header: HTTP/2 may split it)."""
    cookie = headers.get(b"cookie")
    if cookie is not None and headers.get(b"authorization") is None:
        cookie = session.joined_cookies(scope["headers"])
    return session.credentials_from_asgi(scope["method"], headers, cookie)


def _query(scope: Scope) -> dict[str, str]:
    """The query parameters, first value of each (as Quart's request.args.get gives)."""
    query = scope.get("query_string", b"")
    if not query:
        return {}
    parsed = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], data: bytes
) -> None:
    """A response whose body is all here: headers with its length, then the body."""
    headers.append((b"content-length", str(len(data)).encode("ascii")))
    headers.append(NOSNIFF)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _answer(send: Send, status: int, payload: dict[str, Any]) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer_headers(status, payload).items()
    ]
    await _send_whole(send, status, headers, json_bytes(payload))


async def _log(services: Services, job_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    await _while_connected(receive, lambda: _log_answer(services, job_id, scope, send))


async def _log_answer(services: Services, job_id: str, scope: Scope, send: Send) -> None:
    headers = _headers(scope, b"accept", b"last-event-id", *session.HEADERS)
    try:
        answer = await open_log(
            services,
            parse_job_id(job_id),
            accept=headers.get(b"accept"),
            last_event_id=headers.get(b"last-event-id"),
            args=_query(scope),
            credentials=_credentials(scope, headers),
        )
    except Exception as error:
        await _answer(send, *error_answer(error))
        return
    raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers.items()
    ]
    if answer.content_type is not None:
        raw_headers.append((b"content-type", answer.content_type.encode("latin-1")))
    if answer.body is None:
        await _send_whole(send, answer.status, raw_headers, b"")
        return
    if scope["method"] == "HEAD":
        # What a GET would get, without its body: the stream is not started (a stream never
        # ends by itself, so sending it would leave the HEAD and its connection hanging).
        await answer.body.aclose()  # type: ignore[attr-defined]
        raw_headers.append(NOSNIFF)
        await send({"type": "http.response.start", "status": answer.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": b""})
        return
    raw_headers.append(NOSNIFF)
    await _send_stream(answer.status, raw_headers, answer.body, send)


async def _stream(
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: AsyncIterator[bytes],
    receive: Receive,
    send: Send,
) -> None:
    """Send a streamed body until it ends or the client leaves."""
    await _while_connected(receive, lambda: _send_stream(status, headers, body, send))


async def _while_connected(receive: Receive, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` until it ends or the client leaves, whichever comes first.

    The server tells the app a client left by `http.disconnect` on receive(); a watcher waits
    for it and cancels this task, which ends a stream's generator (its `finally` releases the
    feed) or a store call still waiting for the pool. Only that cancellation is absorbed here;
    any other (server shutdown) goes on. The watcher gets a turn of the loop before `work`
    starts, so a stream the client reset at once (HTTP/2 rapid reset, see server/h2guard.py)
    ends there without asking the store anything.
    """
    task = asyncio.current_task()
    assert task is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                left = True
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.sleep(0)  # the watcher's turn: a disconnect already queued cancels here
        await work()
    except asyncio.CancelledError:
        if not left:
            raise
        task.uncancel()
    finally:
        watcher.cancel()


async def _send_stream(
    status: int, headers: list[tuple[bytes, bytes]], body: AsyncIterator[bytes], send: Send
) -> None:
    """Send a streamed body until it ends (a client that leaves cancels it: _while_connected).

    A body cut short (StreamCut) is left unfinished: on HTTP/1.1 Hypercorn then closes the
    connection without the final chunk, on HTTP/2 the stream is reset (server/hyperhooks.py),
    so the client sees an error, not a complete log.
    """
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        try:
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except StreamCut:
            return
        except Exception:
            # Streams never raise (tail.follow); if one did, end the body anyway: an
            # unfinished HTTP/2 stream is neither ended nor reset, and the browser would hang.
            log.exception("stream body failed")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await body.aclose()  # type: ignore[attr-defined]


class _Body:
    """The request body as ASGI delivers it, for core.read_limited and core.drain_limited."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.done = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """What is left of the body, chunk by chunk (each chunk is received once)."""
        while not self.done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.done = True
                raise BadRequest("the client went away before the body ended")
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk


async def _append(
    services: Services, job_id: str, scope: Scope, receive: Receive, send: Send
) -> None:
    headers = _headers(
        scope, b"content-type", b"content-length", b"content-encoding", *session.HEADERS
    )
    length = headers.get(b"content-length")
    declared = int(length) if length is not None and length.isdigit() and len(length) < 19 else None
    limit = services.settings.max_body_bytes
    body = _Body(receive)
    try:
        payload = await append_core(
            services,
            parse_job_id(job_id),
            credentials=_credentials(scope, headers),
            content_type=headers.get(b"content-type"),
            content_encoding=headers.get(b"content-encoding"),
            first_arg=_query(scope).get("first"),
            read_body=lambda: read_limited(body.chunks(), declared, limit),
        )
        status = 200
    except Exception as error:
        status, payload = error_answer(error)
    if status >= 400:
        await drain_limited(body.chunks(), declared, limit)
        await _answer(send, status, payload)
        return
    # The job's state for the runner, as GitLab's runner API says it: `canceling` = stop.
    answer = [
        (b"content-type", b"application/json"),
        (b"job-status", JOB_STATUS[payload["job_status"]]),
    ]
    await _send_whole(send, status, answer, json_bytes(payload))
