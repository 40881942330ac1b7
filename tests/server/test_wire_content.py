"""What a line may hold, checked on the wire three ways: the SSE stream (strict parser), the
raw text log, and the JSON lines page. Plus cut lines and oversized bodies."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from support.api import (
    SSE,
    TIMEOUT,
    Tail,
    all_lines,
    append,
    bearer,
    finish,
    new_job,
    post_text,
    read_sse,
    read_text,
    text_lines,
)
from support.server import ServerProcess
from support.sse_oracle import Event, SSEParser

FFFD = "\ufffd"

# (id, line as sent, line as stored). Lines sent both as JSON elements and in text bodies.
COMMON: list[tuple[str, str]] = [
    ("plain", "hello world"),
    ("ansi", "\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[0m \x1b[2K\x1b[1G"),
    ("osc", "\x1b]0;window title\x07after"),
    ("tabs", "a\tb\t\tc\t"),
    ("emoji", "build ✅ 🚀 👩‍💻 🏳️‍🌈"),
    ("cjk", "构建成功 ビルド完了 빌드 성공"),
    ("rtl", "שלום עולם مرحبا بالعالم"),
    ("combining", "e\u0301 a\u0308 \u0928\u093f"),
    ("leading spaces", "    indented four"),
    ("one leading space", " x"),
    ("trailing spaces", "trail   "),
    ("only spaces", "   "),
    ("data colon", "data: x"),
    ("data no space", "data:x"),
    ("comment-like", ": comment-like"),
    ("colon", ":"),
    ("id field", "id: 5"),
    ("empty id field", "id:"),
    ("event field", "event: end"),
    ("retry field", "retry: 10"),
    ("empty", ""),
    ("progress", "10%\r20%\r30%"),
    ("leading CR", "\rstart"),
    ("double CR", "a\r\rb"),
    ("unicode separators", "ls\u2028ps\u2029nel\x85vt\x0bff\x0c"),
    ("bom inside", "\ufeffbom"),
    ("zero width", "a\u200bb\u200dc"),
    ("quotes backslash", 'say "hi" \\n \\r not escapes'),
    ("html", "<script>alert(1)</script> &amp; &lt;"),
    ("bell backspace", "\x07bell\x08\x08"),
    ("del and c1", "\x7f\x9b"),
    ("long", "x" * 5000 + "END"),
    ("many colons", "a:b:c::d: :"),
    ("empty again", ""),
]

JSON_ONLY: list[tuple[str, str, str]] = [
    ("trailing CR", "done\r", "done\r"),
    ("lone CR", "\r", "\r"),
    ("nul", "a\x00b", f"a{FFFD}b"),
    ("nul only", "\x00", FFFD),
    ("lone surrogate", "x\ud800y", f"x{FFFD}y"),
]

TEXT_ONLY: list[tuple[str, bytes, str]] = [
    ("invalid utf-8", b"ok \xff\xfe bad", f"ok {FFFD}{FFFD} bad"),
    ("truncated sequence", b"cut \xe2\x82", f"cut {FFFD}"),
    ("encoded surrogate", b"s \xed\xa0\x80 s", f"s {FFFD * 3} s"),
    ("overlong", b"\xc0\xaf", FFFD * 2),
    ("nul byte", b"a\x00b", f"a{FFFD}b"),
    ("latin-1", "caf\xe9".encode("latin-1"), f"caf{FFFD}"),
]

JSON_CASES = [(i, s, s) for i, s in COMMON] + JSON_ONLY
TEXT_CASES = [(i, s.encode("utf-8"), s) for i, s in COMMON] + TEXT_ONLY


def text_body(cases: list[tuple[str, bytes, str]]) -> bytes:
    """The lines joined with a mix of LF and CR LF line ends."""
    return b"".join(raw + (b"\r\n" if n % 3 == 0 else b"\n") for n, (_, raw, _) in enumerate(cases))


def read_views(client: httpx.Client, job_id: int) -> dict[str, Any]:
    """The three views of a finished job, read synchronously (with read timeouts)."""
    parser = SSEParser()
    events: list[Event] = []
    raw = bytearray()
    deadline = time.monotonic() + TIMEOUT
    with client.stream("GET", f"/api/jobs/{job_id}/log", headers=SSE) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            raw += chunk
            events += parser.feed(chunk)
            assert time.monotonic() < deadline, "SSE read took too long"
    text = client.get(f"/api/jobs/{job_id}/log")
    assert text.status_code == 200
    lines = client.get(f"/api/jobs/{job_id}/lines", params={"limit": 10000})
    assert lines.status_code == 200
    return {
        "events": events,
        "raw": bytes(raw),
        "text": text_lines(text.content),
        "lines": lines.json()["lines"],
    }


@pytest.fixture(scope="module")
def views(shared_server: ServerProcess) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        # JSON: all lines in one request (ensure_ascii so a lone surrogate can be sent).
        job = client.post("/api/jobs", json={"name": "json content"}).json()
        body = json.dumps({"lines": [sent for _, sent, _ in JSON_CASES]}).encode()
        r = client.post(
            f"/api/jobs/{job['id']}/lines",
            content=body,
            headers={**bearer(job["token"]), "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["line_count"] == len(JSON_CASES)
        r = client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "succeeded", "exit_code": 0},
            headers=bearer(job["token"]),
        )
        assert r.status_code == 200, r.text
        out["json"] = read_views(client, job["id"])
        out["json"]["count"] = len(JSON_CASES)
        # Text: one text/plain chunk.
        job = client.post("/api/jobs", json={"name": "text content"}).json()
        r = client.post(
            f"/api/jobs/{job['id']}/lines",
            content=text_body(TEXT_CASES),
            headers={**bearer(job["token"]), "Content-Type": "text/plain"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["line_count"] == len(TEXT_CASES)
        r = client.post(
            f"/api/jobs/{job['id']}/finish",
            json={"status": "failed", "exit_code": 2},
            headers=bearer(job["token"]),
        )
        assert r.status_code == 200, r.text
        out["text"] = read_views(client, job["id"])
        out["text"]["count"] = len(TEXT_CASES)
    return out


def _check(view: dict[str, Any], n: int, stored: str) -> None:
    events = [e for e in view["events"] if e.type == "message"]
    event = events[n - 1]
    assert event.data == stored.replace("\r", "\n")
    assert event.last_event_id == str(n)
    assert view["text"][n - 1] == stored
    row = view["lines"][n - 1]
    assert row["n"] == n
    assert row["text"] == stored


@pytest.mark.parametrize("n,case", list(enumerate(JSON_CASES, 1)), ids=[c[0] for c in JSON_CASES])
def test_json_line_on_the_wire(
    views: dict[str, dict[str, Any]], n: int, case: tuple[str, str, str]
) -> None:
    _check(views["json"], n, case[2])


@pytest.mark.parametrize("n,case", list(enumerate(TEXT_CASES, 1)), ids=[c[0] for c in TEXT_CASES])
def test_text_line_on_the_wire(
    views: dict[str, dict[str, Any]], n: int, case: tuple[str, bytes, str]
) -> None:
    _check(views["text"], n, case[2])


@pytest.mark.parametrize("mode,status,exit_code", [("json", "succeeded", 0), ("text", "failed", 2)])
def test_whole_stream_shape(
    views: dict[str, dict[str, Any]], mode: str, status: str, exit_code: int
) -> None:
    view = views[mode]
    count = view["count"]
    events = view["events"]
    assert [e.type for e in events] == ["message"] * count + ["end"]
    assert [e.last_event_id for e in events[:-1]] == [str(n) for n in range(1, count + 1)]
    assert json.loads(events[-1].data) == {
        "status": status,
        "exit_code": exit_code,
        "line_count": count,
    }
    assert len(view["text"]) == count
    assert len(view["lines"]) == count
    raw: bytes = view["raw"]
    assert b"\r" not in raw, "a raw CR on the wire would split a data line (PITFALLS 10)"
    assert raw.startswith(b"retry: ")
    assert b"\xef\xbb\xbf" not in raw.replace("\ufeffbom".encode(), b"")


async def test_content_through_the_live_tail(shared_server: ServerProcess) -> None:
    """The same lines, appended while a reader is already following the job."""
    async with httpx.AsyncClient(base_url=shared_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "live content")
        async with (
            Tail(client, f"/api/jobs/{job['id']}/log") as tail,
            Tail(
                client, f"/api/jobs/{job['id']}/log", params={"follow": "1"}, sse=False
            ) as text_tail,
        ):
            await tail.started()
            await text_tail.started()
            for i in range(0, len(JSON_CASES), 7):  # several appends, so several wake-ups
                batch = [sent for _, sent, _ in JSON_CASES[i : i + 7]]
                async with asyncio.timeout(TIMEOUT):
                    r = await client.post(
                        f"/api/jobs/{job['id']}/lines",
                        content=json.dumps({"lines": batch}).encode(),
                        headers={**bearer(job["token"]), "Content-Type": "application/json"},
                    )
                assert r.status_code == 200, r.text
            await finish(client, job)
            await tail.ended()
            await text_tail.ended()
        expected = [stored for _, _, stored in JSON_CASES]
        lines = [e for e in tail.events if e.type == "message"]
        assert [e.data for e in lines] == [s.replace("\r", "\n") for s in expected]
        assert [e.last_event_id for e in lines] == [str(n) for n in range(1, len(expected) + 1)]
        assert tail.events[-1].type == "end"
        assert b"\r" not in tail.raw
        assert text_lines(bytes(text_tail.raw)) == expected


async def test_text_chunk_edges(shared_server: ServerProcess) -> None:
    """Chunk-level rules of text bodies: a final line without LF counts; blank lines count."""
    async with httpx.AsyncClient(base_url=shared_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "edges")
        for body, count in [(b"no newline at end", 1), (b"\n\n", 3), (b"a\r\nb", 5), (b"\r\n", 6)]:
            r = await post_text(client, job, body)
            assert r.status_code == 200 and r.json()["line_count"] == count, r.text
        await finish(client, job)
        expected = ["no newline at end", "", "", "a", "b", ""]
        assert [row["text"] for row in await all_lines(client, job["id"])] == expected
        assert text_lines((await read_text(client, job["id"])).content) == expected
        result = await read_sse(client, f"/api/jobs/{job['id']}/log")
        assert [e.data for e in result.lines] == expected


# --- line length limit -----------------------------------------------------------------------

LIMIT = 100
BODY_LIMIT = 4096
MARKER = re.compile(r" \[logstream: line cut, (\d+) more characters\]$")


@pytest.fixture(scope="module")
def cut_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("cut"),
        env={"LOGSTREAM_MAX_LINE_CHARS": str(LIMIT), "LOGSTREAM_MAX_BODY_BYTES": str(BODY_LIMIT)},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


def assert_cut(original: str, stored: str, limit: int) -> None:
    assert len(stored) <= limit, (len(original), len(stored))
    match = MARKER.search(stored)
    assert match, stored[-80:]
    assert "[logstream: line cut" in stored
    kept = stored[: match.start()]
    assert original.startswith(kept) and kept
    assert len(kept) + int(match.group(1)) == len(original)


LONG_LINES = [
    "a" * LIMIT,
    "b" * (LIMIT + 1),
    "c" * 150,
    "🚀" * 300,
    "short",
    "d" * (LIMIT + 30),
    "\re" * 80,
]


async def _check_cut_job(client: httpx.AsyncClient, job: dict[str, Any]) -> None:
    await finish(client, job)
    rows = [row["text"] for row in await all_lines(client, job["id"])]
    assert rows[0] == "a" * LIMIT
    assert rows[4] == "short"
    for i in (1, 2, 3, 5, 6):
        assert_cut(LONG_LINES[i], rows[i], LIMIT)
    assert text_lines((await read_text(client, job["id"])).content) == rows
    result = await read_sse(client, f"/api/jobs/{job['id']}/log")
    assert [e.data for e in result.lines] == [r.replace("\r", "\n") for r in rows]
    assert "[logstream: line cut" in result.lines[1].data


async def test_long_json_lines_are_cut_with_marker(cut_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=cut_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "cut json")
        r = await append(client, job, LONG_LINES)
        assert r["cut"] == 5
        assert r["line_count"] == len(LONG_LINES)
        # A retry of the same request matches the stored (cut) lines: nothing new, no 409.
        r = await append(client, job, LONG_LINES, first=1)
        assert (r["stored"], r["skipped"], r["line_count"]) == (0, len(LONG_LINES), len(LONG_LINES))
        await _check_cut_job(client, job)


async def test_long_text_lines_are_cut_with_marker(cut_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=cut_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "cut text")
        body = "\n".join(LONG_LINES).encode() + b"\n"
        r = await post_text(client, job, body)
        assert r.status_code == 200, r.text
        assert r.json()["cut"] == 5
        r = await post_text(client, job, body, first=1)
        assert r.status_code == 200 and r.json()["stored"] == 0, r.text
        await _check_cut_job(client, job)


async def test_no_cut_reported_for_short_lines(cut_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=cut_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "fine")
        assert (await append(client, job, ["x" * LIMIT, ""]))["cut"] == 0


async def test_default_limit_is_65536_chars(shared_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=shared_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "default limit")
        at, over = "k" * 65536, "m" * 65537
        r = await append(client, job, [at, over])
        assert r["cut"] == 1
        rows = [row["text"] for row in await all_lines(client, job["id"])]
        assert rows[0] == at
        assert_cut(over, rows[1], 65536)


# --- body size limit -------------------------------------------------------------------------


async def _post_fresh(server: ServerProcess, path: str, **kwargs: Any) -> httpx.Response:
    # A fresh client each time: after refusing a large body the server may close the link.
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        async with asyncio.timeout(TIMEOUT):
            return await client.post(path, **kwargs)


def _assert_413(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "too_large"


async def test_oversized_bodies_are_413(cut_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=cut_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "big body")
        await append(client, job, ["before"])
    path = f"/api/jobs/{job['id']}/lines"
    json_body = json.dumps({"lines": ["y" * 50] * 100}).encode()
    assert len(json_body) > BODY_LIMIT
    _assert_413(
        await _post_fresh(
            cut_server,
            path,
            content=json_body,
            headers={**bearer(job["token"]), "Content-Type": "application/json"},
        )
    )
    _assert_413(
        await _post_fresh(
            cut_server,
            path,
            content=b"z\n" * 3000,
            headers={**bearer(job["token"]), "Content-Type": "text/plain"},
        )
    )

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b"w" * 999 + b"\n"

    _assert_413(
        await _post_fresh(
            cut_server,
            path,
            content=chunks(),
            headers={**bearer(job["token"]), "Content-Type": "text/plain"},
        )
    )
    _assert_413(
        await _post_fresh(cut_server, "/api/jobs", json={"name": "x", "meta": {"pad": "p" * 5000}})
    )
    async with httpx.AsyncClient(base_url=cut_server.url, timeout=TIMEOUT) as client:
        assert [row["text"] for row in await all_lines(client, job["id"])] == ["before"]


async def test_body_at_the_limit_is_accepted(cut_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=cut_server.url, timeout=TIMEOUT) as client:
        job = await new_job(client, "at limit")
        body = (b"q" * 63 + b"\n") * (BODY_LIMIT // 64)
        assert len(body) == BODY_LIMIT
        r = await post_text(client, job, body)
        assert r.status_code == 200, r.text
        assert r.json()["line_count"] == BODY_LIMIT // 64
