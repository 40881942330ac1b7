"""Hostile input against a real Hypercorn: every item of the input-validation issue as a
regression test, then a property-based pass (Hypothesis) over every JSON body and query
parameter: never a 500, never a stored record that a later read cannot render."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.api import SSE, TIMEOUT, bearer, client_for, new_job
from support.server import ServerProcess, auth, create_job

from logstream.config import Settings
from logstream.server.http.guard import HostRule

FFFD = "\ufffd"
HUGE = "9" * 5000  # past Python's 4,300-digit limit for int()
UNICODE_ONES = ["%D9%A1", "%EF%BC%91", "%F0%9D%9F%8F"]  # Arabic-Indic, fullwidth, math bold


def strict_json(raw: bytes) -> Any:
    """Parse as strict JSON in UTF-8 (no NaN/Infinity, no lone surrogates), or fail."""

    def no_constant(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")

    value = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here
    return value


def raw_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


def statuses(answer: bytes) -> list[int]:
    return [int(line.split(b" ")[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/")]


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = strict_json(r.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), str)
    return body


def read_views(base: str, job_id: int) -> None:
    """Every read that shows a job renders it as strict JSON."""
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        strict_json(client.get(f"/api/jobs/{job_id}").raise_for_status().content)
        listing = strict_json(client.get("/api/jobs", params={"limit": 500}).content)
        assert any(job["id"] == job_id for job in listing["jobs"])
        replay = events_replay(client, job_id)
        assert replay, "the job's created event is not in the replay"


def events_replay(client: httpx.Client, job_id: int) -> list[dict[str, Any]]:
    """The /api/events replay from the start, up to the events of `job_id`."""
    found: list[dict[str, Any]] = []
    buffer = b""
    deadline = time.monotonic() + TIMEOUT
    with client.stream("GET", "/api/events", params={"after": 0}) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            buffer += chunk
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
                if fields.get(b"event") == b"job":
                    payload = strict_json(fields[b"data"])
                    if payload["id"] == job_id:
                        found.append(payload)
                        return found
            assert time.monotonic() < deadline, "the events replay took too long"
    return found


# --- 2. poisoned meta ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def backend_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on SQLite, or on a fresh PostgreSQL database."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    proc = ServerProcess(tmp_path, database_url=url)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# Sent with ensure_ascii, so lone surrogates travel as \ud800 escapes, which JSON allows.
POISONED = [
    ("value", {"s": "\ud800"}, {"s": FFFD}),
    ("key", {"\udc00k": 1}, {f"{FFFD}k": 1}),
    ("nested", {"a": [{"b": "x\udfffy"}]}, {"a": [{"b": f"x{FFFD}y"}]}),
    ("nul", {"n": "a\x00b"}, {"n": f"a{FFFD}b"}),
]


@pytest.mark.parametrize("case", POISONED, ids=[c[0] for c in POISONED])
def test_lone_surrogates_in_meta_become_fffd_and_render(
    backend_server: ServerProcess, case: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    _, meta, stored = case
    base = backend_server.url
    r = httpx.post(
        f"{base}/api/jobs",
        content=json.dumps({"name": "x\ud800", "meta": meta}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    job = strict_json(r.content)
    assert job["meta"] == stored and job["name"] == f"x{FFFD}"
    read_views(base, job["id"])
    shown = httpx.get(f"{base}/api/jobs/{job['id']}").json()
    assert shown["meta"] == stored


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_400_and_not_stored(
    backend_server: ServerProcess, token: str
) -> None:
    base = backend_server.url
    before = httpx.get(f"{base}/api/jobs").json()["jobs"]
    body = b'{"name": "nan", "meta": {"a": %s}}' % token.encode()
    r = httpx.post(f"{base}/api/jobs", content=body, headers={"Content-Type": "application/json"})
    assert error_of(r, 400)["error"] == "bad_request"
    assert httpx.get(f"{base}/api/jobs").json()["jobs"] == before


def test_records_stored_poisoned_still_render(server: ServerProcess) -> None:
    """A record stored before the input checks (NaN, a lone surrogate in meta) renders as
    strict JSON everywhere: the output is guarded too."""
    job = create_job(server.url, "old")
    with sqlite3.connect(server.workdir / "logstream.db") as db:
        db.execute(
            "UPDATE jobs SET meta = ? WHERE id = ?",
            ('{"s": "\\ud800", "\\udc01": NaN, "i": Infinity}', job["id"]),
        )
    read_views(server.url, job["id"])
    meta = httpx.get(f"{server.url}/api/jobs/{job['id']}").json()["meta"]
    assert meta == {"s": FFFD, FFFD: None, "i": None}


# --- 3. cross-site writes and the Host header ----------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonx",
    ],
)
def test_create_needs_application_json(
    shared_server: ServerProcess, content_type: str | None
) -> None:
    base = shared_server.url
    name = f"csrf {content_type}"
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = httpx.post(f"{base}/api/jobs", content=json.dumps({"name": name}), headers=headers)
    assert error_of(r, 415)["error"] == "unsupported_media_type"
    names = [job["name"] for job in httpx.get(f"{base}/api/jobs?limit=500").json()["jobs"]]
    assert name not in names


def test_finish_needs_application_json(shared_server: ServerProcess) -> None:
    base = shared_server.url
    job = create_job(base, "finish 415")
    body = json.dumps({"status": "failed", "exit_code": 1})
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        r = httpx.post(
            f"{base}/api/jobs/{job['id']}/finish",
            content=body,
            headers={**auth(job), "Content-Type": content_type},
        )
        error_of(r, 415)
    assert httpx.get(f"{base}/api/jobs/{job['id']}").json()["status"] == "running"
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/finish",
        content=body,
        headers={**auth(job), "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text


FOREIGN_HOSTS = ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", "[2001:db8::1]"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_host_is_refused_on_loopback(shared_server: ServerProcess, host: str) -> None:
    base = shared_server.url
    job = create_job(base, "rebind")
    paths = ["/api/jobs", f"/api/jobs/{job['id']}", f"/api/jobs/{job['id']}/log", "/healthz", "/"]
    for path in paths:
        r = httpx.get(base + path, headers={"Host": host})
        assert error_of(r, 400)["error"] == "bad_host", path
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines",
        content=b"x\n",
        headers={**auth(job), "Host": host, "Content-Type": "text/plain"},
    )
    assert error_of(r, 400)["error"] == "bad_host"
    assert httpx.get(f"{base}/api/jobs/{job['id']}").json()["line_count"] == 0


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "127.1.2.3:9", "[::1]:80", "a.localhost"]
)
def test_loopback_hosts_are_answered(shared_server: ServerProcess, host: str) -> None:
    r = httpx.get(f"{shared_server.url}/healthz", headers={"Host": host})
    assert r.status_code == 200, r.text


def test_allowed_hosts_setting(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, env={"LOGSTREAM_ALLOWED_HOSTS": "logs.example, *.ci.example"})
    proc.start()
    try:
        for host, status in [
            ("logs.example", 200),
            ("logs.example:8000", 200),
            ("a.ci.example", 200),
            ("ci.example", 400),
            ("localhost", 400),  # a list replaces the loopback default
            ("attacker.example", 400),
        ]:
            r = httpx.get(f"{proc.url}/healthz", headers={"Host": host})
            assert r.status_code == status, (host, r.text)
    finally:
        proc.stop()


def test_unset_allowed_hosts_off_loopback_answers_any_host_and_says_so(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, host="0.0.0.0")
    proc.start()
    try:
        r = httpx.get(f"{proc.url}/healthz", headers={"Host": "logs.example"})
        assert r.status_code == 200
    finally:
        proc.stop()
    assert "LOGSTREAM_ALLOWED_HOSTS is not set" in proc.logs()


def test_host_rule_units() -> None:
    loopback = HostRule.from_settings(None, "127.0.0.1")
    assert loopback.allows("localhost:8000") and loopback.allows("[::1]")
    assert not loopback.allows("localhost.attacker.example")
    assert not loopback.allows("127.0.0.1.attacker.example")
    assert HostRule.from_settings(None, "0.0.0.0").allows_any
    assert HostRule.from_settings("*", "127.0.0.1").allows_any
    assert HostRule.from_settings(None, "::1").loopback
    assert Settings.from_env({"LOGSTREAM_ALLOWED_HOSTS": "a.example"}).allowed_hosts == "a.example"


# --- 4. input that used to answer 500 ------------------------------------------------------------


def huge_int_cases(job_id: int) -> list[tuple[str, str, dict[str, str]]]:
    base = f"/api/jobs/{job_id}"
    return [
        ("GET", "/api/jobs", {"limit": HUGE}),
        ("GET", "/api/jobs", {"cursor": HUGE}),
        ("GET", "/api/events", {"after": HUGE}),
        ("GET", f"{base}/log", {"after": HUGE}),
        ("GET", f"{base}/log", {"tail": HUGE}),
        ("GET", f"{base}/lines", {"after": HUGE}),
        ("GET", f"{base}/lines", {"limit": HUGE}),
        ("GET", f"{base}/search", {"q": "x", "after": HUGE}),
        ("GET", f"{base}/search", {"q": "x", "limit": HUGE}),
        ("POST", f"{base}/lines", {"first": HUGE}),
        ("GET", f"{base}/lines", {"after": "0" * 5000 + "1"}),  # leading zeros: a small number
    ]


def test_integer_parameters_past_4300_digits_are_400(shared_server: ServerProcess) -> None:
    job = create_job(shared_server.url, "huge")
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        for method, path, params in huge_int_cases(job["id"]):
            # A body only where one belongs: a GET with a body answered 400 before it was read
            # can leave the keep-alive connection closed under the next request (a separate
            # bug, noted), which is not what this test is about.
            body = b"x\n" if method == "POST" else None
            headers = {**auth(job), "Content-Type": "text/plain"}
            r = client.request(method, path, params=params, headers=headers, content=body)
            if params.get("after", "").startswith("0"):
                assert r.status_code == 200, r.text
                continue
            assert error_of(r, 400)["field"] in params, (path, params)
        r = client.get(f"/api/jobs/{job['id']}/log", headers={**SSE, "Last-Event-ID": HUGE})
        error_of(r, 400)
        for body in (
            b'{"lines": ["x"], "first": %s}' % HUGE.encode(),
            b'{"status": "failed", "exit_code": %s}' % HUGE.encode(),
        ):
            path = "lines" if b"lines" in body else "finish"
            r = client.post(
                f"/api/jobs/{job['id']}/{path}",
                content=body,
                headers={**auth(job), "Content-Type": "application/json"},
            )
            error_of(r, 400)


@pytest.mark.parametrize("depth", [65, 1000, 10_000, 1_000_000])
def test_deep_json_is_400(shared_server: ServerProcess, depth: int) -> None:
    job = create_job(shared_server.url, "deep")
    nested = b"[" * depth + b"]" * depth
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        for path, body in [
            ("/api/jobs", b'{"name": "deep", "meta": {"a": %s}}' % nested),
            (f"/api/jobs/{job['id']}/lines", b'{"lines": ["x"], "x": %s}' % nested),
            (f"/api/jobs/{job['id']}/finish", b'{"status": "failed", "x": %s}' % nested),
        ]:
            headers = {**auth(job), "Content-Type": "application/json"}
            r = client.post(path, content=body, headers=headers)
            assert "deeper than 64" in error_of(r, 400)["message"], path
        assert client.get(f"/api/jobs/{job['id']}").json()["line_count"] == 0


def test_meta_nested_63_deep_is_kept(shared_server: ServerProcess) -> None:
    meta: Any = "leaf"
    for _ in range(62):
        meta = [meta]
    body = json.dumps({"name": "deep ok", "meta": {"a": meta}}).encode()
    r = httpx.post(
        f"{shared_server.url}/api/jobs", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    read_views(shared_server.url, r.json()["id"])


@pytest.mark.parametrize("name", ["a" * 300, "a" * 5000, "a/" * 200 + "b" * 300])
def test_long_ui_path_is_404_not_503(shared_server: ServerProcess, name: str) -> None:
    r = httpx.get(f"{shared_server.url}/ui/{name}")
    assert r.status_code in (404, 414), r.text
    assert r.headers["content-type"] == "application/json"


# --- 5. wrong answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("one", UNICODE_ONES)
def test_unicode_digits_name_no_job(shared_server: ServerProcess, one: str) -> None:
    create_job(shared_server.url, "one")  # job ids 1.. exist on the shared server
    base = shared_server.url
    for path in (
        f"/jobs/{one}",
        f"/api/jobs/{one}",
        f"/api/jobs/{one}/log",
        f"/api/jobs/{one}/lines",
    ):
        r = httpx.get(base + path)
        assert error_of(r, 404)["error"] == "not_found", path
    assert httpx.get(f"{base}/jobs/1").status_code == 200


@pytest.mark.parametrize(
    "path,headers",
    [
        ("/api/jobs/{id}/log", {"Accept": "text/event-stream"}),
        ("/api/jobs/{id}/log?follow=1", {}),
        ("/api/events", {}),
    ],
)
def test_head_on_a_stream_ends_and_the_connection_goes_on(
    shared_server: ServerProcess, path: str, headers: dict[str, str]
) -> None:
    job = create_job(shared_server.url, "head")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"HEAD {path.format(id=job['id'])} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw_exchange(shared_server.port, request, wait=5.0)
    assert statuses(answer) == [200, 200], answer
    assert b'"ok":true' in answer
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-type: text/event-stream" in head or b"text/plain" in head
    assert time.monotonic() - started < 3.0
    health = httpx.get(f"{shared_server.url}/healthz").json()
    assert health["streams"] == 0, "a HEAD left a stream open"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
def test_compressed_bodies_are_415(shared_server: ServerProcess, encoding: str) -> None:
    import gzip

    base = shared_server.url
    job = create_job(base, "gzip")
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        for path, body, content_type in [
            (f"/api/jobs/{job['id']}/lines", b"a\nb\n", "text/plain"),
            (f"/api/jobs/{job['id']}/lines", b'{"lines": ["a"]}', "application/json"),
            ("/api/jobs", b'{"name": "gz"}', "application/json"),
            (f"/api/jobs/{job['id']}/finish", b'{"status": "failed"}', "application/json"),
        ]:
            r = client.post(
                path,
                content=gzip.compress(body),
                headers={**auth(job), "Content-Type": content_type, "Content-Encoding": encoding},
            )
            error_of(r, 415)
        shown = client.get(f"/api/jobs/{job['id']}").json()
        assert shown["line_count"] == 0 and shown["status"] == "running"


@pytest.mark.parametrize(
    "charset,raw,text",
    [
        ("iso-8859-1", "café\n".encode("latin-1"), "café"),
        ("latin1", "café\n".encode("latin-1"), "café"),
        ("windows-1252", "€ sign\n".encode("cp1252"), "€ sign"),
        ("utf-16", "ünï\n".encode("utf-16"), "ünï"),
        ("UTF-8", "ok ✓\n".encode(), "ok ✓"),
        ('"utf-8"', "ok ✓\n".encode(), "ok ✓"),
        ("us-ascii", b"plain\n", "plain"),
    ],
)
def test_declared_charset_is_honoured(
    shared_server: ServerProcess, charset: str, raw: bytes, text: str
) -> None:
    base = shared_server.url
    job = create_job(base, "charset")
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines",
        content=raw,
        headers={**auth(job), "Content-Type": f"text/plain; charset={charset}"},
    )
    assert r.status_code == 200, r.text
    lines = httpx.get(f"{base}/api/jobs/{job['id']}/lines").json()["lines"]
    assert [line["text"] for line in lines] == [text]


@pytest.mark.parametrize("charset", ["koi8-r", "x-unknown", "zlib", "rot13", "utf-7"])
def test_other_charsets_are_415(shared_server: ServerProcess, charset: str) -> None:
    base = shared_server.url
    job = create_job(base, "charset 415")
    r = httpx.post(
        f"{base}/api/jobs/{job['id']}/lines",
        content=b"x\n",
        headers={**auth(job), "Content-Type": f"text/plain; charset={charset}"},
    )
    error_of(r, 415)


@pytest.mark.parametrize(
    "head,status",
    [
        (b"GET /healthz?" + b"&".join(b"p%d=1" % i for i in range(20_000)), 0),
        (b"GET /healthz?" + b"&".join(b"p%d=1" % i for i in range(1_500)), 414),
        (b"GET /healthz", 431),
    ],
    ids=["20000 params", "1500 params", "5000 headers"],
)
def test_head_limits_hold_in_one_write(
    shared_server: ServerProcess, head: bytes, status: int
) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(5000)) if status == 431 else b""
    request = head + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n"
    got = statuses(raw_exchange(shared_server.port, request))
    assert got and got[0] in ((414, 431) if status == 0 else (status,)), got


def test_heads_within_limits_are_served(shared_server: ServerProcess) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(90))
    query = b"&".join(b"p%d=1" % i for i in range(500))
    request = b"GET /healthz?" + query + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n"
    assert statuses(raw_exchange(shared_server.port, request, wait=1.0)) == [200]


@pytest.mark.parametrize("version,status", [(b"2.0", 505), (b"3.7", 505), (b"1.0", 200)])
def test_http_version_on_the_http1_port(
    shared_server: ServerProcess, version: bytes, status: int
) -> None:
    request = b"GET /healthz HTTP/%s\r\nHost: localhost\r\n\r\n" % version
    assert statuses(raw_exchange(shared_server.port, request, wait=1.0)) == [status]


async def test_nosniff_on_every_api_answer(shared_server: ServerProcess) -> None:
    async with client_for(shared_server) as client:
        job = await new_job(client, "nosniff")
        answers = [
            await client.get("/api/jobs"),
            await client.get(f"/api/jobs/{job['id']}"),
            await client.get("/api/jobs/999999"),
            await client.get(f"/api/jobs/{job['id']}/lines"),
            await client.get(f"/api/jobs/{job['id']}/log"),
            await client.get("/api/jobs/1/log", headers={"Last-Event-ID": "x"}),
            await client.post(f"/api/jobs/{job['id']}/lines", json={"lines": ["a"]}),
            await client.post(
                f"/api/jobs/{job['id']}/lines", json={"lines": ["a"]}, headers=bearer(job["token"])
            ),
            await client.get("/healthz"),
            await client.get("/nope"),
            await client.get("/"),
        ]
        async with asyncio.timeout(TIMEOUT):
            async with client.stream("GET", f"/api/jobs/{job['id']}/log", headers=SSE) as stream:
                answers.append(stream)
            async with client.stream("GET", "/api/events") as stream:
                answers.append(stream)
    for answer in answers:
        assert answer.headers.get("x-content-type-options") == "nosniff", answer.url


@pytest.fixture
def quick_head_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, env={"LOGSTREAM_HEADER_TIMEOUT": "1"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_a_slow_request_head_is_cut_off(quick_head_server: ServerProcess) -> None:
    assert Settings().header_timeout == 10.0  # the default: a few seconds
    with socket.create_connection(("127.0.0.1", quick_head_server.port), timeout=5) as sock:
        started = time.monotonic()
        answer = b""
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        took = time.monotonic() - started
    assert statuses(answer) == [408], answer
    assert 0.9 < took < 3.0, took


def test_idle_keep_alive_and_streams_outlive_the_head_timeout(
    quick_head_server: ServerProcess,
) -> None:
    base = quick_head_server.url
    job = create_job(base, "stream")
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(1.8)  # idle between requests: keep_alive_timeout governs, not the head's
        assert client.get("/healthz").status_code == 200
        with client.stream("GET", f"/api/jobs/{job['id']}/log", headers=SSE) as stream:
            time.sleep(1.8)  # an EventSource sends nothing after its request
            httpx.post(
                f"{base}/api/jobs/{job['id']}/lines", json={"lines": ["late"]}, headers=auth(job)
            )
            for chunk in stream.iter_bytes():
                if b"data: late" in chunk:
                    break


def test_an_h2c_prior_knowledge_connection_outlives_the_head_timeout(
    quick_head_server: ServerProcess,
) -> None:
    """Regression: the head timer armed by the HTTP/2 preface (read first as HTTP/1.1) was
    never disarmed when Hypercorn switched the connection to HTTP/2, so it closed every h2c
    prior-knowledge connection, with its streams, one head timeout after it opened."""
    base = quick_head_server.url
    job = create_job(base, "h2c")
    with httpx.Client(base_url=base, timeout=TIMEOUT, http1=False, http2=True) as client:
        with client.stream("GET", f"/api/jobs/{job['id']}/log", headers=SSE) as stream:
            assert stream.http_version == "HTTP/2"
            time.sleep(2.5)  # past the 1 s head timeout of this server
            httpx.post(
                f"{base}/api/jobs/{job['id']}/lines", json={"lines": ["late"]}, headers=auth(job)
            )
            for chunk in stream.iter_bytes():
                if b"data: late" in chunk:
                    break
        assert client.get("/healthz").status_code == 200  # the same connection, still open


# --- property-based: never a 500, never an unrenderable record -----------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
texts = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20)
# What a client can put in a URL (percent-encoded UTF-8): every code point but surrogates.
url_texts = st.text(st.characters(codec="utf-8"), max_size=20)


def poison(raw: str, data: st.DataObject) -> str:
    """Sometimes swap a number for a token strict JSON refuses, or nest the text deep."""
    choice = data.draw(st.sampled_from(["as is", "constant", "deep", "huge"]))
    if choice == "constant" and "0" in raw:
        return raw.replace("0", data.draw(st.sampled_from(["NaN", "Infinity", "1e999"])), 1)
    if choice == "deep":
        depth = data.draw(st.sampled_from([60, 70, 1200]))
        return raw.replace("null", "[" * depth + "]" * depth, 1) if "null" in raw else raw
    if choice == "huge" and "0" in raw:
        return raw.replace("0", HUGE, 1)
    return raw


@pytest.fixture(scope="module")
def prop_job(shared_server: ServerProcess) -> dict[str, Any]:
    return create_job(shared_server.url, "property")


def assert_renderable(client: httpx.Client, job_id: int) -> None:
    strict_json(client.get(f"/api/jobs/{job_id}").raise_for_status().content)
    page = client.get("/api/jobs", params={"limit": 5})
    strict_json(page.raise_for_status().content)
    lines = client.get(f"/api/jobs/{job_id}/lines", params={"limit": 10000})
    strict_json(lines.raise_for_status().content)


PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(name=texts, meta=json_values, extra=json_values, data=st.data())
def test_property_create(
    shared_server: ServerProcess, name: str, meta: Any, extra: Any, data: st.DataObject
) -> None:
    body = poison(json.dumps({"name": name, "meta": meta, "x": extra}), data)
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        r = client.post(
            "/api/jobs", content=body.encode(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code in (201, 400), r.text
        strict_json(r.content)
        if r.status_code == 201:
            assert_renderable(client, r.json()["id"])


@PROPERTY
@given(lines=st.lists(texts | json_values, max_size=5), first=json_values, data=st.data())
def test_property_append_json(
    shared_server: ServerProcess,
    prop_job: dict[str, Any],
    lines: list[Any],
    first: Any,
    data: st.DataObject,
) -> None:
    body = poison(json.dumps({"lines": lines, "first": first}), data)
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        r = client.post(
            f"/api/jobs/{prop_job['id']}/lines",
            content=body.encode(),
            headers={**auth(prop_job), "Content-Type": "application/json"},
        )
        assert r.status_code in (200, 400, 409), r.text
        strict_json(r.content)
        assert_renderable(client, prop_job["id"])


@PROPERTY
@given(
    raw=st.binary(max_size=64),
    content_type=st.sampled_from(
        [
            "text/plain",
            "text/plain; charset=latin-1",
            "text/plain; charset=utf-16",
            "application/octet-stream",
            "application/json",
            "text/plain; charset=bogus",
        ]
    ),
    first=st.none() | url_texts,
)
def test_property_append_bytes(
    shared_server: ServerProcess,
    prop_job: dict[str, Any],
    raw: bytes,
    content_type: str,
    first: str | None,
) -> None:
    params = {} if first is None else {"first": first}
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        r = client.post(
            f"/api/jobs/{prop_job['id']}/lines",
            content=raw,
            params=params,
            headers={**auth(prop_job), "Content-Type": content_type},
        )
        assert r.status_code in (200, 400, 409, 415), r.text
        strict_json(r.content)
        assert_renderable(client, prop_job["id"])


@PROPERTY
@given(body=json_values, data=st.data())
def test_property_finish(shared_server: ServerProcess, body: Any, data: st.DataObject) -> None:
    job = create_job(shared_server.url, "finish property")
    if data.draw(st.booleans()) and isinstance(body, dict):
        body["status"] = data.draw(st.sampled_from(["succeeded", "failed", "canceled", "x"]))
    raw = poison(json.dumps(body), data)
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        r = client.post(
            f"/api/jobs/{job['id']}/finish",
            content=raw.encode(),
            headers={**auth(job), "Content-Type": "application/json"},
        )
        assert r.status_code in (200, 400, 409), r.text
        strict_json(r.content)
        assert_renderable(client, job["id"])


query_values = (
    url_texts
    | st.sampled_from(["", "0", "1", "-1", HUGE, "0" * 30 + "7", "١", "１", "𝟏", " 5 ", "5e3"])
    | st.integers(min_value=0, max_value=2**70).map(str)
)


@PROPERTY
@given(
    route=st.sampled_from(
        [
            "/api/jobs",
            "/api/jobs/{id}/lines",
            "/api/jobs/{id}/search",
            "/api/jobs/{id}/log",
            "/api/events",
            "/api/jobs/{id}",
            "/healthz",
        ]
    ),
    params=st.dictionaries(
        st.sampled_from(
            ["limit", "cursor", "after", "tail", "first", "q", "case", "format", "follow"]
            + ["regex", "status", "name", "name_prefix", "meta.branch", "meta.", "meta.a b"]
        ),
        query_values,
        max_size=4,
    ),
    last_event_id=st.none() | query_values,
)
def test_property_query_parameters(
    shared_server: ServerProcess,
    prop_job: dict[str, Any],
    route: str,
    params: dict[str, str],
    last_event_id: str | None,
) -> None:
    params = {**params, "follow": "0"}  # a raw text read that follows would never end
    headers = {}
    if (
        last_event_id
        and last_event_id.isprintable()
        and last_event_id.isascii()
        and last_event_id == last_event_id.strip()
    ):
        headers["Last-Event-ID"] = last_event_id
    with httpx.Client(base_url=shared_server.url, timeout=TIMEOUT) as client:
        with client.stream(
            "GET", route.format(id=prop_job["id"]), params=params, headers=headers
        ) as r:
            assert r.status_code in (200, 204, 400, 404, 414), (route, params)
            assert r.headers["x-content-type-options"] == "nosniff"
            if r.headers["content-type"] == "application/json":
                strict_json(r.read())
