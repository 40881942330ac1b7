"""The open streams of this process: how many there are, and the signal that they must end.

Shared by the log tails (tail.py) and the lifecycle feed (events.py), so shutdown can tell
every stream to say goodbye and wait until they have.
"""

from __future__ import annotations

import asyncio


class Streams:
    """A count of open streams and a closing signal, set once when shutdown begins."""

    def __init__(self) -> None:
        self.count = 0
        self._closing: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Create the closing signal on the running loop (not at import: no loop there)."""
        self._closing = asyncio.get_running_loop().create_future()

    @property
    def closing_future(self) -> asyncio.Future[None]:
        """Resolved when shutdown begins; streams wait on it beside their own wake-ups."""
        assert self._closing is not None, "streams not started"
        return self._closing

    @property
    def closing(self) -> bool:
        """True once shutdown began."""
        return self._closing is not None and self._closing.done()

    def close(self) -> None:
        """Shutdown begins: resolve the signal (idempotent)."""
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
