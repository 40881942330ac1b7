"""No token, cookie or Authorization header ever appears in the server's log, even at debug."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from support.auth import ENV_RUNNER, bearer, make_token, revoke, tokens_server


def test_the_server_log_holds_no_secret(tmp_path: Path) -> None:
    server = tokens_server(tmp_path, LOGSTREAM_LOG_LEVEL="debug")
    db = server.database_url
    admin = make_token(db, "admin", "admin")
    reader = make_token(db, "read", "reader")
    doomed = make_token(db, "read", "doomed")
    server.start()
    secrets = [admin, reader, doomed, ENV_RUNNER, "lsk_made_up_token", "plain-made-up"]
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            job = http.post("/api/jobs", json={"name": "j"}, headers=bearer(admin)).json()
            secrets.append(job["token"])
            lines = f"/api/jobs/{job['id']}/lines"
            http.post(lines, json={"lines": ["ok"]}, headers=bearer(job["token"]))
            http.post(lines, json={"lines": ["x"]}, headers=bearer("plain-made-up"))
            http.post(lines, content=b"{not json", headers=bearer(ENV_RUNNER))
            http.post("/api/jobs", json={"name": "x"}, headers=bearer("lsk_made_up_token"))
            http.get("/api/jobs", headers={"Authorization": f"Basic {admin}"})
            r = http.post("/api/session", json={"token": reader})
            cookie = r.cookies["logstream_session"]
            secrets.append(cookie)
            cookies = {"Cookie": f"logstream_session={cookie}"}
            http.get("/api/jobs", headers=cookies)
            http.get(f"/api/jobs/{job['id']}/log?format=text", headers=cookies)
            http.post(lines, json={"lines": ["x"]}, headers={**cookies, "Origin": "http://evil"})
            http.post("/api/session", json={"token": doomed})
            revoke(db, "doomed")
            http.get("/api/jobs", headers=bearer(doomed))
            http.post("/api/tokens", json={"name": "n", "role": "read"}, headers=bearer(admin))
            http.delete("/api/session", headers={**cookies, "Sec-Fetch-Site": "same-origin"})
    finally:
        server.stop(signal.SIGTERM)
    log = server.logs()
    assert "DEBUG" in log  # the level really was debug
    for secret in secrets:
        assert secret not in log, secret
    assert "logstream_session=" not in log
    assert "authorization" not in log.lower()
