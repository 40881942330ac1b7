"""The lifecycle feed (/api/events) and whole-log search."""

from __future__ import annotations

import asyncio
import json

import httpx
from support.server import ServerProcess, auth, create_job
from support.sse_oracle import Event, SSEParser


async def _collect(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], until: int, seconds: float = 10
) -> list[Event]:
    parser, events = SSEParser(), []
    async with asyncio.timeout(seconds):
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            async for chunk in response.aiter_raw():
                events += parser.feed(chunk)
                if len([e for e in events if e.type == "job"]) >= until:
                    return events
    return events


async def test_events_feed_live_and_resumable(shared_server: ServerProcess) -> None:
    url = shared_server.url
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        cursor = (await client.get("/api/jobs")).json()["events_cursor"]
        sse = {"Accept": "text/event-stream"}
        reader = asyncio.create_task(_collect(client, f"/api/events?after={cursor}", sse, until=3))
        await asyncio.sleep(0.3)
        job = create_job(url, "feed")
        r = await client.post(
            f"/api/jobs/{job['id']}/lines", json={"lines": ["a"] * 5}, headers=auth(job)
        )
        assert r.status_code == 200
        other = create_job(url, "other")
        await client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "failed", "exit_code": 3},
            headers=auth(job),
        )
        events = await reader
        jobs = [e for e in events if e.type == "job"]
        kinds = [(json.loads(e.data)["id"], json.loads(e.data)["kind"]) for e in jobs]
        assert kinds == [(job["id"], "created"), (other["id"], "created"), (job["id"], "finished")]
        ids = [int(e.last_event_id) for e in jobs]
        assert ids == sorted(ids) and ids[0] > cursor
        finished = json.loads(jobs[-1].data)
        assert finished["status"] == "failed" and finished["exit_code"] == 3
        # Resume after the first event: the two later ones come again, nothing else.
        again = await _collect(
            client, "/api/events", {**sse, "Last-Event-ID": str(ids[0])}, until=2
        )
        assert [int(e.last_event_id) for e in again if e.type == "job"] == ids[1:]


async def test_progress_events_report_growth(shared_server: ServerProcess) -> None:
    url = shared_server.url
    job = create_job(url, "grows")
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        parser = SSEParser()
        seen: dict[int, int] = {}
        async with asyncio.timeout(10):
            async with client.stream(
                "GET", "/api/events", headers={"Accept": "text/event-stream"}
            ) as response:
                await client.post(
                    f"/api/jobs/{job['id']}/lines", json={"lines": ["x"] * 7}, headers=auth(job)
                )
                async for chunk in response.aiter_raw():
                    for event in parser.feed(chunk):
                        if event.type == "progress":
                            for item in json.loads(event.data)["jobs"]:
                                seen[item["id"]] = item["line_count"]
                    if seen.get(job["id"]) == 7:
                        break
        assert seen[job["id"]] == 7


async def test_search_matches_visible_text_over_whole_log(shared_server: ServerProcess) -> None:
    url = shared_server.url
    job = create_job(url, "search")
    lines = [f"line {n}" for n in range(1, 12001)]
    lines[2] = "\x1b[31mERR\x1b[0mOR: disk full"  # colored in the middle of the word
    lines[11000] = "error: again"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for start in range(0, len(lines), 4000):
            r = await client.post(
                f"/api/jobs/{job['id']}/lines",
                json={"lines": lines[start : start + 4000]},
                headers=auth(job),
            )
            assert r.status_code == 200
        r = await client.get(f"/api/jobs/{job['id']}/search", params={"q": "error"})
        assert r.json() == {
            "query": "error",
            "after": 0,
            "count": 2,
            "lines": [3, 11001],
            "truncated": False,
        }
        r = await client.get(f"/api/jobs/{job['id']}/search", params={"q": "error", "case": "1"})
        assert r.json()["lines"] == [11001]
        r = await client.get(f"/api/jobs/{job['id']}/search", params={"q": "line 1", "limit": 5})
        body = r.json()
        assert body["lines"] == [1, 10, 11, 12, 13] and body["truncated"]
        assert body["count"] == 1 + 10 + 100 + 1000 + 2001 - 1  # "line 1..." minus line 11001
        # The next page of hits starts after the last one; count is of what is after it.
        r = await client.get(
            f"/api/jobs/{job['id']}/search", params={"q": "line 1", "limit": 5, "after": 13}
        )
        body = r.json()
        assert body["lines"] == [14, 15, 16, 17, 18] and body["after"] == 13
        assert body["count"] == 1 + 10 + 100 + 1000 + 2001 - 1 - 5
        r = await client.get(f"/api/jobs/{job['id']}/search", params={"q": "error", "after": 11001})
        assert r.json()["lines"] == [] and r.json()["count"] == 0
        r = await client.get(f"/api/jobs/{job['id']}/search", params={"q": "x", "after": "-1"})
        assert r.status_code == 400 and r.json()["field"] == "after"
        r = await client.get(f"/api/jobs/{job['id']}/search")
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = await client.get("/api/jobs/999999/search", params={"q": "x"})
        assert r.status_code == 404


