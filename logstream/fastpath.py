"""The append route served as bare ASGI, in front of the Quart app.

Runners append in small batches, often one line per request, so what the framework costs per
request is what an append costs: an empty Quart route on Hypercorn takes about 550 us of CPU
per request here, a bare ASGI callable under 300 us (`python -m bench.run ingest` measures
both). `POST /api/jobs/{id}/lines` is therefore answered here, with the same core as the Quart
route (`api.append_core`: same checks, same errors, same JSON); every other request, and this
path with any other method, goes to Quart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.exc import DBAPIError

from .api import DRAIN_FACTOR, DRAIN_SECONDS, append_core
from .errors import ApiError, BadRequest, TooLarge, Unavailable
from .services import Services

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

APPEND_PATH = re.compile(r"/api/jobs/([0-9]{1,30})/lines")


class FastPaths:
    """ASGI app: the append route directly, everything else through `app` (the Quart app)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = APPEND_PATH.fullmatch(scope["path"])
            services: Services | None = self.app.extensions.get("logstream")
            if match is not None and services is not None:
                await _append(services, int(match[1]), scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Body:
    """The request body, read on demand, at most `limit` bytes."""

    def __init__(self, receive: Receive, declared: int | None, limit: int) -> None:
        self.receive = receive
        self.declared = declared
        self.limit = limit
        self.done = False

    async def read(self) -> bytes:
        limit = self.limit
        if self.declared is not None and self.declared > limit:
            raise TooLarge(f"the request body is larger than {limit} bytes", limit=limit)
        chunks: list[bytes] = []
        size = 0
        while not self.done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.done = True
                raise BadRequest("the client went away before the body ended")
            chunk = message.get("body", b"")
            self.done = not message.get("more_body", False)
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the request body is larger than {limit} bytes",
                                   limit=limit)
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def drain(self) -> None:
        """Receive what is left (bounded) before an error answer: see api._drain_request_body."""
        if self.done or (self.declared is not None and self.declared > self.limit * DRAIN_FACTOR):
            return
        received = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while not self.done:
                    message = await self.receive()
                    received += len(message.get("body", b""))
                    self.done = (message["type"] == "http.disconnect"
                                 or not message.get("more_body", False))
                    if received > self.limit * DRAIN_FACTOR:
                        return
        except TimeoutError:
            pass


async def _append(
    services: Services, job_id: int, scope: Scope, receive: Receive, send: Send
) -> None:
    authorization = content_type = None
    declared: int | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
    query = scope.get("query_string", b"")
    first_arg = None
    if query:
        values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("first")
        first_arg = values[0] if values else None
    body = _Body(receive, declared, services.settings.max_body_bytes)
    try:
        payload = await append_core(
            services,
            job_id,
            authorization=authorization,
            content_type=content_type,
            first_arg=first_arg,
            read_body=body.read,
        )
        status = 200
    except ApiError as error:
        payload, status = error.body(), error.status
    except (DBAPIError, ConnectionError) as error:
        log.warning("store unavailable: %s", error.__class__.__name__, exc_info=error)
        unavailable = Unavailable("the store is unavailable; retry shortly")
        payload, status = unavailable.body(), unavailable.status
    except Exception:
        log.exception("unhandled error in append")
        payload, status = {"error": "internal",
                           "message": "internal error; the request may be retried"}, 500
    if status >= 400:
        await body.drain()
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode("ascii")),
        ],
    })
    await send({"type": "http.response.body", "body": data})
