"""Search over a job's whole log, matching the visible text (ANSI escapes stripped).

Two passes: the database returns only the lines that may match (`queries.read_candidates`: the
text contains the query as stored, or holds an escape that could split a visible match), then
each candidate's visible text is checked here. On a 1,000,000-line log with a tenth of the
lines colored, a rare word takes ~0.5 s instead of ~1.4 s reading every line. Queries the
database cannot pre-filter exactly (non-ASCII text ignoring case) read every line. On a
compacted log the first pass tests each chunk's visible text at once (`chunk_matches`).

A regular expression (`?regex=1`) reads every line and runs on RE2 (google-re2): linear in
the text whatever the pattern, so no pattern can backtrack for ever, and it does its work in a
worker thread (RE2 releases the GIL), a page at a time, so the event loop goes on serving.
Even linear, a pattern whose automaton RE2 cannot cache runs at ~10 MB/s, so a scan also
stops after REGEX_SECONDS and says where (`scanned_to`): the client continues from there.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import re2
from sqlalchemy.ext.asyncio import AsyncEngine

from logstream.server.errors import BadRequest
from logstream.server.store import queries
from logstream.server.store.chunks import Decoded

# CSI (colors, cursor moves), OSC (titles, hyperlinks), and the two-byte escapes. None of them
# runs past a line end, so the pattern can be applied to many lines joined by LF at once.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
PAGE = 5000
_LF = re.compile("\n")
# The same escapes in UTF-8 (their bytes are ASCII, and no byte of a multi-byte character is).
_ANSI_BYTES = re.compile(_ANSI.pattern.encode("ascii"))
_LF_BYTES = re.compile(b"\n")
#: How long one regular-expression search may scan before it answers with what it found.
REGEX_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Matching line numbers (at most `limit` of them) and how many lines match in all."""

    count: int
    lines: list[int]
    truncated: bool
    #: The last line looked at, when the scan stopped early (REGEX_SECONDS) with lines left.
    scanned_to: int | None = None


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


def compile_regex(pattern: str, case: bool) -> Any:
    """`pattern` as an RE2 expression over one line's visible text, ignoring case unless
    `case`; 400 (field q) for one RE2 refuses (a syntax error, a back-reference, too big).

    `^` and `$` match at the line's start and end; `\\A` and `\\z` are refused (a page of
    lines is searched as one text), and nothing matches across lines (never_nl).
    """
    if _text_anchor(pattern):
        raise BadRequest(r"use ^ and $ (each line's start and end), not \A or \z", field="q")
    options = re2.Options()
    options.never_nl = True
    options.case_sensitive = case
    options.log_errors = False  # RE2 would write each refused pattern to the server's stderr
    try:
        regex = re2.compile("(?m)" + pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise BadRequest(
            f"q is not a regular expression RE2 accepts: {detail}", field="q"
        ) from None
    finally:
        # re2 keeps 128 compiled patterns, each with up to 8 MiB of automaton: a request's
        # pattern lives only as long as its request.
        re2.purge()
    return regex


def _text_anchor(pattern: str) -> bool:
    """Whether `pattern` holds \\A or \\z (an escaped backslash before A or z does not count)."""
    index = pattern.find("\\")
    while index >= 0:
        if pattern[index + 1 : index + 2] in ("A", "z"):
            return True
        index = pattern.find("\\", index + 2)
    return False


async def search_regex(
    engine: AsyncEngine,
    job_id: int,
    regex: Any,
    *,
    limit: int,
    after: int = 0,
    seconds: float = REGEX_SECONDS,
) -> SearchResult:
    """The lines after line `after` whose visible text `regex` (from compile_regex) matches:
    the first `limit` numbers and how many in all, scanning for at most `seconds`."""
    deadline = time.monotonic() + seconds
    found: list[int] = []
    count = 0
    while True:
        async with engine.connect() as conn:
            rows = await queries.read_lines(conn, job_id, after, PAGE)
        if not rows:
            break
        for no in await asyncio.to_thread(matching_regex, rows, regex):
            count += 1
            if len(found) < limit:
                found.append(no)
        after = rows[-1][0]
        if len(rows) < PAGE:
            break  # the end of what is stored
        if time.monotonic() > deadline:
            return SearchResult(count, found, count > len(found), scanned_to=after)
    return SearchResult(count=count, lines=found, truncated=count > len(found))


def matching_regex(rows: Sequence[Sequence[Any]], regex: Any) -> list[int]:
    """The numbers of the (no, ts, text) rows whose visible text `regex` matches.

    As in `matching`, a page is one text (lines joined by LF), here in UTF-8 (RE2 works on
    bytes, and re2's str calls re-encode the whole text each time); after a hit the search
    goes on at the next line, so a line costs one call however often it matches.
    """
    page = "\n".join([row[2] for row in rows])
    if "\x1b" in page:
        page = _ANSI.sub("", page)
    data = page.encode("utf-8", "replace")
    hits: list[int] = []
    match = regex.search(data)
    if match is None:
        return hits
    ends = [m.start() for m in _LF_BYTES.finditer(data)]  # ends[i]: the LF after line i
    while match is not None:
        line = bisect.bisect_left(ends, match.start())
        hits.append(rows[line][0])
        if line >= len(ends):
            break
        match = regex.search(data, ends[line] + 1)
    return hits
