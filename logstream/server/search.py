"""Search over a job's whole log, matching the visible text (ANSI escapes stripped).

Two passes: the database returns only the lines that may match (`queries.read_candidates`: the
text contains the query as stored, or holds an escape that could split a visible match), then
each candidate's visible text is checked here. On a 1,000,000-line log with a tenth of the
lines colored, a rare word takes ~0.5 s instead of ~1.4 s reading every line. Queries the
database cannot pre-filter exactly (non-ASCII text ignoring case) read every line. On a
compacted log the first pass tests each chunk's visible text at once (`chunk_matches`).
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.server.store import queries
from logstream.server.store.chunks import Decoded

# CSI (colors, cursor moves), OSC (titles, hyperlinks), and the two-byte escapes. None of them
# runs past a line end, so the pattern can be applied to many lines joined by LF at once.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
PAGE = 5000
_LF = re.compile("\n")
# The same escapes in UTF-8 (their bytes are ASCII, and no byte of a multi-byte character is).
_ANSI_BYTES = re.compile(_ANSI.pattern.encode("ascii"))


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
    if not _searchable(needle):  # no line can hold it: nothing to read
        return SearchResult(count=0, lines=[], truncated=False)
    prefilter = queries.can_prefilter(needle, case)
    chunk_test = chunk_matches(needle, case)
    while True:
        async with engine.connect() as conn:
            if prefilter:  # the database skips the lines that cannot match
                rows = await queries.read_candidates(
                    conn, job_id, after, PAGE, needle, case, chunk_test
                )
            else:
                rows = await queries.read_lines(conn, job_id, after, PAGE)
        if not rows:
            break
        for no in matching(rows, needle, case):
            count += 1
            if len(found) < limit:
                found.append(no)
        after = rows[-1][0]
    return SearchResult(count=count, lines=found, truncated=count > len(found))


def chunk_matches(needle: str, case: bool) -> Callable[[Decoded], bool]:
    """Whether some line of a compacted chunk matches `needle` (lower-cased unless `case`):
    the test `matching` makes, on the whole chunk at once (its lines joined by LF, which the
    needle does not hold), on its UTF-8 while that is ASCII. Only matching chunks are then
    split into candidate rows, so a search over a compacted log reads only the chunks it needs
    in Python, even where every chunk holds escapes (which the database's prefilter cannot see
    through)."""
    wanted = needle.encode("utf-8")

    def test(chunk: Decoded) -> bool:
        body = chunk.body
        if b"\x1b" in body:
            body = _ANSI_BYTES.sub(b"", body)
        if case:
            return wanted in body
        if body.isascii():
            return wanted in body.lower()
        return needle in body.decode("utf-8").lower()

    return test


def _searchable(needle: str) -> bool:
    """A text some line can contain: not empty, and no line feed (no line holds one)."""
    return bool(needle) and "\n" not in needle


def matching(rows: Sequence[Sequence[Any]], needle: str, case: bool) -> list[int]:
    """The numbers of the (no, ts, text) rows whose visible text contains `needle` (already
    lower-cased unless `case`).

    A page is searched as one string (its lines joined by LF, which no line contains): escapes
    stripped, lower-cased and scanned by single C-level calls instead of three per line, then
    each hit is mapped back to its line by the LF positions. A line counts once however many
    times it matches.
    """
    if not _searchable(needle):
        return []
    page = "\n".join([row[2] for row in rows])
    if "\x1b" in page:
        page = _ANSI.sub("", page)
    if not case:
        page = page.lower()
    hits: list[int] = []
    pos = page.find(needle)
    if pos < 0:
        return hits
    ends = [m.start() for m in _LF.finditer(page)]  # ends[i]: the LF after line i
    while pos >= 0:
        line = bisect.bisect_left(ends, pos)
        hits.append(rows[line][0])
        if line >= len(ends):
            break
        pos = page.find(needle, ends[line] + 1)
    return hits
