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


# Patterns that mean the same to RE2 and to Python's re (the reference, one line at a time).
PATTERNS = [
    "err(or)?",
    "^err",
    "or$",
    "^$",
    r"\d+%",
    "[ΑΣσ]",
    "k.i",
    r"\x1b",  # never: escapes are stripped before matching
    "31m",
    r"a_b|\\",
    "(?i)é",
    "x{2,}",
    ".",
    "",
]


@pytest.mark.parametrize("services", ["sqlite", "postgres"], indirect=True)
async def test_regex_search_finds_what_a_line_by_line_scan_finds(services: Services) -> None:
    import re

    rng = random.Random(12)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 7))) for _ in range(3000)]
    texts += ["x" * 70_000]  # a line longer than most pages
    job, _token = await services.writer.create_job("regex", {})
    await services.writer.append(job.id, texts, None)
    visible = [search._ANSI.sub("", text) for text in texts]
    for pattern in PATTERNS:
        for case in (False, True):
            flags = 0 if case else re.IGNORECASE
            reference = re.compile(pattern, flags)
            # Python's re lets i match İ ignoring case; RE2 folds by Unicode's simple case
            # folding, where İ is no variant of i: the reference sees another character there.
            texts_seen = visible if case else [text.replace("İ", "\x00") for text in visible]
            expected = [n for n, text in enumerate(texts_seen, 1) if reference.search(text)]
            regex = search.compile_regex(pattern, case)
            result = await search.search_regex(services.engine, job.id, regex, limit=10_000)
            assert result.lines == expected, (pattern, case)
            assert result.count == len(expected) and result.scanned_to is None
            after = expected[len(expected) // 2] if expected else 0
            later = await search.search_regex(
                services.engine, job.id, regex, limit=10_000, after=after
            )
            assert later.lines == [n for n in expected if n > after]


def test_regex_never_matches_across_lines() -> None:
    rows = [(1, 0, "a"), (2, 0, "b"), (3, 0, "a b"), (4, 0, "\x1b[31ma\x1b[0mb")]
    for pattern, hits in [
        (r"a\sb", [3]),
        ("a[^x]b", [3]),
        (r"a\nb", []),
        ("(?s)a.b", [3]),
        ("ab", [4]),
        ("^b", [2]),
        ("a$", [1]),
    ]:
        assert search.matching_regex(rows, search.compile_regex(pattern, True)) == hits, pattern


async def test_a_regex_scan_stops_at_its_time_budget_and_says_where(services: Services) -> None:
    job, _token = await services.writer.create_job("budget", {})
    texts = [f"line {n}" for n in range(1, 3 * search.PAGE + 2)]
    await services.writer.append(job.id, texts, None)
    regex = search.compile_regex("^line 1", False)
    result = await search.search_regex(services.engine, job.id, regex, limit=10, seconds=0)
    assert result.scanned_to == search.PAGE  # one page read, then the budget was spent
    assert result.lines[:3] == [1, 10, 11] and result.truncated
    rest = await search.search_regex(
        services.engine, job.id, regex, limit=10, after=result.scanned_to, seconds=0
    )
    assert rest.scanned_to == 2 * search.PAGE and rest.lines[0] == 10_000
    whole = await search.search_regex(services.engine, job.id, regex, limit=10)
    assert whole.scanned_to is None and whole.count == sum(t.startswith("line 1") for t in texts)
