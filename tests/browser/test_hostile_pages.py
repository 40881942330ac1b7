"""Hostile pages and records in a real Chromium: a page on another origin cannot create jobs
on an open server, and records stored poisoned still render in the dashboard's job list."""

from __future__ import annotations

import http.server
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.browser import chromium_path, launch_chromium
from support.server import REQUIRE_ALL, ServerProcess, create_job, free_port

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

ATTACK = """<!doctype html>
<html><body>
<form id="form" method="POST" enctype="text/plain" action="{target}/api/jobs" target="sink">
  <input name='{{"name": "csrf form", "x": "' value='"}}'>
</form>
<iframe name="sink"></iframe>
<script>
  const url = "{target}/api/jobs";
  const body = name => JSON.stringify({{name}});
  window.sent = Promise.allSettled([
    fetch(url, {{method: "POST", mode: "no-cors", body: body("csrf fetch text")}}),
    fetch(url, {{method: "POST", mode: "no-cors", body: new Blob([body("csrf fetch blob")])}}),
    fetch(url, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "application/json"}},
                body: body("csrf fetch json")}}),
    fetch("{target}/api/jobs/{job}/finish", {{method: "POST", mode: "no-cors",
                body: JSON.stringify({{status: "failed"}})}}),
  ]).then(() => {{ document.getElementById("form").submit(); return true; }});
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def attacker(tmp_path: Path, server: ServerProcess) -> Iterator[tuple[str, dict[str, Any]]]:
    """A page on another origin (localhost on another port) that posts to the server."""
    job = create_job(server.url, "victim")
    page = ATTACK.format(target=server.url, job=job["id"]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_port}/", job
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_foreign_page_cannot_create_or_finish_jobs(
    browser: Any, server: ServerProcess, attacker: tuple[str, dict[str, Any]]
) -> None:
    url, job = attacker
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.sent && window.sent.then(() => true)")
        page.evaluate("window.sent")
        # The form's answer lands in the frame: the request reached the server and was refused.
        page.wait_for_function(
            "() => { try { return document.querySelector('iframe').contentWindow.length >= 0; }"
            " catch (e) { return true; } }"
        )
        sink = page.frame(name="sink")
        assert sink is not None
        sink.wait_for_load_state()
        page.wait_for_timeout(200)
        assert "unsupported_media_type" in sink.content()
    finally:
        context.close()
    jobs = httpx.get(f"{server.url}/api/jobs").json()["jobs"]
    assert [j["name"] for j in jobs] == ["victim"]
    assert jobs[0]["status"] == "running"


def test_poisoned_records_render_in_the_job_list(browser: Any, server: ServerProcess) -> None:
    base = server.url
    poisoned = create_job(base, "stored before the checks")
    surrogate = httpx.post(
        f"{base}/api/jobs",
        content=b'{"name": "surrogate \\ud800", "meta": {"\\udc00": "\\ud800"}}',
        headers={"Content-Type": "application/json"},
    ).json()
    with sqlite3.connect(server.workdir / "logstream.db") as db:
        db.execute(
            "UPDATE jobs SET meta = ? WHERE id = ?",
            ('{"n": NaN, "s": "\\ud800"}', poisoned["id"]),
        )
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/")
        page.wait_for_function(
            "ids => ids.every(id => window.__logstream && window.__logstream.jobs()"
            ".some(j => j.id === id))",
            arg=[poisoned["id"], surrogate["id"]],
            timeout=5000,
        )
        rows = page.locator("tr[data-id]").all_inner_texts()
        assert any("stored before the checks" in row for row in rows)
        assert any("surrogate \ufffd" in row for row in rows)
    finally:
        context.close()
    assert not errors, errors
