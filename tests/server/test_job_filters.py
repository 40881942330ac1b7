"""GET /api/jobs filtered by status, name, name prefix and meta, with keyset paging, on a real
server over SQLite and over PostgreSQL; the checks of the filter parameters; meta stored
before the API cleaned it (NUL, lone surrogates, NaN) neither matches nor breaks a listing."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from support.api import client_for, finish, new_job
from support.server import ServerProcess

from logstream.server.http.listing import parse_job_filter
from logstream.server.store.queries import JobFilter


@pytest.fixture(params=["sqlite", "postgres"])
def backend_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on SQLite, or on a fresh PostgreSQL database."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    proc = ServerProcess(tmp_path, database_url=url)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


# name, meta, final status (None: still running)
JOBS: list[tuple[str, dict[str, Any], str | None]] = [
    ("deploy", {"branch": "main", "ci.pipeline": "7"}, "succeeded"),
    ("deploy", {"branch": "dev"}, "failed"),
    ("build", {"branch": "main", "n": 3}, "failed"),
    ("build", {"branch": "main"}, None),
    ("deploy-canary", {"branch": "main", "nested": {"branch": "dev"}}, "canceled"),
    ("Deploy", {"branch": "MAIN"}, "succeeded"),
    ("test", {"branch": ["main"], "n": "3"}, "failed"),
    ("deploy", {"branch": "main", "emoji": "\U0001f680", "accent": "\u00e9t\u00e9"}, None),
    ("build", {}, "succeeded"),
    ("deploy", {"branch": "main"}, "failed"),
    (
        "odd",
        {"pct": "50%", "under_score": "a_b", "q": 'say "hi"', "path": "a/b", "t": "a\tb"},
        None,
    ),
    ("odd", {"pct": "5x%", "under_score": "axb", "q": "say hi", "path": "a//b"}, None),
]


def _matches(job: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    """The reference: what each filter means, in Python (statuses: any of those given)."""
    statuses = [s for field, value in params if field == "status" for s in value.split(",")]
    if statuses and job["status"] not in statuses:
        return False
    for field, value in params:
        if field == "name" and job["name"] != value:
            return False
        if field == "name_prefix" and not job["name"].startswith(value):
            return False
        if field.startswith("meta.") and job["meta"].get(field[5:]) != value:
            return False
    return True


FILTERS: list[list[tuple[str, str]]] = [
    [],
    [("status", "failed")],
    [("status", "running")],
    [("status", "failed,canceled")],
    [("status", "failed"), ("status", "canceled")],
    [("name", "deploy")],
    [("name", "Deploy")],
    [("name", "nobody")],
    [("name_prefix", "deploy")],
    [("name_prefix", "De")],
    [("meta.branch", "main")],
    [("meta.branch", "MAIN")],
    [("meta.branch", "dev")],  # not the nested one
    [("meta.n", "3")],  # only the string "3", not the number 3
    [("meta.ci.pipeline", "7")],  # a key with a dot is one key
    [("meta.emoji", "\U0001f680")],
    [("meta.accent", "\u00e9t\u00e9")],
    [("meta.missing", "x")],
    [("meta.branch", "main"), ("status", "failed")],
    [("meta.branch", "main"), ("name", "deploy"), ("status", "succeeded,failed")],
    [("meta.branch", "main"), ("meta.ci.pipeline", "7")],
    [("name", "build"), ("status", "running")],
    # LIKE's wildcards and its escape character are only themselves; values JSON escapes.
    [("meta.pct", "50%")],
    [("meta.pct", "5_%")],
    [("meta.pct", "%")],
    [("meta.under_score", "a_b")],
    [("meta.under_score", "a%b")],
    [("meta.q", 'say "hi"')],
    [("meta.path", "a/b")],
    [("meta.path", "a//b")],
    [("meta.t", "a\tb")],
]


async def _all_pages(
    client: httpx.AsyncClient, params: list[tuple[str, str]], limit: int
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        query = [*params, ("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        r = await client.get("/api/jobs", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["jobs"]) <= limit and isinstance(body["events_cursor"], int)
        found += body["jobs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("paging did not end")


async def test_filters_and_paging_match_the_reference(backend_server: ServerProcess) -> None:
    async with client_for(backend_server) as client:
        made = []
        for name, meta, status in JOBS:
            job = await new_job(client, name, meta)
            if status is not None:
                job = await finish(client, job, status=status, exit_code=1)
            made.append(job)
        shown = {job["id"]: job for job in made}
        r = await client.get("/api/jobs", params={"limit": 500})
        for job in r.json()["jobs"]:
            shown[job["id"]] = job
        newest_first = sorted(shown.values(), key=lambda job: -job["id"])
        for params in FILTERS:
            expected = [job["id"] for job in newest_first if _matches(job, params)]
            for limit in (2, 3, 500):
                got = [job["id"] for job in await _all_pages(client, params, limit)]
                assert got == expected, (params, limit)
        # A page ends exactly where the filtered rows do: no empty page after the last one.
        r = await client.get("/api/jobs", params={"status": "canceled", "limit": 1})
        assert len(r.json()["jobs"]) == 1 and r.json()["next_cursor"] is None


async def test_meta_stored_unparsable_matches_nothing_and_breaks_nothing(
    backend_server: ServerProcess,
) -> None:
    """Rows json.dumps wrote before the API cleaned meta: PostgreSQL refuses to parse NUL and
    lone surrogate escapes and NaN, SQLite NaN; a meta-filtered listing still answers, and
    a row only matches where the store can read it."""
    on_sqlite = backend_server.database_url.startswith("sqlite")
    poisoned = [
        '{"branch":"main","s":"a\\u0000b"}',
        '{"branch":"main","x": NaN}',
        '{"branch":"main","x":-Infinity}',
    ]
    if not on_sqlite:
        # (SQLite reads these, so they would match and be listed, and the listing's JSON
        # cannot carry a lone surrogate: rendering them is the output guard's business.)
        poisoned += ['{"branch":"main","s":"\\ud800"}', '{"branch":"main","s":"\\udc00x"}']
    async with client_for(backend_server) as client:
        good = await new_job(client, "good", {"branch": "main", "pair": "\U0001f680"})
        bad = [await new_job(client, "bad", {"branch": "main"}) for _ in poisoned]
        ids = [job["id"] for job in bad]
        if on_sqlite:
            with sqlite3.connect(backend_server.workdir / "logstream.db") as db:
                for job_id, meta in zip(ids, poisoned, strict=True):
                    db.execute("UPDATE jobs SET meta = ? WHERE id = ?", (meta, job_id))
        else:
            conn = await asyncpg.connect(backend_server.database_url)
            try:
                for job_id, meta in zip(ids, poisoned, strict=True):
                    await conn.execute("UPDATE jobs SET meta = $1 WHERE id = $2", meta, job_id)
            finally:
                await conn.close()
        r = await client.get("/api/jobs", params={"meta.branch": "main"})
        assert r.status_code == 200, r.text
        listed = [job["id"] for job in r.json()["jobs"]]
        # SQLite reads NUL escapes (that row matches); neither store reads NaN or Infinity.
        assert listed == ([ids[0]] if on_sqlite else []) + [good["id"]]
        r = await client.get("/api/jobs", params={"meta.pair": "\U0001f680"})
        assert [job["id"] for job in r.json()["jobs"]] == [good["id"]]
        r = await client.get("/api/jobs", params={"meta.x": "NaN", "status": "running"})
        assert r.status_code == 200 and r.json()["jobs"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "failed,Failed"}, "status"),
        ({"meta.": "x"}, "meta."),
        ({"meta.a b": "x"}, "meta.a b"),
        ({"meta." + "k" * 65: "x"}, "meta." + "k" * 65),
        ({"meta.k\u00e9": "x"}, "meta.k\u00e9"),
        ({"meta.k": "x" * 1001}, "meta.k"),
        ({"name": "x" * 1001}, "name"),
    ],
)
async def test_bad_filters_are_400_naming_the_field(
    shared_server: ServerProcess, params: dict[str, str], field: str
) -> None:
    async with client_for(shared_server) as client:
        r = await client.get("/api/jobs", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "bad_request" and body["field"] == field, body


def test_filter_parameters_parse() -> None:
    assert parse_job_filter([]) == JobFilter()
    assert parse_job_filter([("status", "failed, canceled"), ("status", "failed")]) == JobFilter(
        statuses=("failed", "canceled")
    )
    assert parse_job_filter([("name", ""), ("status", ""), ("limit", "5")]) == JobFilter()
    assert parse_job_filter([("meta.a", "1"), ("meta.a", "2")]).meta == (("a", "1"), ("a", "2"))
    with pytest.raises(Exception, match="at most 8 meta filters"):
        parse_job_filter([(f"meta.k{n}", "v") for n in range(9)])
