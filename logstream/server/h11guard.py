"""A time limit on HTTP/1.1 request heads, patched into Hypercorn's h11 protocol (0.17-0.18).

Hypercorn bounds a connection waiting for its next request only by `keep_alive_timeout` (75 s
here, above load balancers' idle timeouts) and has no limit on how long a request head may
take to arrive once it has begun: a client sending its headers a byte a second held its
connection for the whole 75 s and more. Its `read_timeout` is no answer (it also cuts off
EventSource streams, which send nothing after their request: PITFALLS 5). So a head that has
begun must end within HEAD_TIMEOUT seconds, as in other servers (nginx's
client_header_timeout, Apache's RequestReadTimeout), or the connection is answered 408 and
closed. Waiting for a request without sending any of it stays governed by keep_alive_timeout.

The patch wraps `H11Protocol.handle` (data arriving) and `H11Protocol._create_stream` (a head
complete) and is installed only on the Hypercorn versions whose protocol it was written
against; on others it logs that it is not and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from typing import Any

import h11
from hypercorn.events import Closed, RawData
from hypercorn.protocol.h11 import H11Protocol

log = logging.getLogger("logstream")

SUPPORTED = ("0.17.", "0.18.")
HEAD_TIMEOUT = 10.0
_BODY = b'{"error":"request_timeout","message":"the request head took too long to arrive"}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"x-content-type-options: nosniff\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
    % (len(_BODY), _BODY)
)

_installed: dict[str, Any] = {}
_TIMER = "_logstream_head_timer"


def install(timeout: float = HEAD_TIMEOUT) -> bool:
    """Patch Hypercorn's H11Protocol (once per process); True when the patch is in place."""
    global HEAD_TIMEOUT
    HEAD_TIMEOUT = timeout
    if _installed:
        return True
    found = version("hypercorn")
    if not found.startswith(SUPPORTED) or not all(
        hasattr(H11Protocol, name) for name in ("handle", "_create_stream")
    ):
        log.warning("Hypercorn %s: no time limit on request heads (written for 0.17-0.18)", found)
        return False
    handle = H11Protocol.handle
    create_stream = H11Protocol._create_stream

    async def guarded_handle(self: H11Protocol, event: Any) -> None:
        if isinstance(event, RawData):
            if (
                self.stream is None
                and getattr(self, _TIMER, None) is None
                and isinstance(self.connection, h11.Connection)
                and event.data
            ):
                loop = asyncio.get_running_loop()
                setattr(self, _TIMER, loop.call_later(HEAD_TIMEOUT, _expire, self))
        elif isinstance(event, Closed):
            _disarm(self)
        try:
            await handle(self, event)
        except BaseException:
            # Among others H2ProtocolAssumedError: an h2c prior-knowledge preface makes
            # Hypercorn hand the connection to its HTTP/2 protocol. The timer must not outlive
            # this protocol, or it closes a healthy HTTP/2 connection HEAD_TIMEOUT later.
            _disarm(self)
            raise

    async def guarded_create_stream(self: H11Protocol, request: h11.Request) -> None:
        _disarm(self)
        await create_stream(self, request)

    H11Protocol.handle = guarded_handle  # type: ignore[method-assign]
    H11Protocol._create_stream = guarded_create_stream  # type: ignore[method-assign]
    _installed.update(handle=handle, create_stream=create_stream)
    return True


def _disarm(protocol: H11Protocol) -> None:
    timer = getattr(protocol, _TIMER, None)
    if timer is not None:
        timer.cancel()
        setattr(protocol, _TIMER, None)


def _expire(protocol: H11Protocol) -> None:
    setattr(protocol, _TIMER, None)
    if protocol.stream is not None:  # a request began meanwhile
        return
    task = asyncio.ensure_future(_close(protocol))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Future[None]] = set()


async def _close(protocol: H11Protocol) -> None:
    """Answer 408 past h11 (whose state machine has no response before a request) and close."""
    try:
        await protocol.send(RawData(data=REQUEST_TIMEOUT))
        await protocol.send(Closed())
    except Exception:  # the connection went away meanwhile: nothing to answer
        log.debug("closing a connection whose request head timed out failed", exc_info=True)
