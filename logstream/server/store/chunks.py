"""Compacted lines: the chunk format, the compaction step, and reads that merge chunks and lines.

A finished job's lines are moved, CHUNK_LINES at a time, from `lines` into `chunks` rows (one
transaction per chunk: insert the chunk, delete its lines), so every line is in exactly one of
the two tables at every commit. Every read of lines (`read_rows`, `read_candidate_rows`,
`read_texts`) asks both tables in ONE statement (a UNION ALL), so it sees one snapshot of the
two on both backends, even while a compaction moves lines between them, and merges the rows
in line order.

A chunk holds consecutive lines first_no..last_no (never across a gap: numbers missing in
`lines` stay missing). Its `data` is one codec byte, then the compressed payload: the N
timestamps as little-endian int64, then the N texts as UTF-8 joined by LF (no stored line
holds LF), so a decode is one decompress, one `array` and one `split`.
"""

from __future__ import annotations

import array
import collections
import heapq
import sys
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Integer as IntegerType
from sqlalchemy import LargeBinary, bindparam, cast, null, or_, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from logstream.server.store.driver import Prepared, fetch_raw
from logstream.server.store.models import chunks, lines

# Lines per chunk. Also the most any chunk may ever hold: reads find the chunk holding line
# N+1 by `first_no > N - MAX_CHUNK_LINES` (an index range, not a scan of the job's chunks).
CHUNK_LINES = 1000
MAX_CHUNK_LINES = 1000
# ... and at most about this many characters of text (lines can be 64 K characters long: a
# chunk of such lines stays ~1 MB decoded, not 64 MB).
CHUNK_CHARS = 1 << 20

CODEC_ZLIB = 1
CODEC_ZSTD = 2
CODECS = {"zlib": CODEC_ZLIB, "zstd": CODEC_ZSTD}
ZLIB_LEVEL = 6
ZSTD_LEVEL = 3

Row = tuple[int, int, str]


class Decoded:
    """One chunk, decompressed: its texts as UTF-8 (`body`, joined by LF), and on first use
    its rows (no, ts_ms, text) and its text (a search looks at `body` only, most chunks not
    holding what it looks for)."""

    __slots__ = ("_rows", "_stamps", "_text", "body", "first", "last")

    def __init__(self, first: int, last: int, stamps: bytes, body: bytes) -> None:
        self.first = first
        self.last = last
        self._stamps = stamps
        self.body = body
        self._text: str | None = None
        self._rows: list[Row] | None = None

    @property
    def text(self) -> str:
        """The texts joined by LF."""
        if self._text is None:
            self._text = self.body.decode("utf-8")
        return self._text

    @property
    def rows(self) -> list[Row]:
        """The rows (no, ts_ms, text), in order."""
        if self._rows is None:
            count = self.last - self.first + 1
            stamps = array.array("q")
            stamps.frombytes(self._stamps)
            if sys.byteorder != "little":
                stamps.byteswap()
            texts = self.text.split("\n")
            if len(texts) != count or len(stamps) != count:
                raise ValueError(f"chunk {self.first}-{self.last} holds {len(texts)} lines")
            numbers = range(self.first, self.last + 1)
            self._rows = list(zip(numbers, stamps.tolist(), texts, strict=True))
        return self._rows


def _zstd() -> Any:
    import zstandard  # the server extra's dependency; imported on first use

    return zstandard


_compressors: dict[int, Callable[[bytes], bytes]] = {}
_decompressors: dict[int, Callable[[bytes], bytes]] = {}


def _compressor(codec: int) -> Callable[[bytes], bytes]:
    found = _compressors.get(codec)
    if found is None:
        if codec == CODEC_ZSTD:
            found = _zstd().ZstdCompressor(level=ZSTD_LEVEL).compress
        elif codec == CODEC_ZLIB:
            found = _zlib_compress
        else:
            raise ValueError(f"unknown chunk codec {codec}")
        _compressors[codec] = found
    return found


def _zlib_compress(payload: bytes) -> bytes:
    return zlib.compress(payload, ZLIB_LEVEL)


