"""The job list with a filter in its URL, in a real headless Chromium: the server filters the
listing, and live events keep to the filter (a job that stops matching leaves the list)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.browser import chromium_path, finish
from support.server import REQUIRE_ALL, ServerProcess

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

LISTED = "() => window.__logstream.jobs().map(j => j.id)"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def new_job(base: str, name: str, meta: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{base}/api/jobs", json={"name": name, "meta": meta})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_list_keeps_to_the_filter_in_its_url(shared_server: ServerProcess, page: Any) -> None:
    base = shared_server.url
    name = f"filtered-{uuid.uuid4().hex[:8]}"
    before = new_job(base, name, {"branch": "main"})
    new_job(base, name, {"branch": "dev"})
    new_job(base, name + "-x", {"branch": "main"})
    page.goto(f"{base}/?status=running&name={name}&meta.branch=main")
    page.wait_for_function("() => window.__logstream && window.__logstream.mode() === 'sse'")
    assert page.evaluate(LISTED) == [before["id"]]
    assert f"name={name}" in page.locator(".list-head .sub").inner_text()
    live = new_job(base, name, {"branch": "main"})
    new_job(base, name, {"branch": "dev"})  # does not match: never shown
    page.wait_for_function(f"() => ({LISTED})().length === 2", timeout=5000)
    assert page.evaluate(LISTED) == [live["id"], before["id"]]
    finish(base, before, "succeeded", 0)  # no longer running: it leaves the list
    page.wait_for_function(f"() => ({LISTED})().length === 1", timeout=5000)
    assert page.evaluate(LISTED) == [live["id"]]
    page.goto(f"{base}/?status=done")
    page.wait_for_function(
        "() => document.querySelector('#live .conn-label').textContent.includes('status')"
    )
