"""Reading a log: the SSE stream (headers, retry, end, resume), raw text and follow, JSON pages."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.api import (
    ISO_RE,
    SSE,
    TIMEOUT,
    Tail,
    append,
    client_for,
    finish,
    make_job_sync,
    new_job,
    read_sse,
    read_text,
    text_lines,
)
from support.server import ServerProcess


async def finished_job(
    client: httpx.AsyncClient, count: int = 5, status: str = "succeeded", exit_code: int | None = 0
) -> dict[str, Any]:
    job = await new_job(client, "finished")
    if count:
        await append(client, job, [f"line {n}" for n in range(1, count + 1)])
    await finish(client, job, status=status, exit_code=exit_code)
    return job


@pytest.fixture(scope="module")
def five(shared_server: ServerProcess) -> dict[str, Any]:
    """A finished job with lines "line 1".."line 5", for tests that only read it."""
    return make_job_sync(
        shared_server.url, "five", [f"line {n}" for n in range(1, 6)], finish_status="succeeded"
    )


def ids(events: list[Any]) -> list[str]:
    return [e.last_event_id for e in events if e.type == "message"]


# --- headers and framing ---------------------------------------------------------------------


async def test_sse_headers(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client)
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        resp = result.response
        assert resp is not None and resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-accel-buffering"] == "no"
        assert "content-length" not in resp.headers
        assert "content-encoding" not in resp.headers


async def test_sse_retry_field_comes_first(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client)
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        assert result.raw.startswith(b"retry: ")
        assert result.parser.retry == 2000  # the default LOGSTREAM_RETRY_MS


async def test_sse_replay_then_end_then_close(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=5, status="failed", exit_code=7)
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        assert result.closed
        assert [(e.type, e.data, e.last_event_id) for e in result.events] == [
            *[("message", f"line {n}", str(n)) for n in range(1, 6)],
            ("end", result.events[-1].data, "5"),
        ]
        assert result.end_data() == {"status": "failed", "exit_code": 7, "line_count": 5}
        # Nothing follows the end event but the close.
        assert result.raw.rstrip(b"\n").endswith(result.events[-1].data.encode())


async def test_sse_of_empty_finished_job(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=0, status="canceled", exit_code=None)
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        assert [e.type for e in result.events] == ["end"]
        assert result.end_data() == {"status": "canceled", "exit_code": None, "line_count": 0}


async def test_format_query_selects_sse_or_text(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=2)
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(f"/api/jobs/{job['id']}/log", params={"format": "sse"})
            assert r.headers["content-type"] == "text/event-stream"
            assert b"id: 2\n" in r.content
            r = await client.get(
                f"/api/jobs/{job['id']}/log", params={"format": "text"}, headers=SSE
            )
            assert r.headers["content-type"].startswith("text/plain")
            assert r.content == b"line 1\nline 2\n"
            r = await client.get(f"/api/jobs/{job['id']}/log", params={"format": "xml"})
            assert r.status_code == 400 and r.json()["error"] == "bad_request"


async def test_accept_with_several_types_still_gets_sse(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=1)
        result = await read_sse(
            client, f"/api/jobs/{job['id']}/log", headers={"Accept": "text/event-stream, */*;q=0.1"}
        )
        assert result.response is not None
        assert result.response.headers["content-type"] == "text/event-stream"
        assert ids(result.events) == ["1"]


# --- where the stream starts -----------------------------------------------------------------


@pytest.mark.parametrize(
    "params,headers,expected",
    [
        ({"after": "2"}, {}, ["3", "4", "5"]),
        ({"after": "0"}, {}, ["1", "2", "3", "4", "5"]),
        ({"after": "5"}, {}, []),
        ({"after": "50"}, {}, []),
        ({"tail": "2"}, {}, ["4", "5"]),
        ({"tail": "0"}, {}, []),
        ({"tail": "100"}, {}, ["1", "2", "3", "4", "5"]),
        ({}, {"Last-Event-ID": "3"}, ["4", "5"]),
        ({}, {"Last-Event-ID": "0"}, ["1", "2", "3", "4", "5"]),
        ({"after": "1"}, {"Last-Event-ID": "3"}, ["4", "5"]),
        ({"after": "4"}, {"Last-Event-ID": "1"}, ["2", "3", "4", "5"]),
        ({"tail": "1"}, {"Last-Event-ID": "2"}, ["3", "4", "5"]),
        ({"after": "3", "tail": "4"}, {}, ["4", "5"]),
    ],
)
async def test_start_position(
    shared_server: ServerProcess,
    five: dict[str, Any],
    params: dict[str, str],
    headers: dict[str, str],
    expected: list[str],
) -> None:
    async with client_for(shared_server) as client:
        job = five
        result = await read_sse(
            client, f"/api/jobs/{job['id']}/log", headers=headers, params=params
        )
        assert result.response is not None and result.response.status_code == 200
        assert ids(result.events) == expected
        assert [e.data for e in result.lines] == [f"line {n}" for n in expected]
        assert result.events[-1].type == "end"


@pytest.mark.parametrize(
    "value", ["abc", "-1", "1.5", "+3", "3a", "0x1", "", "1 2", "99999999999999999999"]
)
async def test_invalid_last_event_id_is_400(
    shared_server: ServerProcess, five: dict[str, Any], value: str
) -> None:
    async with client_for(shared_server) as client:
        job = five
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(
                f"/api/jobs/{job['id']}/log", headers={**SSE, "Last-Event-ID": value}
            )
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == "bad_request"


@pytest.mark.parametrize(
    "params",
    [
        {"after": "abc"},
        {"after": "-1"},
        {"tail": "x"},
        {"tail": "-2"},
        {"after": "1e3"},
        {"after": "9" * 30},
    ],
)
async def test_invalid_after_or_tail_is_400(
    shared_server: ServerProcess, five: dict[str, Any], params: dict[str, str]
) -> None:
    async with client_for(shared_server) as client:
        job = five
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(f"/api/jobs/{job['id']}/log", params=params, headers=SSE)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "bad_request"


async def test_reconnect_to_finished_job_at_its_end_is_204(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=3)
        for last in ("3", "4", "1000"):
            async with asyncio.timeout(TIMEOUT):
                r = await client.get(
                    f"/api/jobs/{job['id']}/log", headers={**SSE, "Last-Event-ID": last}
                )
            assert r.status_code == 204, (last, r.status_code, r.text)
            assert r.content == b""
        # One line short of the end: the missing line, then the end event.
        result = await read_sse(
            client, f"/api/jobs/{job['id']}/log", headers={"Last-Event-ID": "2"}
        )
        assert result.response is not None and result.response.status_code == 200
        assert ids(result.events) == ["3"] and result.events[-1].type == "end"


@pytest.mark.parametrize("last", ["2", "50"])
async def test_reconnect_to_running_job_at_or_past_its_end_keeps_streaming(
    shared_server: ServerProcess, last: str
) -> None:
    """At its end the stream goes on with the next line. An id past the end cannot come from
    this job's stream (a store restored from a backup, an id from elsewhere): the stream
    resumes from the job's end too, so the lines stored from now on are not skipped."""
    async with client_for(shared_server) as client:
        job = await new_job(client, "resume live")
        await append(client, job, ["a", "b"])
        async with Tail(
            client, f"/api/jobs/{job['id']}/log", headers={"Last-Event-ID": last}
        ) as tail:
            await tail.started()
            assert tail.result.response is not None
            assert tail.result.response.status_code == 200
            await append(client, job, ["c", "d"])
            await tail.wait(lambda t: len(t.events) >= 2, what="lines 3 and 4")
            await finish(client, job)
            await tail.ended()
        assert [(e.type, e.data, e.last_event_id) for e in tail.events[:2]] == [
            ("message", "c", "3"),
            ("message", "d", "4"),
        ]
        assert tail.events[-1].type == "end" and tail.events[-1].last_event_id == "4"


