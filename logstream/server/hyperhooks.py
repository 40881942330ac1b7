"""Two small hooks into Hypercorn 0.18's asyncio server, for ending what cannot end by itself.

1. Connections are tracked (`open_connections`), so shutdown can abort the ones still open
   when its deadline passes. Hypercorn has no bound of its own there: a connection task
   cancelled after `graceful_timeout` still runs `finally: await send(None)`, which waits on a
   socket nobody reads, and Hypercorn waits for that task with no limit. A connection task
   that ends cancelled during shutdown ends quietly instead: on Python 3.11 asyncio logs a
   `CancelledError` traceback for each (its `client_connected_cb` callback calls
   `task.exception()` on a cancelled task).
2. On HTTP/2 a response the app ended without finishing its body is reset (RST_STREAM,
   INTERNAL_ERROR). Hypercorn forgets such a stream without ending or resetting it, so the
   client waits on it forever (PITFALLS 2); on HTTP/1.1 Hypercorn already closes the
   connection without the final chunk, which every client reports as an incomplete body.

Both patch Hypercorn's classes, so `install` checks the version it was written against and
installs nothing (with a warning) on any other.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from typing import Any

log = logging.getLogger("logstream")

SUPPORTED = "0.18."

_connections: set[Any] = set()
_installed = False


def open_connections() -> int:
    """How many client connections are open now."""
    return len(_connections)


def abort_connections() -> int:
    """Abort (RST) every open client connection; returns how many there were."""
    servers = list(_connections)
    for server in servers:
        server.writer.transport.abort()
    return len(servers)


def install() -> bool:
    """Install both hooks once; False (and a warning) on a Hypercorn they do not fit."""
    global _installed
    if _installed:
        return True
    version = importlib.metadata.version("hypercorn")
    if not version.startswith(SUPPORTED):
        log.warning(
            "hypercorn %s is not %sx: shutdown cannot abort stuck connections and an"
            " interrupted HTTP/2 text stream is not reset",
            version,
            SUPPORTED,
        )
        return False
    import hypercorn.asyncio.run as run_module
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.protocol.h2 import H2Protocol

    run_module.TCPServer = _tracked(TCPServer)  # type: ignore[attr-defined]
    H2Protocol.stream_send = _resetting(H2Protocol.stream_send)  # type: ignore[method-assign]
    _installed = True
    return True


def _tracked(base: Any) -> Any:
    """Hypercorn's TCPServer, registering itself while it runs."""

    class TrackedTCPServer(base):  # type: ignore[misc]
        """One client connection: known to shutdown while open; ends quietly when cancelled."""

        async def run(self) -> None:
            _connections.add(self)
            try:
                await super().run()
            except asyncio.CancelledError:
                if not self.context.terminated.is_set():
                    raise
                # Cancelled by Hypercorn's shutdown: this is the task's outermost frame and the
                # connection is over, so end it as done (see the module docstring).
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            finally:
                _connections.discard(self)

    return TrackedTCPServer


def _resetting(stream_send: Any) -> Any:
    """H2Protocol.stream_send that resets a stream closed before its body was complete."""
    import h2.errors
    import h2.exceptions
    from hypercorn.protocol.events import StreamClosed
    from priority.priority import MissingStreamError

    async def send(self: Any, event: Any) -> None:
        if isinstance(event, StreamClosed):
            buffer = self.stream_buffers.get(event.stream_id)
            # An ended body marks its buffer complete (EndBody); a buffer still open here
            # belongs to a response the app gave up on.
            if buffer is not None and not buffer._complete:
                try:
                    self.connection.reset_stream(
                        event.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR
                    )
                    await self._flush()
                except h2.exceptions.ProtocolError:
                    pass  # the stream or the connection is gone already
                # Empty and complete: the send task drops it (its end_stream fails, as on a
                # stream the client reset), so nothing more is sent on it.
                await buffer.close()
                try:
                    self.priority.unblock(event.stream_id)
                except MissingStreamError:
                    pass
                await self.has_data.set()
        await stream_send(self, event)

    return send
