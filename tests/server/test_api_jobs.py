"""Jobs: create (open and with a runner token), list with paging, show, finish."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.api import (
    ISO_RE,
    TIMEOUT,
    append,
    bearer,
    client_for,
    finish,
    make_job_sync,
    new_job,
    post_finish,
    post_lines,
)
from support.server import ServerProcess

RUNNER_TOKEN = "runner-secret-token-for-tests"


@pytest.fixture(scope="module")
def runner_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("runner"), env={"LOGSTREAM_RUNNER_TOKEN": RUNNER_TOKEN}
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def running(shared_server: ServerProcess) -> dict[str, Any]:
    """A running job that validation-only tests may send refused requests to."""
    return make_job_sync(shared_server.url, "target of refused requests")


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str), body
    if code is not None:
        assert body["error"] == code, body
    return body


# --- create --------------------------------------------------------------------------------


async def test_create_job_answers_201_with_job_and_token(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        r = await client.post(
            "/api/jobs", json={"name": "build #1", "meta": {"branch": "main", "n": 3}}
        )
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/json")
        job = r.json()
        assert isinstance(job["id"], int) and job["id"] > 0
        assert job["name"] == "build #1"
        assert job["meta"] == {"branch": "main", "n": 3}
        assert job["status"] == "running"
        assert job["line_count"] == 0
        assert job["exit_code"] is None
        assert re.match(ISO_RE, job["created_at"]), job["created_at"]
        assert isinstance(job["token"], str) and len(job["token"]) >= 16


async def test_create_twice_gives_distinct_ids_and_tokens(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        a = await new_job(client, "a")
        b = await new_job(client, "b")
        assert a["id"] != b["id"]
        assert b["id"] > a["id"]
        assert a["token"] != b["token"]


async def test_create_without_meta_and_with_null_meta(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        assert (await new_job(client, "no meta"))["meta"] == {}
        r = await client.post("/api/jobs", json={"name": "null meta", "meta": None})
        assert r.status_code == 201 and r.json()["meta"] == {}


async def test_show_job_never_reveals_token(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "shown", meta={"k": "v"})
        r = await client.get(f"/api/jobs/{job['id']}")
        assert r.status_code == 200
        shown = r.json()
        assert "token" not in shown
        assert job["token"] not in r.text
        for key in ("id", "name", "meta", "status", "line_count", "created_at"):
            assert shown[key] == job[key]


async def test_unicode_name_and_meta_kept(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "构建 🚀 שלום", meta={"emoji": "✅", "list": [1, "二"]})
        shown = (await client.get(f"/api/jobs/{job['id']}")).json()
        assert shown["name"] == "构建 🚀 שלום"
        assert shown["meta"] == {"emoji": "✅", "list": [1, "二"]}


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 123}, "name"),
        ({"name": None}, "name"),
        ({"name": ["a"]}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "cr\rname"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "meta": []}, "meta"),
        ({"name": "ok", "meta": "string"}, "meta"),
        ({"name": "ok", "meta": 5}, "meta"),
        ({"name": "ok", "meta": {"big": "x" * 17000}}, "meta"),
    ],
)
async def test_create_rejects_bad_name_or_meta(
    shared_server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    async with client_for(shared_server) as client:
        r = await client.post("/api/jobs", json=body)
        err = assert_error(r, 400, "bad_request")
        assert err.get("field") == field


async def test_name_of_exactly_200_chars_is_fine(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "n" * 200)
        assert job["name"] == "n" * 200


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'"name"', b"{", b"\xff\xfe"])
async def test_create_rejects_malformed_body(shared_server: ServerProcess, raw: bytes) -> None:
    async with client_for(shared_server) as client:
        r = await client.post(
            "/api/jobs", content=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(r, 400, "bad_request")


# --- runner token ----------------------------------------------------------------------------


async def test_runner_token_required_to_create(runner_server: ServerProcess) -> None:
    async with client_for(runner_server) as client:
        r = await client.post("/api/jobs", json={"name": "x"})
        assert_error(r, 401, "unauthorized")
        r = await client.post("/api/jobs", json={"name": "x"}, headers=bearer("wrong"))
        assert_error(r, 403, "forbidden")
        r = await client.post("/api/jobs", json={"name": "x"}, headers=bearer(RUNNER_TOKEN + "x"))
        assert_error(r, 403, "forbidden")
        r = await client.post(
            "/api/jobs", json={"name": "x"}, headers={"Authorization": f"Basic {RUNNER_TOKEN}"}
        )
        assert_error(r, 401, "unauthorized")
        # None of the refused requests created a job.
        assert (await client.get("/api/jobs")).json()["jobs"] == []
        job = await new_job(client, "allowed", headers=bearer(RUNNER_TOKEN))
        assert job["status"] == "running" and job["token"]
        listed = (await client.get("/api/jobs")).json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]


async def test_runner_token_scheme_is_case_insensitive(runner_server: ServerProcess) -> None:
    async with client_for(runner_server) as client:
        job = await new_job(client, "lower", headers={"Authorization": f"bearer {RUNNER_TOKEN}"})
        assert job["id"] > 0


async def test_job_token_works_with_runner_token_set(runner_server: ServerProcess) -> None:
    async with client_for(runner_server) as client:
        job = await new_job(client, "j", headers=bearer(RUNNER_TOKEN))
        assert (await append(client, job, ["one"]))["line_count"] == 1
        # The job token cannot create jobs.
        r = await client.post("/api/jobs", json={"name": "x"}, headers=bearer(job["token"]))
        assert_error(r, 403)
        # The runner token may also write to the job.
        r = await post_lines(client, job, ["two"], token=RUNNER_TOKEN)
        assert r.status_code == 200 and r.json()["line_count"] == 2
        await finish(client, job, token=RUNNER_TOKEN)


async def test_bad_body_with_runner_token_still_400(runner_server: ServerProcess) -> None:
    async with client_for(runner_server) as client:
        r = await client.post("/api/jobs", json={"name": ""}, headers=bearer(RUNNER_TOKEN))
        assert_error(r, 400)


# --- list and show ---------------------------------------------------------------------------


async def test_list_newest_first_and_paged(server: ServerProcess) -> None:
    async with client_for(server) as client:
        created = [await new_job(client, f"job {i}") for i in range(7)]
        ids = [j["id"] for j in reversed(created)]
        whole = (await client.get("/api/jobs")).json()
        assert [j["id"] for j in whole["jobs"]] == ids
        assert whole["next_cursor"] is None
        assert all("token" not in j for j in whole["jobs"])

        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            r = await client.get("/api/jobs", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["jobs"]) <= 3
            seen += [j["id"] for j in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 10
        assert seen == ids
        assert pages == 3


async def test_list_exact_page_has_no_dangling_cursor(server: ServerProcess) -> None:
    async with client_for(server) as client:
        for i in range(4):
            await new_job(client, f"j{i}")
        page1 = (await client.get("/api/jobs", params={"limit": 2})).json()
        assert len(page1["jobs"]) == 2 and page1["next_cursor"] is not None
        page2 = (
            await client.get("/api/jobs", params={"limit": 2, "cursor": page1["next_cursor"]})
        ).json()
        assert len(page2["jobs"]) == 2
        assert page2["next_cursor"] is None
        assert not {j["id"] for j in page1["jobs"]} & {j["id"] for j in page2["jobs"]}


async def test_list_shows_current_state(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "state")
        await append(client, job, ["a", "b"])
        await finish(client, job, status="failed", exit_code=3)
        listed = (await client.get("/api/jobs", params={"limit": 500})).json()["jobs"]
        mine = [j for j in listed if j["id"] == job["id"]]
        assert len(mine) == 1
        assert mine[0]["status"] == "failed"
        assert mine[0]["exit_code"] == 3
        assert mine[0]["line_count"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "abc"},
        {"limit": "-1"},
        {"limit": "1.5"},
        {"cursor": "abc"},
        {"cursor": "0"},
        {"cursor": "-3"},
    ],
)
async def test_list_rejects_bad_paging(
    shared_server: ServerProcess, params: dict[str, str]
) -> None:
    async with client_for(shared_server) as client:
        assert_error(await client.get("/api/jobs", params=params), 400, "bad_request")


async def test_list_with_huge_cursor_is_not_a_server_error(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        r = await client.get("/api/jobs", params={"cursor": "9" * 30})
        assert r.status_code < 500, r.text
        assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "method,suffix",
    [("GET", ""), ("GET", "/lines"), ("GET", "/log"), ("POST", "/lines"), ("POST", "/finish")],
)
async def test_unknown_job_is_404_json(
    shared_server: ServerProcess, running: dict[str, Any], method: str, suffix: str
) -> None:
    async with client_for(shared_server) as client:
        # A real token, so the 404 is about the job rather than authentication.
        job = running
        for job_id in (987654321, 2**63 - 1, 10**30):
            kwargs: dict[str, Any] = {"headers": bearer(job["token"])}
            if suffix == "/lines" and method == "POST":
                kwargs["json"] = {"lines": ["x"]}
            if suffix == "/finish":
                kwargs["json"] = {"status": "succeeded", "exit_code": 0}
            r = await client.request(method, f"/api/jobs/{job_id}{suffix}", **kwargs)
            assert_error(r, 404, "not_found")


async def test_unknown_job_sse_is_404_not_a_stream(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        r = await client.get("/api/jobs/987654321/log", headers={"Accept": "text/event-stream"})
        assert_error(r, 404, "not_found")


async def test_non_numeric_job_id_is_404_json(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        assert_error(await client.get("/api/jobs/abc"), 404)


# --- finish ----------------------------------------------------------------------------------


async def test_finish_sets_status_and_is_idempotent(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "fin")
        await append(client, job, ["a", "b", "c"])
        done = await finish(client, job, status="succeeded", exit_code=0, line_count=3)
        assert done["status"] == "succeeded"
        assert done["exit_code"] == 0
        assert done["line_count"] == 3
        assert re.match(ISO_RE, done["finished_at"]), done
        assert done["finished_at"] >= done["created_at"]
        assert isinstance(done["duration"], (int, float)) and done["duration"] >= 0
        again = await finish(client, job, status="succeeded", exit_code=0, line_count=3)
        assert again["status"] == "succeeded"
        assert again["finished_at"] == done["finished_at"]
        # Without line_count the same finish is still the same finish.
        await finish(client, job, status="succeeded", exit_code=0)
        shown = (await client.get(f"/api/jobs/{job['id']}")).json()
        assert shown["status"] == "succeeded" and shown["exit_code"] == 0


@pytest.mark.parametrize(
    "second",
    [
        {"status": "failed", "exit_code": 0},
        {"status": "succeeded", "exit_code": 1},
        {"status": "canceled", "exit_code": None},
        {"status": "succeeded", "exit_code": None},
    ],
)
async def test_different_finish_after_finish_is_409(
    shared_server: ServerProcess, second: dict[str, Any]
) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "fin2")
        await finish(client, job, status="succeeded", exit_code=0)
        r = await post_finish(client, job, **second)
        assert_error(r, 409, "conflict")
        shown = (await client.get(f"/api/jobs/{job['id']}")).json()
        assert shown["status"] == "succeeded" and shown["exit_code"] == 0


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_finish_other_statuses(shared_server: ServerProcess, status: str) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, status)
        done = await finish(client, job, status=status, exit_code=None)
        assert done["status"] == status and done["exit_code"] is None


async def test_finish_line_count_mismatch_is_409(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "lc")
        await append(client, job, ["a", "b"])
        for wrong in (1, 3, 0):
            r = await post_finish(client, job, line_count=wrong)
            body = assert_error(r, 409, "conflict")
            assert body.get("line_count") == 2
        shown = (await client.get(f"/api/jobs/{job['id']}")).json()
        assert shown["status"] == "running"
        # The job still takes lines and finishes once they match.
        await append(client, job, ["c"])
        assert (await finish(client, job, line_count=3))["status"] == "succeeded"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "running", "exit_code": 0},
        {"status": "ok", "exit_code": 0},
        {"status": None, "exit_code": 0},
        {"exit_code": 0},
        {"status": "SUCCEEDED", "exit_code": 0},
        {"status": "succeeded", "exit_code": "0"},
        {"status": "succeeded", "exit_code": 1.5},
        {"status": "succeeded", "exit_code": True},
        {"status": "succeeded", "exit_code": 2**40},
        {"status": "succeeded", "exit_code": 0, "line_count": -1},
        {"status": "succeeded", "exit_code": 0, "line_count": "0"},
    ],
)
async def test_finish_rejects_bad_body(
    shared_server: ServerProcess, running: dict[str, Any], body: dict[str, Any]
) -> None:
    async with client_for(shared_server) as client:
        job = running
        r = await client.post(
            f"/api/jobs/{job['id']}/finish", json=body, headers=bearer(job["token"])
        )
        assert_error(r, 400, "bad_request")
        assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "running"


async def test_finish_negative_exit_code_allowed(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "signal")
        assert (await finish(client, job, status="failed", exit_code=-9))["exit_code"] == -9


async def test_finish_needs_the_job_token(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "guarded")
        other = await new_job(client, "other")
        r = await client.post(
            f"/api/jobs/{job['id']}/finish", json={"status": "succeeded", "exit_code": 0}
        )
        assert_error(r, 401, "unauthorized")
        assert_error(await post_finish(client, job, token="nope"), 403, "forbidden")
        assert_error(await post_finish(client, job, token=other["token"]), 403, "forbidden")
        assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "running"


# --- keep-alive after an early refusal ------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return status, body


async def _refusal_then_reuse(
    server: ServerProcess, head: bytes, body: bytes, expected_status: int
) -> None:
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            # The head first; the body only after a pause, as a slow client would send it.
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body))
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(body)
            await writer.drain()
            status, answer = await _read_response(reader)
            assert status == expected_status, answer
            # The connection must still take the next request.
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            try:
                status, answer = await _read_response(reader)
            except asyncio.IncompleteReadError:
                raise AssertionError(
                    "the server closed the keep-alive connection after the refusal"
                ) from None
            assert status == 200, answer
        finally:
            writer.close()


async def test_connection_reusable_after_401_on_create(runner_server: ServerProcess) -> None:
    await _refusal_then_reuse(
        runner_server,
        b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n",
        b'{"name": "slow"}',
        401,
    )


async def test_connection_reusable_after_403_on_append(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "ka")
    await _refusal_then_reuse(
        shared_server,
        b"POST /api/jobs/%d/lines HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer wrong\r\n" % job["id"],
        b'{"lines": ["x"]}',
        403,
    )


async def test_connection_reusable_after_415_on_append(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "ka415")
    await _refusal_then_reuse(
        shared_server,
        b"POST /api/jobs/%d/lines HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
        b"Authorization: Bearer %s\r\n" % (job["id"], job["token"].encode()),
        b"\x89PNG....",
        415,
    )


def test_finishing_a_finished_job_with_another_count_says_finished(
    shared_server: ServerProcess,
) -> None:
    """Regression: the line_count check ran first and hid that the job had already ended."""
    base = shared_server.url
    job = httpx.post(f"{base}/api/jobs", json={"name": "twice"}).json()
    headers = {"Authorization": f"Bearer {job['token']}"}
    url = f"{base}/api/jobs/{job['id']}/finish"
    assert (
        httpx.post(
            url, json={"status": "failed", "exit_code": 1, "line_count": 0}, headers=headers
        ).status_code
        == 200
    )
    r = httpx.post(url, json={"status": "failed", "exit_code": 1, "line_count": 5}, headers=headers)
    assert r.status_code == 409 and r.json()["reason"] == "finished"
    assert r.json()["line_count"] == 0