# --- live ------------------------------------------------------------------------------------


async def test_live_sse_receives_appends_then_end(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "live")
        await append(client, job, ["before 1", "before 2"])
        async with Tail(client, f"/api/jobs/{job['id']}/log") as tail:
            await tail.wait(lambda t: len(t.events) >= 2, what="replayed lines")
            for round_ in range(5):
                await append(client, job, [f"r{round_} a", f"r{round_} b"])
                await tail.wait(
                    lambda t, n=4 + 2 * round_: len(t.events) >= n, what=f"round {round_}"
                )
            assert not tail.closed
            await finish(client, job, status="succeeded", exit_code=0)
            await tail.ended()
        expected = ["before 1", "before 2"] + [f"r{r} {x}" for r in range(5) for x in "ab"]
        assert [e.data for e in tail.result.lines] == expected
        assert ids(tail.events) == [str(n) for n in range(1, 13)]
        assert json.loads(tail.events[-1].data) == {
            "status": "succeeded",
            "exit_code": 0,
            "line_count": 12,
        }


async def test_many_lines_replay_across_pages(shared_server: ServerProcess) -> None:
    """More lines than one replay page (2000): all arrive, in order, no duplicates."""
    async with client_for(shared_server) as client:
        job = await new_job(client, "many")
        total = 4500
        for start in range(0, total, 1500):
            await append(client, job, [f"n{i}" for i in range(start + 1, start + 1501)])
        await finish(client, job)
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        assert ids(result.events) == [str(n) for n in range(1, total + 1)]
        assert [e.data for e in result.lines] == [f"n{i}" for i in range(1, total + 1)]
        text = await read_text(client, job["id"])
        assert text_lines(text.content) == [f"n{i}" for i in range(1, total + 1)]