async def test_regex_search_is_bounded_and_refuses_bad_patterns(
    shared_server: ServerProcess,
) -> None:
    url = shared_server.url
    job = create_job(url, "regex search")
    # Catastrophic for a backtracking engine: (a+)+$ on a's followed by something else.
    lines = ["a" * 40 + "!" for _ in range(20_000)] + ["\x1b[1mERROR\x1b[0m 42: disk full"]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for start in range(0, len(lines), 5000):
            r = await client.post(
                f"/api/jobs/{job['id']}/lines",
                json={"lines": lines[start : start + 5000]},
                headers=auth(job),
            )
            assert r.status_code == 200
        search = f"/api/jobs/{job['id']}/search"
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await client.get(search, params={"q": "(a+)+$", "regex": "1"})
        assert r.status_code == 200 and loop.time() - started < 5
        assert r.json() == {
            "query": "(a+)+$",
            "after": 0,
            "count": 0,
            "lines": [],
            "truncated": False,
            "regex": True,
            "complete": True,
            "scanned_to": None,
        }
        r = await client.get(search, params={"q": r"^error \d+:", "regex": "1"})
        assert r.json()["lines"] == [20_001]
        r = await client.get(search, params={"q": r"^error \d+:", "regex": "1", "case": "1"})
        assert r.json()["lines"] == []
        r = await client.get(search, params={"q": "a{40}!", "regex": "1", "limit": 3})
        body = r.json()
        assert body["lines"] == [1, 2, 3] and body["count"] == 20_000 and body["truncated"]
        # Without regex=1 the text is literal, as before.
        r = await client.get(search, params={"q": "a{40}!"})
        assert r.json()["count"] == 0 and "regex" not in r.json()
        for bad in ["(a", r"(a)\1", "a{2000}", r"\Aa", r"a\z", "(?<=a)b"]:
            r = await client.get(search, params={"q": bad, "regex": "1"})
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["field"] == "q" and r.json()["error"] == "bad_request"
        r = await client.get(search, params={"q": r"\\A", "regex": "1"})  # an escaped backslash
        assert r.status_code == 200


def test_page_search_agrees_with_line_by_line_matching() -> None:
    """`search.matching` scans a page as one string; it must find exactly the lines a
    line-by-line scan of the visible text finds, whatever the escapes and the Unicode."""
    import random

    from logstream.server.search import _ANSI, matching

    def visible(text: str) -> str:  # the reference: one line at a time
        return _ANSI.sub("", text)

    rng = random.Random(7)
    pieces = [
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
        " ",
        "\r",
        "\t",
        "é",
        "\x1b]0;title",
        "\x07",
        "ß",
        "x",
    ]
    rows = [
        (n, 0, "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))))
        for n in range(1, 3001)
    ]
    for query in [
        "error",
        "err",
        "or",
        "σ",
        "ς",
        "i̇",
        "k",
        "ss",
        "31m",
        "[31m",
        "\x1b",
        "title",
        " x",
        "r\r",
        "é",
        "ΑΣ",
    ]:
        for case in (False, True):
            needle = query if case else query.lower()
            expected = [
                no
                for no, _ts, text in rows
                if needle in (visible(text) if case else visible(text).lower())
            ]
            assert matching(rows, needle, case) == expected, (query, case)
    assert matching(rows, "a\nb", False) == []
    assert matching([], "x", False) == []
