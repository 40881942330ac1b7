"""Hints that a job moved ("job J reached line N", "job J finished") and who hears them.

A hint carries no data: the database is the source of truth, so a lost hint costs latency
(the periodic re-check in `follow.Hub` catches up), never lines. `Broker` is the seam where a
cross-process backend (PostgreSQL LISTEN/NOTIFY) plugs in; `MemoryBroker` serves one process.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Hint:
    """Job `job_id` has `line_count` lines stored; `finished` once it has a final status.

    `event_id` > 0 says the lifecycle feed (/api/events) reached that event.
    """

    job_id: int
    line_count: int
    finished: bool = False
    event_id: int = 0


Listener = Callable[[Hint], None]


class Broker(Protocol):
    """Carries hints from writers to every process's hub."""

    async def start(self) -> None:
        """Open whatever connections the backend needs."""

    async def stop(self) -> None:
        """Close them."""

    async def publish(self, hint: Hint) -> None:
        """Tell every listener (in every process the backend reaches) about `hint`."""

    def listen(self, listener: Listener) -> None:
        """Call `listener` for each hint received."""


class MemoryBroker:
    """Hints within one process: publish calls the listeners directly."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def publish(self, hint: Hint) -> None:
        """Deliver to every listener now; a failing listener does not stop the others."""
        for listener in self._listeners:
            try:
                listener(hint)
            except Exception:  # a hint is only a hint: log, never fail the writer
                log.exception("hint listener failed")

    def listen(self, listener: Listener) -> None:
        """Register `listener`."""
        self._listeners.append(listener)
