"""The dashboard's Cancel button stops a command running under `logstream run`."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium_path, wait_for_viewer
from support.cli import job, job_id_from, spawn, stored, wait_for
from support.server import REQUIRE_ALL, ServerProcess, create_job

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

COMMAND = """
import os, time
print("pid", os.getpid(), flush=True)
for n in range(3):
    print("step", n, flush=True)
time.sleep(60)
print("never", flush=True)
"""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_cancel_from_the_dashboard_stops_the_command(
    shared_server: ServerProcess, page: Any, tmp_path: Path
) -> None:
    url = shared_server.url
    with open(tmp_path / "out", "wb") as out:
        proc = spawn(
            url, "run", "--keepalive", "0.3", "--", sys.executable, "-c", COMMAND, stdout=out
        )
    try:
        assert proc.stderr is not None
        new = job_id_from(proc.stderr.readline())
        texts = wait_for(lambda: len(t := stored(url, new)) >= 4 and t, what="the output")
        pid = int(texts[0].split()[1])

        page.goto(f"{url}/jobs/{new}")
        wait_for_viewer(page)
        button = page.locator("#cancel-btn")
        button.wait_for(state="visible")
        assert button.inner_text() == "Cancel"
        button.click()
        page.wait_for_function(
            "() => document.getElementById('cancel-btn').textContent === 'Canceling…'"
            " || document.getElementById('cancel-btn').hidden"
        )

        assert proc.wait(15) == 128 + signal.SIGTERM  # `run` exits non-zero
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the command is gone
        info = job(url, new)
        assert info["status"] == "canceled"
        stored_now = stored(url, new)
        assert stored_now[:4] == [f"pid {pid}", "step 0", "step 1", "step 2"]
        assert "never" not in stored_now

        banner = page.locator("#end-banner")
        banner.wait_for(state="visible")
        assert "Job canceled" in banner.inner_text()
        assert page.locator("#job-status .badge").get_attribute("data-status") == "canceled"
        assert button.is_hidden()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def losing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Jobs are lost after 1 s of silence here."""
    proc = ServerProcess(tmp_path_factory.mktemp("losing"), env={"LOGSTREAM_JOB_TIMEOUT": "1"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


def test_a_lost_job_ends_on_the_page_with_its_own_status(
    losing_server: ServerProcess, page: Any
) -> None:
    url = losing_server.url
    created = create_job(url, "its runner vanished")
    page.goto(f"{url}/jobs/{created['id']}")
    wait_for_viewer(page)
    assert page.locator("#cancel-btn").is_visible()  # open server, running job
    banner = page.locator("#end-banner")
    banner.wait_for(state="visible", timeout=15_000)
    assert "Job lost" in banner.inner_text()
    badge = page.locator("#job-status .badge")
    assert badge.get_attribute("data-status") == "lost" and badge.inner_text() == "Lost"
    colour = badge.evaluate("node => getComputedStyle(node).color")
    orange = page.evaluate(
        "() => { const probe = document.createElement('span');"
        " probe.style.color = 'var(--orange)'; document.body.append(probe);"
        " const c = getComputedStyle(probe).color; probe.remove(); return c; }"
    )
    assert colour == orange, (colour, orange)  # its own colour (either theme), not failed's red
    assert page.locator("#cancel-btn").is_hidden()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log .row')].some("
        "r => r.textContent.includes('logstream: job lost'))"
    )


ATTACK = """<!doctype html>
<html><body><script>
  const url = "{target}/api/jobs/{job}/cancel";
  window.sent = Promise.allSettled([
    fetch(url, {{method: "POST", mode: "no-cors"}}),
    fetch(url, {{method: "POST", mode: "no-cors", body: "{{}}"}}),
    fetch(url, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "application/json"}},
                body: "{{}}"}}),
  ]).then(() => true);
</script></body></html>
"""


def test_a_page_on_another_origin_cannot_cancel_jobs(browser: Any, server: ServerProcess) -> None:
    import http.server
    import threading

    import httpx
    from support.server import free_port

    victim = create_job(server.url, "victim")
    page_bytes = ATTACK.format(target=server.url, job=victim["id"]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page_bytes)))
            self.end_headers()
            self.wfile.write(page_bytes)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://localhost:{httpd.server_port}/")
        page.wait_for_function("() => window.sent")
        page.evaluate("window.sent")
    finally:
        context.close()
        httpd.shutdown()
        httpd.server_close()
    shown = httpx.get(f"{server.url}/api/jobs/{victim['id']}").json()
    assert shown["status"] == "running" and shown["cancel_requested_at"] is None
