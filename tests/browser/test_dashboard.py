"""The dashboard as people use it: at 1440x900 and 390x844, in the dark and the light theme.

Every test that takes `view` runs in all four looks and leaves a screenshot in the artifacts
folder (tests/browser/artifacts/, or $LOGSTREAM_TEST_ARTIFACTS) named after the test and look.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.browser import (
    append,
    chromium_path,
    demo_lines,
    fill,
    finish,
    screenshot,
    wait_for_viewer,
)
from support.server import REQUIRE_ALL, ServerProcess, create_job, skip_or_fail

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

E = "\x1b"
LOOKS = {
    "desktop-dark": (1440, 900, "dark"),
    "desktop-light": (1440, 900, "light"),
    "phone-dark": (390, 844, "dark"),
    "phone-light": (390, 844, "light"),
}
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


class View:
    def __init__(self, page: Any, look: str, name: str) -> None:
        self.page, self.look, self.name = page, look, name
        self.width, self.height, self.scheme = LOOKS[look]
        self.phone = self.width < 700

    def shot(self, what: str = "") -> None:
        screenshot(self.page, f"{self.name}-{self.look}{'-' + what if what else ''}")

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("window.__logstream.state()")  # type: ignore[no-any-return]

    def wait(self, condition: str, timeout: float = 15_000) -> None:
        self.page.wait_for_function(
            f"() => {{ const s = window.__logstream.state(); return {condition}; }}",
            timeout=timeout,
        )

    def open_job(self, base: str, job: dict[str, Any], suffix: str = "") -> None:
        self.page.goto(f"{base}/jobs/{job['id']}{suffix}")
        wait_for_viewer(self.page)


@pytest.fixture(params=list(LOOKS))
def view(request: Any, browser: Any) -> Iterator[View]:
    width, height, scheme = LOOKS[request.param]
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=scheme,
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    v = View(page, request.param, request.node.originalname.removeprefix("test_"))
    try:
        yield v
        v.shot("end")
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _job(base: str, name: str, lines: list[str], meta: Any = None, done: bool = True) -> Any:
    response = httpx.post(f"{base}/api/jobs", json={"name": name, "meta": meta or {}})
    assert response.status_code == 201, response.text
    job = response.json()
    if lines:
        append(base, job, lines)
    if done:
        finish(base, job)
    return job


META = {
    "branch": "feature/phone-layout",
    "commit": "3f2a9c81d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9",
    "author": "Ada <ada@example.com>",
    "url": "https://ci.example.com/pipelines/812",
    "pipeline": "812",
    "runner": "linux-7",
    "attempt": 2,
    "evil": "<img src=x onerror=alert(1)>",
}


def _inside(page: Any, selector: str) -> bool:
    return page.evaluate(  # type: ignore[no-any-return]
        """(sel) => [...document.querySelectorAll(sel)].every((node) => {
            const r = node.getBoundingClientRect();
            return r.width > 0 && r.left >= -0.5 && r.right <= innerWidth + 0.5;
        })""",
        selector,
    )


def test_pages_fit_the_screen(shared_server: ServerProcess, view: View) -> None:
    base, page = shared_server.url, view.page
    long = "x" * 40 + " " + "word " * 60
    job = _job(
        base, "layout: a job with a rather long name to see it shorten", [*demo_lines(), long], META
    )
    page.goto(f"{base}/")
    page.wait_for_function("() => window.__logstream.jobs().length > 0")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    row = f'tr[data-id="{job["id"]}"]'
    for cell in ("c-name", "c-status", "c-lines", "c-started", "c-duration"):
        assert _inside(page, f"{row} td.{cell}"), cell
    view.shot("list")
    view.open_job(base, job)
    view.wait(f"s.lineCount === {len(demo_lines()) + 1}")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    for tool in ("#download", "#wrap-toggle", "#first-error", "#search", "#theme-toggle"):
        assert _inside(page, tool), tool
    assert view.state()["wrap"] is view.phone  # wrapping by default on a phone only
    n = len(demo_lines()) + 1
    page.wait_for_function("n => window.__logstream.visibleLines().some(l => l.n === n)", arg=n)
    rows = page.evaluate("window.__logstream.visibleLines()")
    height = [r["height"] for r in rows if r["n"] == n][0]
    assert (height > 20) is view.phone, height  # the long line wraps on the phone only
    if not view.phone:
        assert page.locator("#log").evaluate("el => el.scrollWidth > el.clientWidth")


def test_wrap_toggle_is_remembered_and_rows_of_any_height_stay_in_order(
    shared_server: ServerProcess, view: View
) -> None:
    base, page = shared_server.url, view.page

    def text(n: int) -> str:
        return f"{n} " + ("wrapping words " * (n % 40)) + "end"

    job = create_job(base, "wrap")
    fill(base, job, 3000, batch=1000, text=text)
    finish(base, job)
    view.open_job(base, job, "#L2500")
    page.wait_for_function(
        "() => window.__logstream.visibleLines().some(l => l.n === 2500 && !l.pending)"
    )
    page.locator("#wrap-toggle").click()
    wrapped = not view.phone
    view.wait(f"s.wrap === {str(wrapped).lower()}")
    page.reload()
    wait_for_viewer(page)
    view.wait(f"s.wrap === {str(wrapped).lower()}")  # remembered
    page.locator("#wrap-toggle").click()
    page.locator("#wrap-toggle").click()  # and back
    for n in (2500, 10, 1777, 2999):
        page.evaluate("n => window.__logstream.scrollToLine(n)", n)
        page.wait_for_function(
            "n => window.__logstream.visibleLines().some(l => l.n === n && !l.pending)", arg=n
        )
        time.sleep(0.2)
        rows = page.evaluate("window.__logstream.renderedRows()")
        for a, b in zip(rows, rows[1:], strict=False):
            assert b["n"] > a["n"]
            assert a["top"] + a["height"] <= b["top"] + 0.5, (a, b)  # no overlap, no gap order
        target = [r for r in rows if r["n"] == n][0]
        assert target["text"] == text(n)
        if wrapped and n % 40 > 20:
            assert target["height"] >= 40, target
    assert view.state()["domRows"] < 200


def test_theme_follows_the_system_and_the_toggle(shared_server: ServerProcess, view: View) -> None:
    base, page = shared_server.url, view.page
    job = _job(base, "theme", demo_lines())
    view.open_job(base, job)
    assert page.evaluate("document.documentElement.dataset.theme") == view.scheme
    light = page.evaluate(
        "() => { const [r, g, b] = getComputedStyle(document.body).backgroundColor"
        ".match(/\\d+/g).map(Number); return (r + g + b) / 3 > 128; }"
    )
    assert light is (view.scheme == "light")
    red = page.locator("#log .ansi-fg-red", has_text="FAILED").first
    assert red.evaluate("n => getComputedStyle(n).color") != "rgb(0, 0, 0)"
    view.shot("before-toggle")
    toggle = page.locator("#theme-toggle")
    other = "dark" if view.scheme == "light" else "light"
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.theme") == other:
            break
        toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == other
    page.goto(f"{base}/")
    assert page.evaluate("document.documentElement.dataset.theme") == other  # remembered
    view.shot("toggled-list")


def test_keyboard_moves_the_log_and_toggles_sections(
    shared_server: ServerProcess, view: View
) -> None:
    base, page = shared_server.url, view.page
    job = create_job(base, "keys")
    append(base, job, ["::group::Setup", *[f"setup {n}" for n in range(2, 50)], "::endgroup::"])
    fill_lines = [f"line {n}" for n in range(51, 301)]
    append(base, job, fill_lines)
    view.open_job(base, job)
    page.wait_for_function("() => window.__logstream.visibleLines().some(l => l.n === 300)")
    log = page.locator("#log")
    assert log.get_attribute("role") == "log"
    page.keyboard.press("Tab")
    log.focus()
    assert (
        page.evaluate("getComputedStyle(document.querySelector('.log-wrap')).outlineStyle")
        == "solid"
    )
    assert view.state()["following"] is True
    page.keyboard.press("PageUp")
    view.wait("s.following === false")
    top = page.evaluate("document.getElementById('log').scrollTop")
    append(base, job, [f"more {n}" for n in range(301, 341)])
    view.wait("s.lineCount === 340")
    time.sleep(0.3)
    assert page.evaluate("document.getElementById('log').scrollTop") == top  # not snapped back
    page.keyboard.press("k")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.getElementById('log').scrollTop") < top
    page.keyboard.press("j")
    page.keyboard.press("Home")
    page.wait_for_function("() => window.__logstream.visibleLines()[0].n === 1")
    assert view.state()["following"] is False
    page.keyboard.press("PageDown")
    assert page.evaluate("document.getElementById('log').scrollTop") > 0
    page.keyboard.press("g")
    caret = page.locator('#log .row[data-n="1"] button.caret')
    assert caret.get_attribute("aria-expanded") == "true"
    caret.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => !window.__logstream.renderedLines().some(l => l.n === 2)")
    assert caret.get_attribute("aria-expanded") == "false"
    view.shot("collapsed")
    page.keyboard.press(" ")
    page.wait_for_function("() => window.__logstream.renderedLines().some(l => l.n === 2)")
    assert caret.get_attribute("aria-expanded") == "true"
    log.focus()
    page.keyboard.press("[")
    page.wait_for_function("() => !window.__logstream.renderedLines().some(l => l.n === 2)")
    page.keyboard.press("]")
    page.wait_for_function("() => window.__logstream.renderedLines().some(l => l.n === 2)")
    page.keyboard.press("End")
    view.wait("s.following === true")
    page.wait_for_function("() => window.__logstream.visibleLines().some(l => l.n === 340)")
    finish(base, job)


@pytest.mark.parametrize("look", list(LOOKS))
def test_no_serious_accessibility_violations(
    shared_server: ServerProcess, browser: Any, look: str
) -> None:
    if not AXE.exists():  # under scripts/test (and so CI) a missing axe-core fails, not skips
        skip_or_fail("axe-core is not installed (scripts/test installs it with npm ci)")
    width, height, scheme = LOOKS[look]
    base = shared_server.url
    lines = [*demo_lines(), "::error file=src/app.c,line=3::undefined symbol", "::warning::slow"]
    job = _job(base, "a11y", lines, META)
    running = _job(base, "a11y running", ["working…"], done=False)
    # The pages' CSP allows only their own scripts: axe is injected with it bypassed, here only.
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=scheme, bypass_csp=True
    )
    try:
        page = context.new_page()
        for url in ("/", f"/jobs/{job['id']}", f"/jobs/{running['id']}", "/jobs/999999"):
            page.goto(f"{base}{url}")
            if url == "/":
                page.wait_for_function("() => window.__logstream.jobs().length > 0")
            elif url != "/jobs/999999":
                wait_for_viewer(page)
                page.wait_for_function("() => window.__logstream.renderedLines().length > 0")
            page.add_script_tag(path=str(AXE))
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            bad = [
                (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                for v in result["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            assert not bad, f"{look} {url}: {bad}"
            screenshot(page, f"axe-{look}-{url.strip('/').replace('/', '-') or 'list'}")
    finally:
        context.close()


def test_sections_errors_annotations_and_copy(shared_server: ServerProcess, view: View) -> None:
    base, page = shared_server.url, view.page
    lines = [
        "start",  # 1
        f"{E}[0Ksection_start:1700000000:fetch\r{E}[0K{E}[36mFetching{E}[0m",  # 2
        "fetched",  # 3
        f"{E}[0Ksection_end:1700000003:fetch\r{E}[0K",  # 4 (hidden)
        "section_start:1700000003:compile[collapsed=true]",  # 5: no CR, title from its id
        "compiled",  # 6
        "section_end:1700000010:compile",  # 7 (hidden)
        "::group::Tests",  # 8
        "test a ok",  # 9
        "::endgroup::",  # 10 (hidden)
        "##[group]Azure step",  # 11
        "azure output",  # 12
        "##[endgroup]",  # 13 (hidden)
        "--- :hammer: Buildkite build",  # 14 (collapsed: has ended)
        "bk build output",  # 15
        "+++ :test_tube: Buildkite tests",  # 16 (expanded)
        f"{E}[33mwarning: {E}[31mdeprecated",  # 17: red text carried on ...
        "still red here",  # 18
        f"{E}[0m::warning file=a.c,line=7::unused variable",  # 19
        "::error title=Build failed::3 tests failed",  # 20
        "::notice::cache hit",  # 21
        "FATAL: out of disk",  # 22 (the pattern)
        "done",  # 23
    ]
    job = _job(base, "sections", lines)
    view.open_job(base, job)
    page.wait_for_function("() => window.__logstream.renderedLines().some(l => l.n === 23)")
    shown = [r["n"] for r in page.evaluate("window.__logstream.renderedLines()")]
    assert shown == [1, 2, 3, 5, 8, 9, 11, 12, 14, 16, 17, 18, 19, 20, 21, 22, 23], shown
    titles = page.locator("#log .section-title").all_inner_texts()
    assert titles == [
        "Fetching",
        "compile",
        "Tests",
        "Azure step",
        ":hammer: Buildkite build",
        ":test_tube: Buildkite tests",
    ]
    assert (
        page.locator('#log .row[data-n="5"] button.caret').get_attribute("aria-expanded") == "false"
    )
    assert (
        page.locator('#log .row[data-n="14"] button.caret').get_attribute("aria-expanded")
        == "false"
    )
    # Annotations: rows of their own, a summary at the top.
    assert page.locator('#log .row[data-n="20"] .annotation-badge').inner_text() == "Error"
    assert "Build failed" in page.locator('#log .row[data-n="20"]').inner_text()
    assert page.locator('#log .row[data-n="19"] .annotation-where').inner_text() == "a.c:7"
    chips = page.locator("#annotations .annotation-chip").all_inner_texts()
    assert chips == ["1 error", "1 warning", "1 notice"]
    view.shot("annotations")
    # Errors: red text first (line 17), then the red line it carries to, the annotation, the
    # pattern; the pattern is the reader's to change.
    button = page.locator("#first-error")
    found = []
    for _ in range(5):
        button.click()
        page.wait_for_function("() => !document.getElementById('first-error').disabled")
        found.append(view.state()["selection"]["a"] if view.state()["selection"] else None)
    assert found[:4] == [17, 18, 20, 22], found
    page.locator("details.options summary").click()
    page.locator("#error-pattern").fill("out of")
    page.locator("#error-pattern").press("Enter")
    page.locator("#error-pattern").dispatch_event("change")
    assert page.evaluate("window.__logstream.nextError(20)") == 22
    page.locator("details.options summary").click()
    # Collapse and expand all.
    page.locator("#collapse-all").click()
    page.wait_for_function("() => !window.__logstream.renderedLines().some(l => l.n === 9)")
    page.locator("#expand-all").click()
    page.wait_for_function("() => window.__logstream.renderedLines().some(l => l.n === 6)")
    # Copy: a line, its permalink, a section.
    page.evaluate("window.__logstream.scrollToLine(3)")
    page.locator('#log .row[data-n="3"] a.ln').click()
    page.locator("#copy-lines").click()
    page.wait_for_function("() => window.__logstream.lastCopied() === 'fetched'")
    page.locator("#copy-link").click()
    page.wait_for_function("() => (window.__logstream.lastCopied() || '').endsWith('#L3')")
    assert page.evaluate("window.__logstream.lastCopied()") == f"{base}/jobs/{job['id']}#L3"
    header = page.locator('#log .row[data-n="8"]')
    header.hover()
    header.locator(".section-copy").click()
    page.wait_for_function("() => window.__logstream.lastCopied() === 'Tests\\ntest a ok'")
    if view.scheme == "dark" and not view.phone:
        assert page.evaluate("navigator.clipboard.readText()") == "Tests\ntest a ok"


def test_meta_shows_on_the_job_and_in_the_list(shared_server: ServerProcess, view: View) -> None:
    base, page = shared_server.url, view.page
    meta = {**META, "link": "javascript:alert(1)"}
    job = _job(base, "meta", ["hello"], meta)
    view.open_job(base, job)
    box = page.locator("#job-meta")
    box.wait_for()
    assert box.locator(".meta-branch").inner_text() == "branch feature/phone-layout"
    assert box.locator(".meta-commit code").inner_text() == "3f2a9c81d4"
    assert box.locator(".meta-author").inner_text() == "author Ada <ada@example.com>"
    assert box.locator(".meta-pipeline").inner_text() == "pipeline 812"
    link = box.locator(".meta-url a")
    assert link.get_attribute("href") == "https://ci.example.com/pipelines/812"
    others = box.locator(".meta-other").all_inner_texts()
    assert others == [
        "attempt=2",
        "evil=<img src=x onerror=alert(1)>",
        "link=javascript:alert(1)",
        "runner=linux-7",
    ]
    assert page.locator("#job-meta img").count() == 0
    assert page.locator("#job-meta a").count() == 1
    page.goto(f"{base}/")
    row = page.locator(f'tr[data-id="{job["id"]}"]')
    row.wait_for()
    assert "feature/phone-layout" in row.locator(".job-meta").inner_text()
    assert _inside(page, f'tr[data-id="{job["id"]}"] .job-meta')


def test_unknown_job_is_a_404_and_an_empty_job_says_it_waits(
    shared_server: ServerProcess, view: View
) -> None:
    base, page = shared_server.url, view.page
    response = page.goto(f"{base}/jobs/987654321")
    assert response.status == 404
    assert "Job not found" in page.locator("h1").inner_text()
    view.shot("404")
    assert httpx.get(f"{base}/jobs/99999999999999999999").status_code == 404
    job = _job(base, "empty", [], done=False)
    view.open_job(base, job)
    empty = page.locator("#log-empty")
    empty.wait_for()
    assert "Waiting for output" in empty.inner_text()
    view.shot("waiting")
    append(base, job, ["first words"])
    empty.wait_for(state="hidden")
    finish(base, job)


def _hide(page: Any, hidden: bool) -> None:
    """Play the browser's part: headless Chromium shows every Playwright page as visible."""
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "visibilityState",
                {configurable: true, get: () => hidden ? "hidden" : "visible"});
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_twenty_tabs_over_http11_all_work(shared_server: ServerProcess, browser: Any) -> None:
    """One tab is shown at a time, as in a browser window: hidden tabs let their streams go, so
    twenty live tabs (and the job list) share HTTP/1.1's six connections, and each resumes by
    line id, missing nothing, when it is shown again."""
    base = shared_server.url
    job = create_job(base, "twenty tabs")
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        listing = context.new_page()
        listing.goto(f"{base}/")
        listing.wait_for_function("() => window.__logstream.mode() === 'sse'")
        _hide(listing, True)
        tabs = []
        for i in range(20):
            tab = context.new_page()
            tab.goto(f"{base}/jobs/{job['id']}")
            wait_for_viewer(tab)
            tab.wait_for_function("() => window.__logstream.state().connection === 'live'")
            assert tab.evaluate("location.protocol") == "http:"  # browsers speak h2 over TLS only
            append(base, job, [f"line while tab {i} is shown"])
            tab.wait_for_function(
                "n => window.__logstream.state().lastStreamed === n", arg=i + 1, timeout=10_000
            )
            _hide(tab, True)
            tab.wait_for_function("() => window.__logstream.state().paused")
            tabs.append(tab)
        append(base, job, [f"late {n}" for n in range(10)])
        for tab in tabs:
            _hide(tab, False)
            tab.wait_for_function(
                "() => window.__logstream.state().lastStreamed === 30", timeout=10_000
            )
            texts = [line["text"] for line in tab.evaluate("window.__logstream.lines(1, 30)")]
            assert texts == [f"line while tab {i} is shown" for i in range(20)] + [
                f"late {n}" for n in range(10)
            ]
            _hide(tab, True)
        _hide(listing, False)
        listing.wait_for_function("() => window.__logstream.mode() === 'sse'")
        finish(base, job)
        listing.wait_for_function(
            "id => window.__logstream.jobs().some(j => j.id === id && j.status === 'succeeded')",
            arg=job["id"],
        )
        _hide(tabs[0], False)
        tabs[0].wait_for_function("() => window.__logstream.state().connection === 'ended'")
        screenshot(tabs[0], "twenty-tabs-first-tab")
    finally:
        context.close()
