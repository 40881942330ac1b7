"""Search over a job's whole log, matching the visible text (ANSI escapes stripped)."""

from __future__ import annotations

import dataclasses
import re

from sqlalchemy.ext.asyncio import AsyncEngine

from . import store

# CSI (colors, cursor moves), OSC (titles, hyperlinks), and the two-byte escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"
)
PAGE = 5000


def visible(text: str) -> str:
    """The text without escape sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Matching line numbers (at most `limit` of them) and how many lines match in all."""

    count: int
    lines: list[int]
    truncated: bool


async def search_log(
    engine: AsyncEngine, job_id: int, query: str, *, case: bool, limit: int, after: int = 0
) -> SearchResult:
    """Scan the job's lines after line `after` in pages (one short connection each) for
    `query`: the first `limit` matching line numbers, and how many match after `after`."""
    needle = query if case else query.lower()
    found: list[int] = []
    count = 0
    while True:
        async with engine.connect() as conn:
            rows = await store.read_lines(conn, job_id, after, PAGE)
        if not rows:
            break
        for no, _ts, text in rows:
            shown = visible(text)
            if needle in (shown if case else shown.lower()):
                count += 1
                if len(found) < limit:
                    found.append(no)
        after = rows[-1][0]
    return SearchResult(count=count, lines=found, truncated=count > len(found))