def _decompressor(codec: int) -> Callable[[bytes], bytes]:
    found = _decompressors.get(codec)
    if found is None:
        if codec == CODEC_ZSTD:
            found = _zstd().ZstdDecompressor().decompress
        elif codec == CODEC_ZLIB:
            found = zlib.decompress
        else:
            raise ValueError(f"unknown chunk codec {codec}")
        _decompressors[codec] = found
    return found


def encode(rows: Sequence[Sequence[Any]], codec: int = CODEC_ZSTD) -> bytes:
    """The `data` of a chunk holding `rows` (consecutive (no, ts_ms, text) rows)."""
    stamps = array.array("q", [row[1] for row in rows])
    if sys.byteorder != "little":
        stamps.byteswap()
    payload = stamps.tobytes() + "\n".join([row[2] for row in rows]).encode("utf-8")
    return bytes([codec]) + _compressor(codec)(payload)


def decode(first: int, last: int, data: bytes) -> Decoded:
    """A chunk from its row in `chunks` (the rows are split out on first use)."""
    payload = _decompressor(data[0])(data[1:])
    size = 8 * (last - first + 1)
    if len(payload) < size:
        raise ValueError(f"chunk {first}-{last} is too short")
    return Decoded(first, last, payload[:size], payload[size:])


# Recently decoded chunks: a viewer's pages of 1,000 from /lines rarely align with chunks, and
# several readers catching up on one log read the same chunks. Keyed by the row's own bytes
# too, so a chunk of a deleted job whose id SQLite reuses is never served from here.
CACHE_CHUNKS = 32
CACHE_BYTES = 16 << 20  # of decompressed text (the rows split from it take about as much again)
_cache: collections.OrderedDict[tuple[int, int, int, bytes], Decoded] = collections.OrderedDict()
_cached_bytes = 0


def decoded(job_id: int, first: int, last: int, data: bytes) -> Decoded:
    """The decoded chunk, from the small LRU cache or decompressed now."""
    global _cached_bytes
    key = (job_id, first, last, data)
    found = _cache.get(key)
    if found is not None:
        _cache.move_to_end(key)
        return found
    found = decode(first, last, data)
    _cache[key] = found
    _cached_bytes += len(found.body)
    while len(_cache) > CACHE_CHUNKS or (_cached_bytes > CACHE_BYTES and len(_cache) > 1):
        _key, gone = _cache.popitem(last=False)
        _cached_bytes -= len(gone.body)
    return found


# --- reads: chunks and lines in one statement ------------------------------------------------


def _lines_part(limit_name: str, *conditions: Any) -> Any:
    return (
        select(lines.c.no.label("no"), lines.c.ts_ms.label("b"), lines.c.text.label("c"))
        .where(lines.c.job_id == bindparam("job_id"), lines.c.no > bindparam("after"), *conditions)
        .order_by(lines.c.no)
        .limit(bindparam(limit_name, type_=IntegerType))
        .subquery()
    )


def _chunks_part(bytes_column: bool) -> Any:
    data = chunks.c.data if bytes_column else cast(null(), LargeBinary)
    return (
        select(chunks.c.first_no.label("no"), chunks.c.last_no.label("b"), data.label("c"))
        .where(
            chunks.c.job_id == bindparam("job_id"),
            chunks.c.first_no > bindparam("low"),
            chunks.c.last_no > bindparam("after"),
        )
        .order_by(chunks.c.first_no)
        .limit(bindparam("chunk_limit", type_=IntegerType))
        .subquery()
    )


def _union(lines_part: Any) -> Any:
    """SQLite: three columns; a chunk's row is (first_no, last_no, data) and its third value is
    bytes where a line's is text (SQLite's columns are typed by value), chunks first.
    PostgreSQL (typed columns): a fourth column holds the chunk's data."""
    chunk = _chunks_part(True)
    return union_all(select(chunk.c.no, chunk.c.b, chunk.c.c), select(lines_part))


