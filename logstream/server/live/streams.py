"""The open streams of this process: how many there are, the signal that they must end, and
the credentials they were opened with.

Shared by the log tails (tail.py) and the lifecycle feed (events.py), so shutdown can tell
every stream to say goodbye and wait until they have, and the access check (server/auth.py)
can end the streams whose token was revoked or whose session ended.
"""

from __future__ import annotations

import asyncio


class Grant:
    """The credential an open stream was allowed by, while it may lapse (an API token or a
    browser session, not a job token). The access check sets `lapsed` to why it no longer
    holds ("expired", "revoked", "signed_out") and rings the stream's feed; the stream then
    sends `event: signed_out` and ends."""

    __slots__ = ("expires_ms", "job_id", "lapsed", "session_id", "token_id")

    def __init__(
        self, token_id: int | None, session_id: int | None, expires_ms: int | None
    ) -> None:
        self.token_id = token_id
        self.session_id = session_id
        self.expires_ms = expires_ms
        self.job_id: int | None = None  # the job a log stream follows (whose feed to ring)
        self.lapsed: str | None = None


class Streams:
    """A count of open streams, a closing signal set once when shutdown begins, and the grants
    of the open streams that have one."""

    def __init__(self) -> None:
        self.count = 0
        self.grants: set[Grant] = set()
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