async def test_several_readers_of_one_live_job(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "fan-out")
        await append(client, job, ["zero"])
        tails = [Tail(client, f"/api/jobs/{job['id']}/log") for _ in range(4)]
        tails.append(Tail(client, f"/api/jobs/{job['id']}/log", params={"after": "1"}))
        for tail in tails:
            await tail.__aenter__()
        try:
            for tail in tails:
                await tail.started()
            for i in range(1, 31):
                await append(client, job, [f"line {i}"])
            await finish(client, job)
            for tail in tails:
                await tail.ended()
        finally:
            for tail in tails:
                await tail.__aexit__(None, None, None)
        for tail in tails[:4]:
            assert ids(tail.events) == [str(n) for n in range(1, 32)]
        assert ids(tails[4].events) == [str(n) for n in range(2, 32)]


# --- heartbeat -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heartbeat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("heartbeat"), env={"LOGSTREAM_HEARTBEAT": "0.3"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


async def test_idle_stream_sends_heartbeat_comments(heartbeat_server: ServerProcess) -> None:
    async with client_for(heartbeat_server) as client:
        job = await new_job(client, "idle")
        await append(client, job, ["only line"])
        async with Tail(client, f"/api/jobs/{job['id']}/log") as tail:
            await tail.wait(
                lambda t: len(t.result.parser.comments) >= 2,
                timeout=5,
                what="two heartbeat comments",
            )
            comments = [c.strip() for c in tail.result.parser.comments]
            assert all(c == "ping" for c in comments), comments
            # The comments dispatched nothing: only the one line so far.
            assert [(e.type, e.data) for e in tail.events] == [("message", "only line")]
            assert tail.result.parser.last_event_id == "1"
            await append(client, job, ["after idle"])
            await tail.wait(lambda t: len(t.events) >= 2, what="line after idle")
            await finish(client, job)
            await tail.ended()
        assert [e.type for e in tail.events] == ["message", "message", "end"]
        assert ids(tail.events) == ["1", "2"]


async def test_text_follow_survives_idle_periods(heartbeat_server: ServerProcess) -> None:
    async with client_for(heartbeat_server) as client:
        job = await new_job(client, "idle text")
        await append(client, job, ["one"])
        async with Tail(
            client, f"/api/jobs/{job['id']}/log", params={"follow": "1"}, sse=False
        ) as tail:
            await tail.wait(lambda t: bytes(t.raw) == b"one\n", what="first line")
            await asyncio.sleep(1.0)  # several heartbeat periods
            assert bytes(tail.raw) == b"one\n", "heartbeats must not add text to a text log"
            await append(client, job, ["two"])
            await finish(client, job)
            await tail.ended()
        assert bytes(tail.raw) == b"one\ntwo\n"


