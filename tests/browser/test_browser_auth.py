"""Signing in and tailing with the session cookie in a real headless Chromium, and what the
pages do when the session ends (expiry, revocation): say "signed out" and stop reconnecting."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.auth import bearer, make_token, revoke, tokens_server
from support.browser import append, chromium_path, launch_chromium, wait_for_viewer
from support.server import REQUIRE_ALL, ServerProcess, create_job

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

SESSION_TTL = 6.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = tokens_server(
        tmp_path_factory.mktemp("browser-auth"), LOGSTREAM_SESSION_TTL=str(SESSION_TTL)
    )
    proc.admin = make_token(proc.database_url, "admin", "admin")  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.requests = requests
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _state(page: Any, condition: str, timeout: float = 15_000) -> None:
    page.wait_for_function(
        f"() => {{ const s = window.__logstream.state(); return {condition}; }}", timeout=timeout
    )


def _list_mode(page: Any, mode: str, timeout: float = 15_000) -> None:
    """Wait until the job list's mode is `mode` (the page may still be loading)."""
    page.wait_for_function(
        f"() => window.__logstream && window.__logstream.mode"
        f" && window.__logstream.mode() === '{mode}'",
        timeout=timeout,
    )


def _job(server: ServerProcess, name: str) -> dict[str, Any]:
    return create_job(server.url, name, headers=bearer(server.admin))  # type: ignore[attr-defined]


def _sign_in(page: Any, token: str) -> None:
    page.locator("#signin").wait_for(state="visible")
    page.fill("#token", token)
    page.click("#signin-submit")


def test_sign_in_then_tail_live_with_the_cookie(server: ServerProcess, page: Any) -> None:
    token = make_token(server.database_url, "read", "browser-reader")
    job = _job(server, "signed-in tail")
    append(server.url, job, ["written before"])
    response = page.goto(f"{server.url}/jobs/{job['id']}")
    assert response.status == 401  # the sign-in page in the viewer's place, not a blank one
    assert page.locator("h1").inner_text() == "Sign in"
    _sign_in(page, token)
    wait_for_viewer(page)
    assert page.url == f"{server.url}/jobs/{job['id']}"  # back where the reader was going
    _state(page, "s.connection === 'live'")
    append(server.url, job, [f"live {i}" for i in range(5)])
    _state(page, "s.lineCount === 6")
    # The rows are drawn on the next frame after the lines arrive: wait for them too.
    page.wait_for_function("() => window.__logstream.renderedLines().length === 6", timeout=15_000)
    texts = [row["text"] for row in page.evaluate("window.__logstream.renderedLines()")]
    assert texts == ["written before"] + [f"live {i}" for i in range(5)]
    assert page.locator("#account .account-name").inner_text() == "browser-reader"
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "logstream_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert "logstream_session" not in page.evaluate("document.cookie")
    assert not any(token in url for url in page.requests), "a token travelled in a URL"
    # The job list works with the same session.
    page.goto(f"{server.url}/")
    _list_mode(page, "sse")
    assert job["id"] in [row["id"] for row in page.evaluate("window.__logstream.jobs()")]


def test_a_bad_token_is_told_on_the_sign_in_page(server: ServerProcess, page: Any) -> None:
    page.goto(f"{server.url}/signin?next=/jobs/1")
    _sign_in(page, "lsk_not-a-real-token")
    error = page.locator("#signin-error")
    error.wait_for(state="visible")
    assert "not valid" in error.inner_text()
    assert page.context.cookies() == []


def _log_requests(page: Any, job_id: int) -> int:
    return sum(1 for url in page.requests if f"/api/jobs/{job_id}/log" in url)


def test_a_session_that_expires_during_a_tail_signs_out_and_stops(
    server: ServerProcess, page: Any
) -> None:
    token = make_token(server.database_url, "read", "expiring-reader")
    job = _job(server, "expiring")
    page.goto(f"{server.url}/jobs/{job['id']}")
    _sign_in(page, token)
    wait_for_viewer(page)
    _state(page, "s.connection === 'live'")
    signed_in_at = time.monotonic()
    append(server.url, job, ["while signed in"])
    _state(page, "s.lineCount === 1")
    _state(page, "s.connection === 'signed-out'", timeout=(SESSION_TTL + 5) * 1000)
    assert time.monotonic() - signed_in_at < SESSION_TTL + 3
    banner = page.locator("#conn-banner")
    assert banner.is_visible() and "Signed out" in banner.inner_text()
    link = page.locator("#sign-in-again")
    assert link.get_attribute("href") == f"/signin?next=%2Fjobs%2F{job['id']}"
    # No hammering: the page opens no stream and asks for nothing more while it sits there.
    streams, asked = _log_requests(page, job["id"]), len(page.requests)
    time.sleep(4)
    assert _log_requests(page, job["id"]) == streams
    assert len(page.requests) == asked
    # The link leads to the sign-in page and back to the job.
    link.click()
    _sign_in(page, make_token(server.database_url, "read", "back-again"))
    page.wait_for_url(f"{server.url}/jobs/{job['id']}")
    wait_for_viewer(page)
    _state(page, "s.connection === 'live' && s.lineCount === 1")


def test_revoking_the_token_signs_the_viewer_out(server: ServerProcess, page: Any) -> None:
    token = make_token(server.database_url, "read", "revoked-reader")
    job = _job(server, "revoked")
    page.goto(f"{server.url}/jobs/{job['id']}")
    _sign_in(page, token)
    wait_for_viewer(page)
    _state(page, "s.connection === 'live'")
    revoke(server.database_url, "revoked-reader")
    _state(page, "s.connection === 'signed-out'", timeout=5_000)
    streams = _log_requests(page, job["id"])
    time.sleep(3)
    assert _log_requests(page, job["id"]) == streams


def test_the_job_list_signs_out_too(server: ServerProcess, page: Any) -> None:
    token = make_token(server.database_url, "read", "list-reader")
    response = page.goto(f"{server.url}/")
    assert response.status == 401
    _sign_in(page, token)
    _list_mode(page, "sse")
    revoke(server.database_url, "list-reader")
    _list_mode(page, "signed-out", timeout=10_000)
    notice = page.locator("#signed-out")
    assert notice.is_visible() and "Sign in again" in notice.inner_text()
    asked = len(page.requests)
    time.sleep(3)
    assert len(page.requests) == asked


def test_sign_out_button(server: ServerProcess, page: Any) -> None:
    token = make_token(server.database_url, "read", "leaving-reader")
    page.goto(f"{server.url}/")
    _sign_in(page, token)
    page.locator("#sign-out").click()
    page.wait_for_url(f"{server.url}/signin")
    assert [c for c in page.context.cookies() if c["name"] == "logstream_session"] == []
    assert page.goto(f"{server.url}/").status == 401
