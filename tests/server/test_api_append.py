"""Appending lines: numbering, retries with `first`, auth, bad input, concurrency."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from support.api import (
    TIMEOUT,
    all_lines,
    append,
    bearer,
    client_for,
    finish,
    make_job_sync,
    new_job,
    post_lines,
    post_text,
)
from support.server import ServerProcess


@pytest.fixture(scope="module")
def target(shared_server: ServerProcess) -> dict[str, Any]:
    """A running job holding one line, "before", that refused requests must not change."""
    return make_job_sync(shared_server.url, "target of refused requests", ["before"])


async def stored(client: httpx.AsyncClient, job: dict[str, Any]) -> list[str]:
    rows = await all_lines(client, job["id"])
    assert [row["n"] for row in rows] == list(range(1, len(rows) + 1)), "numbering has gaps"
    shown = (await client.get(f"/api/jobs/{job['id']}")).json()
    assert shown["line_count"] == len(rows)
    return [row["text"] for row in rows]


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    return body  # type: ignore[no-any-return]


# --- numbering and the answer --------------------------------------------------------------


async def test_append_numbers_lines_from_one(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await append(client, job, ["a", "b", "c"])
        assert r == {
            "first": 1,
            "last": 3,
            "line_count": 3,
            "stored": 3,
            "skipped": 0,
            "job_status": "running",
            "cut": 0,
        }
        r = await append(client, job, ["d"])
        assert (r["first"], r["last"], r["line_count"], r["stored"]) == (4, 4, 4, 1)
        assert await stored(client, job) == ["a", "b", "c", "d"]


async def test_append_with_first_equal_to_next_line(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await append(client, job, ["a", "b"], first=1)
        assert (r["first"], r["last"], r["line_count"], r["stored"], r["skipped"]) == (
            1,
            2,
            2,
            2,
            0,
        )
        r = await append(client, job, ["c"], first=3)
        assert (r["first"], r["last"], r["line_count"], r["stored"], r["skipped"]) == (
            3,
            3,
            3,
            1,
            0,
        )
        assert await stored(client, job) == ["a", "b", "c"]


async def test_empty_append_changes_nothing(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["a"])
        r = await append(client, job, [])
        assert r["line_count"] == 1 and r["stored"] == 0
        r = await post_text(client, job, b"")
        assert r.status_code == 200, r.text
        assert r.json()["line_count"] == 1 and r.json()["stored"] == 0
        assert await stored(client, job) == ["a"]


# --- retries -------------------------------------------------------------------------------


async def test_retry_of_stored_lines_is_skipped(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["a", "b", "c"])
        r = await append(client, job, ["a", "b", "c"], first=1)
        assert (r["first"], r["last"], r["line_count"], r["stored"], r["skipped"]) == (
            1,
            3,
            3,
            0,
            3,
        )
        r = await append(client, job, ["b"], first=2)
        assert (r["line_count"], r["stored"], r["skipped"]) == (3, 0, 1)
        assert await stored(client, job) == ["a", "b", "c"]


async def test_retry_overlapping_the_end_appends_only_new(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["a", "b", "c"])
        r = await append(client, job, ["b", "c", "d", "e"], first=2)
        assert (r["first"], r["last"], r["line_count"], r["stored"], r["skipped"]) == (
            2,
            5,
            5,
            2,
            2,
        )
        assert await stored(client, job) == ["a", "b", "c", "d", "e"]


async def test_retry_with_different_text_is_409(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["a", "b", "c"])
        r = await post_lines(client, job, ["a", "X", "d"], first=1)
        body = error_of(r, 409)
        assert body["error"] == "conflict"
        assert body.get("line") == 2
        # Nothing of the refused request was stored, not even its new line "d".
        assert await stored(client, job) == ["a", "b", "c"]
        # A single changed character counts too.
        r = await post_lines(client, job, ["c "], first=3)
        error_of(r, 409)
        assert await stored(client, job) == ["a", "b", "c"]


async def test_gap_is_409_naming_expected_first(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await post_lines(client, job, ["x"], first=2)
        body = error_of(r, 409)
        assert body["expected_first"] == 1
        await append(client, job, ["a", "b"])
        for first in (4, 10, 2**40):
            r = await post_lines(client, job, ["x"], first=first)
            body = error_of(r, 409)
            assert body["expected_first"] == 3
            assert body.get("line_count") == 2
        assert await stored(client, job) == ["a", "b"]


async def test_text_body_retry_with_first_query(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await post_text(client, job, b"one\ntwo\n", first=1)
        assert r.status_code == 200 and r.json()["line_count"] == 2
        r = await post_text(client, job, b"one\ntwo\nthree\n", first=1)
        assert r.status_code == 200, r.text
        assert (r.json()["stored"], r.json()["skipped"], r.json()["line_count"]) == (1, 2, 3)
        r = await post_text(client, job, b"TWO\n", first=2)
        error_of(r, 409)
        r = await post_text(client, job, b"five\n", first=5)
        assert error_of(r, 409)["expected_first"] == 4
        assert await stored(client, job) == ["one", "two", "three"]


async def test_concurrent_identical_retries_store_once(shared_server: ServerProcess) -> None:
    """Ten copies of the same request (a runner retrying over a flaky link) race."""
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["zero"])
        lines = [f"line {i}" for i in range(20)]
        async with asyncio.timeout(TIMEOUT):
            answers = await asyncio.gather(
                *(append(client, job, lines, first=2) for _ in range(10))
            )
        assert all(a["line_count"] == 21 for a in answers)
        assert sum(a["stored"] for a in answers) == 20
        assert sorted(a["stored"] for a in answers)[-1] == 20
        assert await stored(client, job) == ["zero", *lines]


# --- finished jobs ---------------------------------------------------------------------------


async def test_append_to_finished_job_is_409(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["a"])
        await finish(client, job)
        r = await post_lines(client, job, ["b"])
        body = error_of(r, 409)
        assert body["error"] == "conflict"
        r = await post_lines(client, job, ["b"], first=2)
        error_of(r, 409)
        r = await post_text(client, job, b"c\n")
        error_of(r, 409)
        assert await stored(client, job) == ["a"]


async def test_retry_overlap_after_finish_stores_nothing(shared_server: ServerProcess) -> None:
    """A retry of lines already stored, arriving after the finish, must not add lines
    (whether it is answered as an idempotent success or refused)."""
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await append(client, job, ["a", "b"])
        await finish(client, job)
        r = await post_lines(client, job, ["a", "b"], first=1)
        assert r.status_code in (200, 409), r.text
        r = await post_lines(client, job, ["a", "b", "c"], first=1)
        error_of(r, 409)
        assert await stored(client, job) == ["a", "b"]


# --- auth ------------------------------------------------------------------------------------


async def test_append_auth(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        other = await new_job(client)
        url = f"/api/jobs/{job['id']}/lines"
        r = await client.post(url, json={"lines": ["x"]})
        assert error_of(r, 401)["error"] == "unauthorized"
        r = await client.post(url, json={"lines": ["x"]}, headers=bearer("not-the-token"))
        assert error_of(r, 403)["error"] == "forbidden"
        r = await client.post(url, json={"lines": ["x"]}, headers=bearer(other["token"]))
        assert error_of(r, 403)["error"] == "forbidden"
        r = await client.post(
            url, json={"lines": ["x"]}, headers={"Authorization": f"Basic {job['token']}"}
        )
        error_of(r, 401)
        r = await client.post(url, json={"lines": ["x"]}, headers={"Authorization": "Bearer"})
        error_of(r, 401)
        r = await client.post(url, content=b"x\n", headers={"Content-Type": "text/plain"})
        error_of(r, 401)
        assert await stored(client, job) == []
        assert await stored(client, other) == []


async def test_append_to_unknown_job_is_404(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await client.post(
            "/api/jobs/99999999/lines", json={"lines": ["x"]}, headers=bearer(job["token"])
        )
        assert error_of(r, 404)["error"] == "not_found"


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b'{"lines": ["a"]', b"\xff\xfe", b"[]", b'["a"]', b"null", b'"lines"'],
)
async def test_malformed_json_is_400(
    shared_server: ServerProcess, target: dict[str, Any], raw: bytes
) -> None:
    async with client_for(shared_server) as client:
        job = target
        r = await client.post(
            f"/api/jobs/{job['id']}/lines",
            content=raw,
            headers={**bearer(job["token"]), "Content-Type": "application/json"},
        )
        assert error_of(r, 400)["error"] == "bad_request"
        assert await stored(client, job) == ["before"]


@pytest.mark.parametrize(
    "body",
    [
        {"lines": ["ok", "two\nlines"]},
        {"lines": ["crlf\r\n"]},
        {"lines": ["\n"]},
        {"lines": ["ok", 5]},
        {"lines": [None]},
        {"lines": [["nested"]]},
        {"lines": [{"text": "x"}]},
        {"lines": [True]},
        {"lines": "a string, not a list"},
        {"lines": None},
        {},
        {"lines": ["a"], "first": 0},
        {"lines": ["a"], "first": -1},
        {"lines": ["a"], "first": "1"},
        {"lines": ["a"], "first": 1.5},
        {"lines": ["a"], "first": True},
    ],
)
async def test_bad_lines_body_is_400(
    shared_server: ServerProcess, target: dict[str, Any], body: dict[str, Any]
) -> None:
    async with client_for(shared_server) as client:
        job = target
        r = await client.post(
            f"/api/jobs/{job['id']}/lines", json=body, headers=bearer(job["token"])
        )
        assert error_of(r, 400)["error"] == "bad_request"
        # The valid elements of a refused request are not stored either.
        assert await stored(client, job) == ["before"]


async def test_lf_error_names_the_element(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await post_lines(client, job, ["a", "b", "c\nd"])
        body = error_of(r, 400)
        assert body.get("index") == 2


@pytest.mark.parametrize("first", ["0", "abc", "-1", "1.0", "1e2"])
async def test_bad_first_query_is_400(
    shared_server: ServerProcess, target: dict[str, Any], first: str
) -> None:
    async with client_for(shared_server) as client:
        job = target
        r = await client.post(
            f"/api/jobs/{job['id']}/lines",
            params={"first": first},
            content=b"x\n",
            headers={**bearer(job["token"]), "Content-Type": "text/plain"},
        )
        error_of(r, 400)
        assert await stored(client, job) == ["before"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/xml",
        "image/png",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/javascript",
    ],
)
async def test_unsupported_content_type_is_415(
    shared_server: ServerProcess, target: dict[str, Any], content_type: str
) -> None:
    async with client_for(shared_server) as client:
        job = target
        r = await client.post(
            f"/api/jobs/{job['id']}/lines",
            content=b'{"lines":["x"]}',
            headers={**bearer(job["token"]), "Content-Type": content_type},
        )
        assert error_of(r, 415)["error"] == "unsupported_media_type"
        assert await stored(client, job) == ["before"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "text/x-log", "application/octet-stream"],
)
async def test_text_like_content_types_accepted(
    shared_server: ServerProcess, content_type: str
) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await post_text(client, job, b"a\nb\n", content_type=content_type)
        assert r.status_code == 200, r.text
        assert await stored(client, job) == ["a", "b"]


async def test_json_with_charset_parameter(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        r = await client.post(
            f"/api/jobs/{job['id']}/lines",
            content=json.dumps({"lines": ["é"]}).encode(),
            headers={**bearer(job["token"]), "Content-Type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 200, r.text
        assert await stored(client, job) == ["é"]


# --- concurrency -----------------------------------------------------------------------------


async def _concurrent_appends(
    client: httpx.AsyncClient, job: dict[str, Any], tasks: int, rounds: int, per: int
) -> None:
    async def worker(t: int) -> list[tuple[int, int]]:
        spans = []
        for r in range(rounds):
            lines = [f"t{t} r{r} l{k}" for k in range(per)]
            if (t + r) % 2:
                answer = await append(client, job, lines)
            else:
                resp = await post_text(client, job, ("\n".join(lines) + "\n").encode())
                assert resp.status_code == 200, resp.text
                answer = resp.json()
            assert answer["stored"] == per and answer["last"] - answer["first"] == per - 1
            spans.append((answer["first"], answer["last"]))
        return spans

    async with asyncio.timeout(30):
        spans = [
            s for result in await asyncio.gather(*(worker(t) for t in range(tasks))) for s in result
        ]
    total = tasks * rounds * per
    # The answers' ranges tile 1..total exactly.
    covered = sorted(spans)
    assert covered[0][0] == 1 and covered[-1][1] == total
    for (_, last), (first, _) in zip(covered, covered[1:], strict=False):
        assert first == last + 1
    texts = await stored(client, job)
    assert len(texts) == total
    expected = {f"t{t} r{r} l{k}" for t in range(tasks) for r in range(rounds) for k in range(per)}
    assert set(texts) == expected and len(set(texts)) == total
    # Each request's lines stay together and in order; each task's requests stay in order.
    for first, last in spans:
        block = texts[first - 1 : last]
        prefix = block[0].rsplit(" ", 1)[0]
        assert block == [f"{prefix} l{k}" for k in range(per)]
    for t in range(tasks):
        mine = [text for text in texts if text.startswith(f"t{t} ")]
        assert mine == [f"t{t} r{r} l{k}" for r in range(rounds) for k in range(per)]


async def test_concurrent_appends_http1(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        await _concurrent_appends(client, job, tasks=20, rounds=8, per=5)
        await finish(client, job, line_count=800)


async def test_concurrent_appends_h2c_one_connection(shared_server: ServerProcess) -> None:
    async with client_for(shared_server, http1=False, http2=True) as client:
        job = await new_job(client)
        await _concurrent_appends(client, job, tasks=20, rounds=5, per=7)
        r = await client.get(f"/api/jobs/{job['id']}")
        assert r.http_version == "HTTP/2"
        assert r.json()["line_count"] == 700


async def test_concurrent_appends_to_many_jobs(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        jobs = [await new_job(client, f"j{i}") for i in range(6)]

        async def feed(job: dict[str, Any]) -> None:
            for r in range(10):
                await append(client, job, [f"{job['id']}:{r}:{k}" for k in range(3)])

        async with asyncio.timeout(30):
            await asyncio.gather(*(feed(job) for job in jobs))
        for job in jobs:
            assert await stored(client, job) == [
                f"{job['id']}:{r}:{k}" for r in range(10) for k in range(3)
            ]


async def test_big_batch_in_one_request(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client)
        lines = [f"line {i:05d}" for i in range(5000)]
        r = await append(client, job, lines)
        assert (r["first"], r["last"], r["line_count"]) == (1, 5000, 5000)
        assert await stored(client, job) == lines