# --- raw text --------------------------------------------------------------------------------


async def test_text_log_of_finished_job(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=3)
        r = await read_text(client, job["id"])
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.content == b"line 1\nline 2\nline 3\n"
        r = await read_text(client, job["id"], after=1)
        assert r.content == b"line 2\nline 3\n"
        r = await read_text(client, job["id"], tail=1)
        assert r.content == b"line 3\n"


async def test_text_log_of_running_job_returns_what_is_there(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "running text")
        assert (await read_text(client, job["id"])).content == b""
        await append(client, job, ["a", "b"])
        r = await read_text(client, job["id"])  # returns without waiting for the job
        assert r.content == b"a\nb\n"


async def test_text_follow_streams_new_lines_until_finish(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "follow")
        await append(client, job, ["first"])
        async with Tail(
            client, f"/api/jobs/{job['id']}/log", params={"follow": "1"}, sse=False
        ) as tail:
            await tail.wait(lambda t: bytes(t.raw) == b"first\n", what="first line")
            resp = tail.result.response
            assert resp is not None
            assert resp.headers["content-type"] == "text/plain; charset=utf-8"
            assert resp.headers["cache-control"] == "no-cache"
            assert resp.headers["x-accel-buffering"] == "no"
            await append(client, job, ["second", "third\rprogress"])
            await tail.wait(lambda t: bytes(t.raw).endswith(b"progress\n"), what="more lines")
            assert not tail.closed
            await finish(client, job)
            await tail.ended()
        assert bytes(tail.raw) == b"first\nsecond\nthird\rprogress\n"


async def test_text_follow_of_finished_job_ends(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await finished_job(client, count=2)
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(f"/api/jobs/{job['id']}/log", params={"follow": "1"})
        assert r.content == b"line 1\nline 2\n"


# --- JSON lines ------------------------------------------------------------------------------


async def test_lines_json_page(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "pages")
        await append(client, job, [f"t{i}" for i in range(1, 11)])
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(f"/api/jobs/{job['id']}/lines", params={"after": 3, "limit": 4})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["job_id"] == job["id"]
        assert body["status"] == "running"
        assert body["line_count"] == 10
        assert [row["n"] for row in body["lines"]] == [4, 5, 6, 7]
        assert [row["text"] for row in body["lines"]] == ["t4", "t5", "t6", "t7"]
        for row in body["lines"]:
            assert re.match(ISO_RE, row["ts"]), row
        assert body["lines"] == sorted(body["lines"], key=lambda row: (row["ts"], row["n"]))
        assert body["next_after"] == 7
        last = (
            await client.get(f"/api/jobs/{job['id']}/lines", params={"after": 7, "limit": 4})
        ).json()
        assert [row["n"] for row in last["lines"]] == [8, 9, 10]
        assert last["next_after"] is None
        beyond = (await client.get(f"/api/jobs/{job['id']}/lines", params={"after": 10})).json()
        assert beyond["lines"] == [] and beyond["next_after"] is None
        default = (await client.get(f"/api/jobs/{job['id']}/lines")).json()
        assert [row["n"] for row in default["lines"]] == list(range(1, 11))


async def test_lines_json_timestamps_follow_appends(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "ts")
        await append(client, job, ["early"])
        await asyncio.sleep(0.05)
        await append(client, job, ["late"])
        rows = (await client.get(f"/api/jobs/{job['id']}/lines")).json()["lines"]
        assert rows[0]["ts"] < rows[1]["ts"]
        assert rows[0]["ts"] >= job["created_at"]


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "10001"}, {"limit": "x"}, {"after": "-1"}, {"after": "y"}]
)
async def test_lines_json_bad_params(
    shared_server: ServerProcess, five: dict[str, Any], params: dict[str, str]
) -> None:
    async with client_for(shared_server) as client:
        job = five
        async with asyncio.timeout(TIMEOUT):
            r = await client.get(f"/api/jobs/{job['id']}/lines", params=params)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