def _union_pg(lines_part: Any) -> Any:
    chunk = _chunks_part(True)
    return union_all(
        select(chunk.c.no, chunk.c.b, cast(null(), lines.c.text.type).label("c"), chunk.c.c),
        select(lines_part, cast(null(), LargeBinary).label("d")),
    )


_READ_SQLITE = Prepared(_union(_lines_part("limit")))
_READ_PG = Prepared(_union_pg(_lines_part("limit")))


def _split(rows: Sequence[Sequence[Any]], pg: bool) -> tuple[list[Any], list[Row]]:
    """(chunk rows as (first, last, data), line rows as (no, ts, text)) of a union's result,
    each in line order."""
    if pg:
        found_chunks = [(r[0], r[1], r[3]) for r in rows if r[3] is not None]
        found_lines: list[Row] = [(r[0], r[1], r[2]) for r in rows if r[3] is None]
        # PostgreSQL does not promise the subqueries' order through UNION ALL (nearly free
        # when the rows are in order already).
        found_chunks.sort(key=_first)
        found_lines.sort(key=_first)
        return found_chunks, found_lines
    blobs = [r for r in rows if type(r[2]) is bytes]
    texts: list[Row] = [(r[0], r[1], r[2]) for r in rows if type(r[2]) is not bytes]
    return blobs, texts


def _first(row: Sequence[Any]) -> int:
    return int(row[0])


def merge(
    job_id: int,
    found_chunks: Sequence[Sequence[Any]],
    chunk_limit: int,
    found_lines: list[Row],
    line_limit: int | None,
    after: int,
    limit: int,
    keep: Callable[[Decoded], bool] | None = None,
) -> tuple[list[Row], int | None]:
    """Rows after `after` from both sources, in order, at most `limit`, and never past what
    both sources answered for: a source that hit its LIMIT may hold more rows beyond its last
    one. Returns the rows and that bound (None: both sources were read to their end).
    `keep`: which chunks to take rows from (search skips chunks that cannot match)."""
    bound: int | None = None
    if line_limit is not None and found_lines and len(found_lines) >= line_limit:
        bound = found_lines[-1][0]
    if found_chunks and len(found_chunks) >= chunk_limit:
        last = found_chunks[-1][1]
        bound = last if bound is None else min(bound, last)
    from_chunks: list[Row] = []
    for first, last, data in found_chunks:
        chunk = decoded(job_id, first, last, data)
        if keep is not None and not keep(chunk):
            continue
        rows = chunk.rows
        start = max(0, after + 1 - first)
        stop = len(rows) if bound is None else max(0, min(len(rows), bound - first + 1))
        from_chunks.extend(rows[start:stop] if start or stop < len(rows) else rows)
        if len(from_chunks) >= limit:
            break
    if bound is not None:
        found_lines = [row for row in found_lines if row[0] <= bound]
    if not found_lines:
        out = from_chunks
    elif not from_chunks:
        out = found_lines
    else:
        out = list(heapq.merge(from_chunks, found_lines, key=_first))
    return out[:limit], bound


