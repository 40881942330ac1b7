"""Search over the whole log on both stores: the database's first pass (`queries.read_candidates`)
may only skip lines that cannot match, so every query finds exactly the lines a scan of every
line's visible text finds, whatever the escapes, LIKE's wildcards and the Unicode."""

from __future__ import annotations

import random

import pytest

from logstream.server import search
from logstream.server.search import matching
from logstream.server.services import Services
from logstream.server.store import queries

PIECES = [
    "error",
    "ERR",
    "\x1b[31m",
    "\x1b[0m",
    "OR",
    "\x1b]8;;http://x\x1b\\",
    "\x1b",
    "[31m",
    "ΑΣ",
    "σ",
    "İ",
    "K",
    "k",
    "i",
    " ",
    "\r",
    "\t",
    "é",
    "É",
    "\x1b]0;title",
    "\x07",
    "ß",
    "x",
    "%",
    "_",
    "/",
    "50%",
    "a_b",
    "\\",
]
QUERIES = [
    "error",
    "err",
    "or",
    "σ",
    "ς",
    "i̇",
    "i",
    "k",
    "ik",
    "ss",
    "31m",
    "[31m",
    "\x1b",
    "title",
    " x",
    "r\r",
    "é",
    "É",
    "ΑΣ",
    "%",
    "_",
    "50%",
    "a_b",
    "/",
    "\\",
    "zzz",
]


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
async def test_search_finds_what_a_scan_of_every_line_finds(services: Services) -> None:
    rng = random.Random(11)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 7))) for _ in range(3000)]
    job, _token = await services.writer.create_job("search", {})
    await services.writer.append(job.id, texts, None)
    rows = [(n, 0, text) for n, text in enumerate(texts, 1)]
    for query in QUERIES:
        for case in (False, True):
            needle = query if case else query.lower()
            expected = matching(rows, needle, case)
            result = await search.search_log(
                services.engine, job.id, query, case=case, limit=10_000
            )
            assert result.lines == expected and result.count == len(expected), (query, case)


def test_the_first_pass_is_used_where_it_is_exact() -> None:
    assert queries.can_prefilter("error", False) and queries.can_prefilter("é", True)
    assert not queries.can_prefilter("é", False)  # SQLite folds only ASCII letters
