"""Every endpoint against every kind of credential, with LOGSTREAM_AUTH=tokens (and the few
rules open mode keeps): 401 for none, 403 for one that is not enough, as the API's JSON errors;
the dashboard's pages answer with the sign-in page instead."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.auth import ENV_RUNNER, bearer, make_token, revoke, tokens_server
from support.server import ServerProcess

CREDENTIALS = (
    "none",
    "read",
    "runner",
    "env_runner",
    "job_this",
    "job_other",
    "admin",
    "revoked",
    "expired",
)


def _expect(**codes: int) -> dict[str, int]:
    assert set(codes) == set(CREDENTIALS), set(CREDENTIALS) ^ set(codes)
    return codes


READ = _expect(
    none=401,
    read=200,
    runner=200,
    env_runner=200,
    job_this=403,
    job_other=403,
    admin=200,
    revoked=403,
    expired=403,
)
READ_JOB = {**READ, "job_this": 200}  # a job's token reads its own job
CREATE = _expect(
    none=401,
    read=403,
    runner=201,
    env_runner=201,
    job_this=403,
    job_other=403,
    admin=201,
    revoked=403,
    expired=403,
)
WRITE = {**CREATE, "runner": 200, "env_runner": 200, "admin": 200, "job_this": 200}
# Lines are masked with the job's masks, sealed for its own token and LOGSTREAM_RUNNER_TOKEN
# only (server/masks.py): an API token that may write gets 403 `needs_job_token` for them.
LINES = {**WRITE, "runner": 403, "admin": 403}
ADMIN = _expect(
    none=401,
    read=403,
    runner=403,
    env_runner=403,
    job_this=403,
    job_other=403,
    admin=200,
    revoked=403,
    expired=403,
)
PUBLIC = dict.fromkeys(CREDENTIALS, 200)
# A cancel is asked (202, the job still running): by an admin or the job's own token.
CANCEL = {**ADMIN, "admin": 202, "job_this": 202}

# name: (method, path, body, expected codes, kind). {id}: a running job of its own per case
# where the request changes it (lines, finish), else a shared one; {name}: a token to revoke.
ENDPOINTS: dict[str, tuple[str, str, Any, dict[str, int], str]] = {
    "page /": ("GET", "/", None, READ, "page"),
    "page /jobs/{id}": ("GET", "/jobs/{id}", None, READ, "page"),
    "GET /api/jobs": ("GET", "/api/jobs", None, READ, "json"),
    "GET /api/events": ("GET", "/api/events", None, READ, "stream"),
    "GET /api/jobs/{id}": ("GET", "/api/jobs/{id}", None, READ_JOB, "json"),
    "GET log (SSE)": ("GET", "/api/jobs/{id}/log?format=sse", None, READ_JOB, "stream"),
    "GET log (text)": ("GET", "/api/jobs/{id}/log?format=text", None, READ_JOB, "stream"),
    "GET log (follow)": ("GET", "/api/jobs/{id}/log?follow=1", None, READ_JOB, "stream"),
    "GET lines": ("GET", "/api/jobs/{id}/lines", None, READ_JOB, "json"),
    "GET search": ("GET", "/api/jobs/{id}/search?q=line", None, READ_JOB, "json"),
    "POST /api/jobs": ("POST", "/api/jobs", {"name": "matrix"}, CREATE, "json"),
    "POST lines": ("POST", "/api/jobs/{id}/lines", {"lines": ["x"]}, LINES, "json"),
    "POST finish": ("POST", "/api/jobs/{id}/finish", {"status": "succeeded"}, WRITE, "json"),
    "POST cancel": ("POST", "/api/jobs/{id}/cancel", {}, CANCEL, "json"),
    "GET /metrics": ("GET", "/metrics", None, ADMIN, "text"),
    "GET /readyz": ("GET", "/readyz", None, PUBLIC, "json"),
    "GET /api/tokens": ("GET", "/api/tokens", None, ADMIN, "json"),
    "POST /api/tokens": (
        "POST",
        "/api/tokens",
        {"name": "{unique}", "role": "read"},
        {**ADMIN, "admin": 201},
        "json",
    ),
    "DELETE /api/tokens/{name}": ("DELETE", "/api/tokens/{name}", None, ADMIN, "json"),
    "GET /api/session": ("GET", "/api/session", None, PUBLIC, "json"),
    "GET /healthz": ("GET", "/healthz", None, PUBLIC, "json"),
    "GET /signin": ("GET", "/signin", None, PUBLIC, "page"),
    "GET /ui/app.css": ("GET", "/ui/app.css", None, PUBLIC, "static"),
}

_unique = itertools.count(1)


class World:
    """A tokens-mode server with one credential of each kind."""

    def __init__(self, server: ServerProcess, tokens: dict[str, str]) -> None:
        self.server = server
        self.tokens = tokens
        self.http = httpx.Client(base_url=server.url, timeout=10)
        self.shared = self.new_job()
        self.other = self.new_job()
        self.http.post(
            f"/api/jobs/{self.shared['id']}/lines",
            json={"lines": ["line one"]},
            headers=bearer(self.shared["token"]),
        )

    def new_job(self) -> dict[str, Any]:
        r = self.http.post("/api/jobs", json={"name": "j"}, headers=bearer(self.tokens["admin"]))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def headers(self, credential: str, this: dict[str, Any]) -> dict[str, str]:
        token = {
            "none": None,
            "env_runner": ENV_RUNNER,
            "job_this": this["token"],
            "job_other": self.other["token"],
        }.get(credential, self.tokens.get(credential))
        return {} if token is None else bearer(token)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = tokens_server(tmp_path_factory.mktemp("matrix"))
    db = server.database_url
    tokens = {role: make_token(db, role, f"{role}-1") for role in ("read", "runner", "admin")}
    tokens["revoked"] = make_token(db, "admin", "gone")
    revoke(db, "gone")
    tokens["expired"] = make_token(db, "admin", "old", expires="1s")
    server.start()
    time.sleep(1.1)  # `old` has expired by now
    try:
        w = World(server, tokens)
        yield w
        w.http.close()
    finally:
        server.stop(signal.SIGKILL)


def _request(world: World, endpoint: str, credential: str) -> tuple[int, httpx.Headers, bytes]:
    method, path, body, _codes, kind = ENDPOINTS[endpoint]
    this = world.new_job() if method != "GET" else world.shared
    if "{name}" in path:
        r = world.http.post(
            "/api/tokens",
            json={"name": f"victim-{next(_unique)}", "role": "read"},
            headers=bearer(world.tokens["admin"]),
        )
        assert r.status_code == 201, r.text
        path = path.replace("{name}", r.json()["name"])
    path = path.replace("{id}", str(this["id"]))
    if isinstance(body, dict) and body.get("name") == "{unique}":
        body = {**body, "name": f"made-{next(_unique)}"}
    headers = world.headers(credential, this)
    if kind == "stream":
        with world.http.stream(method, path, headers=headers, timeout=10) as r:
            return r.status_code, r.headers, b"" if r.status_code == 200 else r.read()
    r = world.http.request(method, path, json=body, headers=headers)
    return r.status_code, r.headers, r.content


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_endpoint_answers_each_credential(world: World, endpoint: str, credential: str) -> None:
    expected = ENDPOINTS[endpoint][3][credential]
    kind = ENDPOINTS[endpoint][4]
    status, headers, content = _request(world, endpoint, credential)
    assert status == expected, (endpoint, credential, content[:300])
    if status in (401, 403) and kind != "page":
        assert headers["content-type"] == "application/json"
        code = "unauthorized" if status == 401 else "forbidden"
        assert httpx.Response(status, content=content).json()["error"] == code
    if kind == "page":
        assert headers["content-type"].startswith("text/html")
        signin = b'id="signin"' in content
        assert signin == (status != 200 or endpoint == "GET /signin"), endpoint


def test_every_route_of_the_app_is_in_the_matrix(world: World) -> None:
    """A route added later must say who may use it: add it to ENDPOINTS."""
    from logstream.server.app import create_app

    app = create_app()
    known = {
        "/",
        "/jobs/<job_id>",
        "/api/jobs",
        "/api/events",
        "/api/jobs/<job_id>",
        "/api/jobs/<job_id>/lines",
        "/api/jobs/<job_id>/search",
        "/api/jobs/<job_id>/finish",
        "/api/jobs/<job_id>/cancel",
        "/metrics",
        "/readyz",
        "/api/tokens",
        "/api/tokens/<name>",
        "/api/session",
        "/healthz",
        "/signin",
        "/ui/<path:filename>",
        "/static/<path:filename>",  # Quart's own (the app has no static folder of its own)
    }
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert routes <= known, routes - known


def test_a_token_in_the_url_is_no_credential(world: World) -> None:
    for name in ("token", "access_token"):
        r = world.http.get("/api/jobs", params={name: world.tokens["read"]})
        assert r.status_code == 401


def test_the_bearer_token_wins_over_a_cookie(world: World) -> None:
    r = world.http.post("/api/session", json={"token": world.tokens["admin"]})
    cookie = r.cookies["logstream_session"]
    r = world.http.get(
        "/api/jobs",
        headers={**bearer("not-a-token"), "Cookie": f"logstream_session={cookie}"},
    )
    assert r.status_code == 403


# --- sessions --------------------------------------------------------------------------------


def _session(world: World, role: str) -> dict[str, str]:
    r = httpx.post(f"{world.server.url}/api/session", json={"token": world.tokens[role]})
    assert r.status_code == 200, r.text
    return {"Cookie": f"logstream_session={r.cookies['logstream_session']}"}


@pytest.mark.parametrize(
    ("role", "path", "expected"),
    [
        ("read", "/api/jobs", 200),
        ("read", "/api/jobs/{id}", 200),
        ("read", "/api/jobs/{id}/lines", 200),
        ("read", "/", 200),
        ("read", "/api/tokens", 403),
        ("admin", "/api/tokens", 200),
    ],
)
def test_a_session_reads_with_its_tokens_role(
    world: World, role: str, path: str, expected: int
) -> None:
    path = path.replace("{id}", str(world.shared["id"]))
    r = world.http.get(path, headers=_session(world, role))
    assert r.status_code == expected, r.text


SAME_ORIGIN_CASES = [
    ({"Sec-Fetch-Site": "same-origin"}, 200),
    ({"Origin": "{origin}"}, 200),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Sec-Fetch-Site": "cross-site", "Origin": "{origin}"}, 403),
    ({"Origin": "https://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({}, 403),
]


@pytest.mark.parametrize(("extra", "expected"), SAME_ORIGIN_CASES)
def test_a_cookie_changes_nothing_from_another_site(
    world: World, extra: dict[str, str], expected: int
) -> None:
    job = world.new_job()
    headers = _session(world, "admin")
    headers.update({k: v.replace("{origin}", world.server.url) for k, v in extra.items()})
    finish = {"status": "canceled"}
    r = world.http.post(f"/api/jobs/{job['id']}/finish", json=finish, headers=headers)
    assert r.status_code == expected, r.text
    # Lines need the job's own token whatever the session's role; from another site the
    # cookie is refused first.
    r = world.http.post(f"/api/jobs/{job['id']}/lines", json={"lines": ["x"]}, headers=headers)
    reason = "needs_job_token" if expected == 200 else "cross_site"
    assert r.status_code == 403 and r.json()["reason"] == reason, r.text
    r = world.http.post("/api/jobs", json={"name": "csrf"}, headers=headers)
    assert r.status_code == (201 if expected == 200 else 403), r.text
    if expected == 403:
        assert r.json()["reason"] == "cross_site"


def test_a_read_session_cannot_write_even_from_this_site(world: World) -> None:
    job = world.new_job()
    headers = {**_session(world, "read"), "Sec-Fetch-Site": "same-origin"}
    r = world.http.post(f"/api/jobs/{job['id']}/lines", json={"lines": ["x"]}, headers=headers)
    assert r.status_code == 403


def test_sign_in_takes_only_a_live_api_token(world: World) -> None:
    url = f"{world.server.url}/api/session"
    for token in (world.shared["token"], ENV_RUNNER, world.tokens["revoked"], "lsk_nope"):
        r = httpx.post(url, json={"token": token})
        assert r.status_code == 403, r.text
        assert "set-cookie" not in r.headers
    r = httpx.post(url, json={"token": world.tokens["expired"]})
    assert r.status_code == 403 and r.json()["reason"] == "expired"
    assert httpx.post(url, json={}).status_code == 400
    # From another site's page (login CSRF): refused before the token is even looked at.
    r = httpx.post(url, json={"token": world.tokens["read"]}, headers={"Origin": "http://evil"})
    assert r.status_code == 403


def test_the_session_cookie_is_httponly_strict_and_not_secure_over_plain_http(
    world: World,
) -> None:
    r = httpx.post(f"{world.server.url}/api/session", json={"token": world.tokens["read"]})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    assert r.json()["role"] == "read" and r.json()["name"] == "read-1"


def test_sign_out_ends_the_session(world: World) -> None:
    headers = _session(world, "read")
    assert world.http.get("/api/jobs", headers=headers).status_code == 200
    # Signing out is a change: not from another site.
    r = world.http.delete("/api/session", headers={**headers, "Origin": "http://evil"})
    assert r.status_code == 403
    r = world.http.delete("/api/session", headers={**headers, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200 and "Max-Age=0" in r.headers["set-cookie"]
    # The cache of this process was dropped with it: refused at once.
    assert world.http.get("/api/jobs", headers=headers).status_code == 401


def test_who_am_i(world: World) -> None:
    assert world.http.get("/api/session").json() == {"auth": "tokens", "signed_in": False}
    me = world.http.get("/api/session", headers=bearer(world.tokens["runner"])).json()
    assert me["signed_in"] and me["role"] == "runner" and me["via"] == "token"
    me = world.http.get("/api/session", headers=_session(world, "admin")).json()
    assert me["role"] == "admin" and me["via"] == "session" and me["expires_at"]


def test_tokens_api_lists_without_secrets_and_refuses_a_taken_name(world: World) -> None:
    admin = bearer(world.tokens["admin"])
    listed = world.http.get("/api/tokens", headers=admin).json()["tokens"]
    by_name = {t["name"]: t for t in listed}
    assert by_name["gone"]["state"] == "revoked" and by_name["old"]["state"] == "expired"
    assert by_name["read-1"]["state"] == "active"
    assert all(
        set(t) == {"name", "role", "state", "created_at", "expires_at", "revoked_at"}
        for t in listed
    )
    r = world.http.post("/api/tokens", json={"name": "read-1", "role": "read"}, headers=admin)
    assert r.status_code == 409 and r.json()["reason"] == "name_taken"
    r = world.http.post("/api/tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert r.status_code == 400
    r = world.http.post(
        "/api/tokens", json={"name": "x", "role": "read", "expires": "soon"}, headers=admin
    )
    assert r.status_code == 400
    # A revoked name can be used again (rotation).
    r = world.http.post("/api/tokens", json={"name": "gone", "role": "read"}, headers=admin)
    assert r.status_code == 201 and r.json()["token"].startswith("lsk_")


# --- open mode keeps its rules ---------------------------------------------------------------


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    workdir: Path = tmp_path_factory.mktemp("open")
    server = ServerProcess(workdir)
    admin = make_token(server.database_url, "admin", "root")
    server.start()
    try:
        yield server, admin
    finally:
        server.stop(signal.SIGKILL)


def test_open_mode_reads_need_nothing_and_writes_need_the_job(
    open_server: tuple[ServerProcess, str],
) -> None:
    server, admin = open_server
    with httpx.Client(base_url=server.url, timeout=10) as http:
        job = http.post("/api/jobs", json={"name": "open"}).json()
        for path in ("/api/jobs", f"/api/jobs/{job['id']}", "/", f"/jobs/{job['id']}"):
            assert http.get(path).status_code == 200, path
            # A credential that is not valid does not matter to a read in open mode.
            assert http.get(path, headers=bearer("junk")).status_code == 200, path
        with http.stream("GET", f"/api/jobs/{job['id']}/log?format=sse") as r:
            assert r.status_code == 200
        lines = f"/api/jobs/{job['id']}/lines"
        assert http.post(lines, json={"lines": ["x"]}).status_code == 401
        assert http.post(lines, json={"lines": ["x"]}, headers=bearer("junk")).status_code == 403
        ok = http.post(lines, json={"lines": ["x"]}, headers=bearer(job["token"]))
        assert ok.status_code == 200
        # Lines need the job's own token (its masks are sealed for it), even from an admin;
        # the tokens API needs an admin token even in open mode.
        r = http.post(lines, json={"lines": ["y"]}, headers=bearer(admin))
        assert r.status_code == 403 and r.json()["reason"] == "needs_job_token"
        finish = http.post(
            f"/api/jobs/{job['id']}/finish", json={"status": "succeeded"}, headers=bearer(admin)
        )
        assert finish.status_code == 200
        assert http.get("/api/tokens").status_code == 401
        assert http.get("/api/tokens", headers=bearer(admin)).status_code == 200
        assert http.get("/api/session").json() == {"auth": "open", "signed_in": False}
        r = http.get("/signin")
        assert r.status_code == 302 and r.headers["location"] == "/"


def test_the_session_cookie_is_secure_over_tls(tmp_path: Path, tls: dict[str, Any]) -> None:
    server = ServerProcess(
        tmp_path,
        env={"LOGSTREAM_AUTH": "tokens"},
        certfile=tls["certfile"],
        keyfile=tls["keyfile"],
    )
    reader = make_token(server.database_url, "read", "tls-reader")
    server.start()
    try:
        with httpx.Client(base_url=server.url, verify=tls["context"], http2=True) as http:
            r = http.post("/api/session", json={"token": reader})
            assert r.status_code == 200 and r.http_version == "HTTP/2"
            assert "; Secure" in r.headers["set-cookie"]
            cookie = {"Cookie": f"logstream_session={r.cookies['logstream_session']}"}
            with http.stream("GET", "/api/events", headers=cookie) as stream:
                assert stream.status_code == 200
    finally:
        server.stop(signal.SIGKILL)


def test_a_refused_post_with_a_body_keeps_the_connection_usable(world: World) -> None:
    """Refused before its body is read (403 on /api/tokens, /api/session): the body is drained,
    so the keep-alive connection serves the next request."""
    big = {"name": "x" * 50, "role": "read", "pad": "p" * 300_000}
    with httpx.Client(base_url=world.server.url, timeout=10) as http:
        for _ in range(5):
            r = http.post("/api/tokens", json=big, headers=bearer(world.tokens["expired"]))
            assert r.status_code == 403
            r = http.post("/api/session", json=big, headers={"Origin": "http://evil"})
            assert r.status_code == 403
            assert http.get("/healthz").status_code == 200