def _chunk_limit(limit: int) -> int:
    return -(-limit // CHUNK_LINES) + 1  # the chunks that can hold `limit` lines after any N


async def read_rows(
    conn: AsyncConnection, job_id: int, after: int, limit: int
) -> Sequence[Sequence[Any]]:
    """Up to `limit` lines above `after` as (no, ts_ms, text), from chunks and lines: `limit`
    of them unless the log ends first, as before compaction (the viewer's pages count on it).
    A log not compacted comes straight from the driver in one statement, as before; when the
    chunks read hold fewer lines than asked (shorter chunks: long lines, gaps), the rest comes
    from the next statement, on from the last line the first one answered for."""
    pg = conn.dialect.name != "sqlite"
    statement = _READ_PG if pg else _READ_SQLITE
    out: list[Row] = []
    while True:
        want = limit - len(out)
        chunk_limit = _chunk_limit(want)
        rows = await fetch_raw(
            conn,
            statement,
            job_id=job_id,
            after=after,
            low=after - MAX_CHUNK_LINES,
            limit=want,
            chunk_limit=chunk_limit,
        )
        if not rows:
            return out
        if not out and not pg and type(rows[0][2]) is not bytes and type(rows[-1][2]) is not bytes:
            return rows  # not compacted (chunks come first in the union): the hot path, as is
        found_chunks, found_lines = _split(rows, pg)
        if not found_chunks:
            return out + found_lines if out else found_lines
        page, bound = merge(job_id, found_chunks, chunk_limit, found_lines, want, after, want)
        out += page
        if len(out) >= limit or bound is None:
            return out
        after = bound  # every line up to the bound was in this answer


def read_texts(conn: Connection, job_id: int, first: int, last: int) -> list[str]:
    """The texts of the stored lines first..last, in order (the writer's retry check)."""
    texts: list[str] = []
    after = first - 1
    pg = conn.dialect.name != "sqlite"
    while after < last:
        limit = last - after
        chunk_limit = _chunk_limit(limit)
        rows = (_READ_PG if pg else _READ_SQLITE).rows(
            conn,
            job_id=job_id,
            after=after,
            low=after - MAX_CHUNK_LINES,
            limit=limit,
            chunk_limit=chunk_limit,
        )
        found_chunks, found_lines = _split(rows, pg)
        out, _bound = merge(job_id, found_chunks, chunk_limit, found_lines, limit, after, limit)
        if not out:
            break
        texts.extend(text for no, _ts, text in out if no <= last)
        after = out[-1][0]
    return texts


# Characters outside ASCII whose lower case holds an ASCII letter (U+0130 -> "i̇", U+212A -> "k"),
# with that letter: a line with one can match an ASCII search text holding that letter
# case-insensitively without containing the text itself.
LOWER_TO_ASCII = (("\u0130", "i"), ("\u212a", "k"))
SEARCH_CHUNKS = 16  # chunks per statement of a search (16,000 lines)
_CANDIDATES: dict[tuple[bool, bool, tuple[str, ...]], Prepared] = {}


def _like_pattern(needle: str) -> str:
    """`needle` as a LIKE pattern matching any text containing it (escape character /)."""
    escaped = needle.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return "%" + escaped + "%"


def _candidates_statement(pg: bool, case: bool, specials: tuple[str, ...]) -> Prepared:
    key = (pg, case, specials)
    found = _CANDIDATES.get(key)
    if found is None:
        text = lines.c.text
        may = [text.contains("\x1b", autoescape=True)]
        if case or not pg:
            # SQLite's LIKE folds ASCII letters by itself (three times faster than lower() LIKE).
            may.append(text.like(bindparam("pattern"), escape="/"))
        else:
            may.append(text.ilike(bindparam("pattern"), escape="/"))
        may += [text.contains(char) for char in specials]
        part = _lines_part("limit", or_(*may))
        found = Prepared(_union_pg(part) if pg else _union(part))
        _CANDIDATES[key] = found
    return found


def chunk_may_match(needle: str, case: bool) -> Callable[[Decoded], bool]:
    """Whether some line of a chunk may match `needle` (lower-cased unless `case`), by the
    rule the database applies to a line row: it holds an escape, a LOWER_TO_ASCII character,
    or the needle (ignoring case: ASCII letters folded, as SQLite's LIKE does; `bytes.lower`
    folds exactly those). Looked for in the chunk's UTF-8 at once: a UTF-8 text contains
    another exactly when their encodings do."""
    wanted = needle.encode("utf-8")
    marks = [b"\x1b"]
    if not case:
        marks += [char.encode("utf-8") for char, letter in LOWER_TO_ASCII if letter in needle]

    def may(chunk: Decoded) -> bool:
        body = chunk.body
        if any(mark in body for mark in marks):
            return True
        return wanted in (body if case else body.lower())

    return may


async def read_candidate_rows(
    conn: AsyncConnection,
    job_id: int,
    after: int,
    limit: int,
    needle: str,
    case: bool,
    may_match: Callable[[Decoded], bool] | None = None,
) -> list[Row]:
    """Lines above `after` that may contain `needle`, at most `limit`: the line rows that hold
    it as stored (ASCII case folded unless `case`), an escape or a LOWER_TO_ASCII character
    (see queries.read_candidates), and every row of the chunks `may_match` accepts (default
    `chunk_may_match`).

    Chunks are read SEARCH_CHUNKS at a time; when none of those may match, the next ones are
    read, so an empty answer means the end of the log.
    """
    pg = conn.dialect.name != "sqlite"
    specials = () if case else tuple(c for c, letter in LOWER_TO_ASCII if letter in needle)
    statement = _candidates_statement(pg, case, specials)
    keep = may_match or chunk_may_match(needle, case)
    while True:
        rows = await fetch_raw(
            conn,
            statement,
            job_id=job_id,
            after=after,
            low=after - MAX_CHUNK_LINES,
            limit=limit,
            chunk_limit=SEARCH_CHUNKS,
            pattern=_like_pattern(needle),
        )
        if not rows:
            return []
        found_chunks, found_lines = _split(rows, pg)
        out, bound = merge(
            job_id, found_chunks, SEARCH_CHUNKS, found_lines, limit, after, limit, keep=keep
        )
        if out or bound is None:
            return out
        after = bound  # nothing up to the bound may match: read on from there


# --- compaction -------------------------------------------------------------------------------

_OLDEST_LINES = Prepared(
    select(lines.c.no, lines.c.ts_ms, lines.c.text)
    .where(lines.c.job_id == bindparam("job_id"))
    .order_by(lines.c.no)
    .limit(bindparam("limit", type_=IntegerType))
)
_INSERT_CHUNK = Prepared(
    chunks.insert().values(
        job_id=bindparam("job_id"),
        first_no=bindparam("first_no"),
        last_no=bindparam("last_no"),
        data=bindparam("data"),
    )
)
_DELETE_LINES = Prepared(
    lines.delete().where(
        lines.c.job_id == bindparam("job_id"),
        lines.c.no >= bindparam("first_no"),
        lines.c.no <= bindparam("last_no"),
    )
)


def compact_step(conn: Connection, job_id: int, codec: int) -> int:
    """Move the job's oldest lines (up to CHUNK_LINES, up to the first gap) into one chunk;
    how many moved (0: none left in `lines`). Inside the caller's transaction, under the job's
    lock: the chunk's insert and its lines' delete commit together or not at all."""
    rows = _OLDEST_LINES.rows(conn, job_id=job_id, limit=CHUNK_LINES)
    if not rows:
        return 0
    first = rows[0][0]
    count = 1
    size = len(rows[0][2])
    while count < len(rows) and rows[count][0] == first + count:
        size += len(rows[count][2])
        if size > CHUNK_CHARS:  # long lines: a chunk stays about a megabyte when decoded
            break
        count += 1
    rows = rows[:count]
    last = first + count - 1
    data = encode(rows, codec)
    _INSERT_CHUNK.rows(conn, job_id=job_id, first_no=first, last_no=last, data=data)
    _DELETE_LINES.rows(conn, job_id=job_id, first_no=first, last_no=last)
    return count


def delete_oldest_chunks(conn: Connection, job_id: int, max_lines: int) -> int | None:
    """Retention: delete the job's oldest chunks holding at most `max_lines` lines in all (at
    least one chunk); how many lines went, or None when the job has no chunks."""
    found = conn.execute(
        select(chunks.c.first_no, chunks.c.last_no)
        .where(chunks.c.job_id == job_id)
        .order_by(chunks.c.first_no)
        .limit(max(1, max_lines // CHUNK_LINES))
    ).all()
    if not found:
        return None
    total = 0
    upto = found[0][0]
    for first, last in found:
        if total and total + (last - first + 1) > max_lines:
            break
        total += last - first + 1
        upto = first
    conn.execute(chunks.delete().where(chunks.c.job_id == job_id, chunks.c.first_no <= upto))
    return total


def delete_all(conn: Connection, job_id: int) -> None:
    """Delete every chunk of a job."""
    conn.execute(chunks.delete().where(chunks.c.job_id == job_id))
