"""The dashboard in a real headless Chromium against a real server."""

from __future__ import annotations

import datetime as dt
import re
import threading
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
    wait_for_viewer,
)
from support.server import REQUIRE_ALL, ServerProcess, auth, create_job

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
    ),
]

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def state(page: Any) -> dict[str, Any]:
    return page.evaluate("window.__logstream.state()")  # type: ignore[no-any-return]


def wait_state(page: Any, condition: str, timeout: float = 15_000) -> None:
    """Wait until `condition` (a JS expression over `s`, the viewer state) holds."""
    page.wait_for_function(
        f"() => {{ const s = window.__logstream.state(); return {condition}; }}", timeout=timeout
    )


def test_lines_stream_in_order_with_colours_and_the_end_state(
    shared_server: ServerProcess, page: Any
) -> None:
    base = shared_server.url
    job = create_job(base, "colours")
    append(base, job, ["before the page opened"])
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    wait_state(page, "s.connection === 'live'")
    expected = ["before the page opened"]
    for batch in range(5):
        lines = [f"batch {batch} line {i}" for i in range(10)]
        if batch == 2:
            lines[3] = "\x1b[31mred alert\x1b[0m and \x1b[1;32mbold green\x1b[0m"
        append(base, job, lines)
        expected += lines
        time.sleep(0.1)
    wait_state(page, f"s.lineCount === {len(expected)}")
    visible_line(page, len(expected))  # following: the newest line is on screen
    plain = [ANSI_RE.sub("", t) for t in expected]
    rendered = page.evaluate("window.__logstream.renderedLines()")
    numbers = [row["n"] for row in rendered]
    assert numbers == list(range(numbers[0], len(expected) + 1))
    assert [row["text"] for row in rendered] == plain[numbers[0] - 1 :]
    cached = page.evaluate(f"window.__logstream.lines(1, {len(expected)})")
    assert [line["text"] for line in cached] == plain

    red = page.locator("#log .ansi-fg-red", has_text="red alert")
    colour = red.evaluate("node => getComputedStyle(node).color")
    r, g, b = map(int, re.findall(r"\d+", colour)[:3])
    assert r > 200 and g < 150 and b < 150, colour
    green = page.locator("#log .ansi-fg-green", has_text="bold green")
    assert int(green.evaluate("node => getComputedStyle(node).fontWeight")) >= 700

    finish(base, job, "failed", 3)
    banner = page.locator("#end-banner")
    banner.wait_for(state="visible")
    assert "Job failed" in banner.inner_text()
    assert "exit code 3" in banner.inner_text()
    assert page.locator("#job-status .badge").get_attribute("data-status") == "failed"
    wait_state(page, "s.connection === 'ended'")


def line_text(n: int) -> str:
    # Vary what a line looks like: colours, CR progress, leading spaces, empty lines.
    kinds = [
        f"line {n}",
        f"  {n}: indented",
        f"\x1b[3{n % 8}m{n} coloured\x1b[0m",
        "",
        f"{n}%\r{n} done",
    ]
    return kinds[n % len(kinds)]


def shown(n: int) -> str:
    """What the viewer shows for line_text(n): escapes gone, `N done` written over `N%`."""
    kinds = [f"line {n}", f"  {n}: indented", f"{n} coloured", "", f"{n} done"]
    return kinds[n % len(kinds)]


def test_a_restart_mid_stream_loses_and_doubles_nothing(server: ServerProcess, page: Any) -> None:
    base = server.url
    job = create_job(base, "restart")
    total = 600
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    wait_state(page, "s.connection === 'live'")
    sent = {"n": 0}

    def writer() -> None:
        # Appends with `first`, retrying through the outage: each line is stored once.
        while sent["n"] < total:
            first = sent["n"] + 1
            batch = [line_text(n) for n in range(first, min(total, first + 9) + 1)]
            try:
                response = httpx.post(
                    f"{base}/api/jobs/{job['id']}/lines",
                    json={"lines": batch, "first": first},
                    headers=auth(job),
                    timeout=5,
                )
                if response.status_code == 200:
                    sent["n"] = response.json()["line_count"]
            except httpx.HTTPError:
                time.sleep(0.1)
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while sent["n"] < total // 3:
            time.sleep(0.02)
        server.restart()
        thread.join(60)
    finally:
        sent["n"] = total  # stops the writer if something failed
        thread.join(10)
    finish(base, job, "succeeded", 0)
    wait_state(page, f"s.status === 'succeeded' && s.lineCount === {total}", timeout=30_000)
    log = state(page)["connectionLog"]
    assert "reconnecting" in log, log
    assert log[-1] == "ended", log
    lines = page.evaluate(f"window.__logstream.lines(1, {total})")
    assert [line["n"] for line in lines] == list(range(1, total + 1))
    missing = [line["n"] for line in lines if line["text"] is None]
    assert not missing, f"lines never received: {missing[:20]}"
    wrong = [(line["n"], line["text"]) for line in lines if line["text"] != shown(line["n"])]
    assert not wrong, wrong[:10]
    # What is on screen (the bottom, following) is in order with no line twice.
    rendered = page.evaluate("window.__logstream.renderedLines()")
    numbers = [row["n"] for row in rendered]
    assert numbers == list(range(numbers[0], total + 1))
    assert [row["text"] for row in rendered] == [shown(n) for n in numbers]


@pytest.fixture(scope="module")
def big_job(shared_server: ServerProcess) -> dict[str, Any]:
    """A finished 100,000-line job; line 123 holds a unique needle."""
    base = shared_server.url
    job = create_job(base, "huge")

    def text(n: int) -> str:
        if n == 123:
            return "the \x1b[33mNeedle-In-The-Haystack\x1b[0m is here"
        return f"{n:06d} \x1b[2m[worker {n % 7}]\x1b[0m step {n} of the build"

    fill(base, job, 100_000, batch=5000, text=text)
    finish(base, job, "succeeded", 0)
    return job


def visible_line(page: Any, n: int, timeout: float = 15_000) -> None:
    page.wait_for_function(
        "n => window.__logstream.visibleLines().some(l => l.n === n && !l.pending)",
        arg=n,
        timeout=timeout,
    )


def test_permalink_into_a_huge_log_scrolls_there_and_highlights(
    shared_server: ServerProcess, big_job: dict[str, Any], page: Any
) -> None:
    base = shared_server.url
    page.goto(f"{base}/jobs/{big_job['id']}?cache_pages=8#L50000")
    wait_for_viewer(page)
    visible_line(page, 50_000)
    row = page.locator('#log .row[data-n="50000"]')
    assert "hl" in (row.get_attribute("class") or "")
    assert row.locator(".tx").inner_text().startswith("050000 [worker 6] step 50000")
    s = state(page)
    assert s["following"] is False
    assert s["domRows"] < 150, s  # only what is on screen is in the DOM

    # A range link, then many far jumps: the cache stays within its budget.
    page.evaluate("location.hash = '#L99990-L99995'")
    visible_line(page, 99_995)
    assert page.locator("#log .row.hl").count() == 6
    for n in (1, 20_000, 87_654, 3_333, 64_000, 42, 99_000, 12_345, 55_555, 77_777):
        page.evaluate("n => window.__logstream.scrollToLine(n)", n)
        visible_line(page, n)
    s = state(page)
    assert s["cachedPages"] <= s["maxPages"], s

    # Clicking a line number makes it the permalink.
    page.locator('#log .row[data-n="77777"] a.ln').click()
    assert page.evaluate("location.hash") == "#L77777"


def test_search_finds_a_line_near_the_start_of_a_huge_log(
    shared_server: ServerProcess, big_job: dict[str, Any], page: Any
) -> None:
    base = shared_server.url
    page.goto(f"{base}/jobs/{big_job['id']}")
    wait_for_viewer(page)
    visible_line(page, 100_000)  # opens at the bottom
    page.locator("#search").fill("needle-in-the-haystack")
    page.locator("#search").press("Enter")
    wait_state(page, "!s.search.searching && s.search.current === 123")
    visible_line(page, 123)
    assert page.locator("#search-count").inner_text().startswith("1 / 1")
    row = page.locator('#log .row[data-n="123"]')
    assert "current" in (row.get_attribute("class") or "")
    assert row.locator("mark").inner_text().lower() == "needle-in-the-haystack"

    # Many hits: next and previous walk through them and scroll each into view.
    page.locator("#search").fill("step 9999")
    page.locator("#search").press("Enter")
    wait_state(page, "s.search.query === 'step 9999' && !s.search.searching")
    hits = state(page)["search"]
    assert hits["count"] == 11  # 9999 and 99990..99999
    page.locator("#search-next").click()
    wait_state(page, f"s.search.index === {(hits['index'] + 1) % 11}")
    current = state(page)["search"]["current"]
    visible_line(page, current)
    page.locator("#search-prev").click()
    wait_state(page, f"s.search.index === {hits['index']}")


def test_search_walks_past_the_first_page_of_hits(
    shared_server: ServerProcess, big_job: dict[str, Any], page: Any
) -> None:
    """More hits than one page holds (1,000): stepping past the last fetches the next page."""
    page.goto(f"{shared_server.url}/jobs/{big_job['id']}")
    wait_for_viewer(page)
    page.locator("#search").fill("step 1")
    page.locator("#search").press("Enter")
    wait_state(page, "s.search.query === 'step 1' && !s.search.searching")
    hits = state(page)["search"]
    # 1, 10-19, 100-199 but 123, 1000-1999, 10000-19999, 100000
    assert hits["count"] == 11_111 and hits["matches"] == 1000 and hits["truncated"]
    page.evaluate("window.__logstream.searchGo(999)")
    wait_state(page, "s.search.current === 1889")
    page.locator("#search-next").click()
    wait_state(page, "s.search.index === 1000 && s.search.matches > 1000")
    assert state(page)["search"]["current"] == 1890
    visible_line(page, 1890)
    assert page.locator("#search-count").inner_text() == "1,001 / 11,111"


def _show_finished_job(
    server: ServerProcess, page: Any, name: str, lines: list[str]
) -> tuple[list[str], list[str]]:
    """A finished job of `lines` opened in the viewer: the rendered texts, and the list that
    collects (and dismisses) any dialog the page opens from now on."""
    base = server.url
    job = create_job(base, name)
    append(base, job, lines)
    finish(base, job)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    page.wait_for_function(f"() => window.__logstream.renderedLines().length === {len(lines)}")
    texts = [row["text"] for row in page.evaluate("window.__logstream.renderedLines()")]
    return texts, dialogs


def test_web_addresses_become_links_and_text_stays_the_same(
    shared_server: ServerProcess, page: Any
) -> None:
    texts, dialogs = _show_finished_job(
        shared_server,
        page,
        "links",
        [
            "artifacts at https://example.com/build/42). done",
            "\x1b[32mhttps://ci.example/x?y=1&z=2\x1b[0m green",
            "javascript:alert(1) and ftp://old.example/file stay text",
            'http://a.example/"><img src=x onerror=alert(4)>',
        ],
    )
    assert texts == [
        "artifacts at https://example.com/build/42). done",
        "https://ci.example/x?y=1&z=2 green",
        "javascript:alert(1) and ftp://old.example/file stay text",
        'http://a.example/"><img src=x onerror=alert(4)>',
    ]
    links = page.evaluate("""() => [...document.querySelectorAll('#log a.loglink')].map(
        (a) => [a.getAttribute('href'), a.textContent, a.target, a.rel])""")
    assert links == [
        [
            "https://example.com/build/42",
            "https://example.com/build/42",
            "_blank",
            "noopener noreferrer nofollow",
        ],
        [
            "https://ci.example/x?y=1&z=2",
            "https://ci.example/x?y=1&z=2",
            "_blank",
            "noopener noreferrer nofollow",
        ],
        ["http://a.example/", "http://a.example/", "_blank", "noopener noreferrer nofollow"],
    ]
    # The colored link keeps its color inside the link.
    assert page.locator('#log .row[data-n="2"] a.loglink span').count() == 1
    assert page.locator("#log img").count() == 0 and dialogs == []


def test_a_line_of_html_stays_text(shared_server: ServerProcess, page: Any) -> None:
    texts, dialogs = _show_finished_job(
        shared_server,
        page,
        "xss",
        [
            "<img src=x onerror=alert(1)>",
            "<script>window.__pwned = 1</script>",
            "\x1b[31m<b onmouseover=alert(2)>red</b>\x1b[0m",
            "\x1b]8;;javascript:alert(3)\x1b\\click me\x1b]8;;\x1b\\",
        ],
    )
    assert texts == [
        "<img src=x onerror=alert(1)>",
        "<script>window.__pwned = 1</script>",
        "<b onmouseover=alert(2)>red</b>",
        "click me",
    ]
    assert page.locator("#log img, #log script, #log b, #log a:not(.ln)").count() == 0
    page.locator("#log .row", has_text="onmouseover").hover()
    time.sleep(0.2)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_ten_tabs_over_tls_http2_all_stream(
    browser: Any, tmp_path: Path, tls: dict[str, Any]
) -> None:
    server = ServerProcess(tmp_path, certfile=tls["certfile"], keyfile=tls["keyfile"])
    server.start()
    context = browser.new_context(ignore_https_errors=True)
    try:
        verify = tls["context"]
        job = create_job(server.url, "many tabs", verify=verify)
        pages = []
        for _ in range(10):
            tab = context.new_page()
            tab.goto(f"{server.url}/jobs/{job['id']}")
            pages.append(tab)
        for tab in pages:
            wait_for_viewer(tab)
            wait_state(tab, "s.connection === 'live'")
        for i in range(5):
            append(server.url, job, [f"tab line {i * 10 + k}" for k in range(10)], verify=verify)
            time.sleep(0.05)
        for tab in pages:
            wait_state(tab, "s.lastStreamed === 50 && s.lineCount === 50")
            protocol = tab.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
            assert protocol == "h2"
        finish(server.url, job, verify=verify)
        for tab in pages:
            wait_state(tab, "s.connection === 'ended' && s.status === 'succeeded'")
    finally:
        context.close()
        server.stop()


def test_follow_mode_pauses_when_scrolled_up_and_resumes(
    shared_server: ServerProcess, page: Any
) -> None:
    base = shared_server.url
    job = create_job(base, "follow")
    fill(base, job, 300)
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    visible_line(page, 300)
    append(base, job, ["line 301"])
    visible_line(page, 301)  # following: new lines come into view
    assert state(page)["following"] is True

    page.locator("#log").hover()
    page.mouse.wheel(0, -1500)
    wait_state(page, "s.following === false")
    top_before = page.evaluate("document.getElementById('log').scrollTop")
    append(base, job, [f"line {n}" for n in range(302, 352)])
    wait_state(page, "s.lineCount === 351")
    page.wait_for_timeout(300)
    assert page.evaluate("document.getElementById('log').scrollTop") == top_before  # not yanked
    button = page.locator("#follow-btn")
    button.wait_for(state="visible")
    assert "new" in button.inner_text()
    button.click()
    visible_line(page, 351)
    assert state(page)["following"] is True
    append(base, job, ["line 352"])
    visible_line(page, 352)


def test_sections_collapse_with_title_and_duration(shared_server: ServerProcess, page: Any) -> None:
    base = shared_server.url
    job = create_job(base, "sections")
    append(base, job, demo_lines())
    finish(base, job)
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    header = page.locator('#log .row[data-n="6"]')
    header.wait_for()
    assert header.locator(".section-title").inner_text() == "Building"
    assert header.locator(".section-duration").inner_text() == "1m 07s"
    header.click()
    page.wait_for_function(
        "() => !window.__logstream.renderedLines().some(l => l.n >= 7 && l.n <= 14)"
    )
    assert "collapsed" in (header.get_attribute("class") or "")
    numbers = [row["n"] for row in page.evaluate("window.__logstream.renderedLines()")]
    assert numbers[:6] == [1, 2, 3, 4, 6, 15]  # line 5, an end marker, is hidden
    group = page.locator('#log .row[data-n="15"]')
    assert group.locator(".section-title").inner_text() == "Run tests"
    group.click()
    page.wait_for_function(
        "() => !window.__logstream.renderedLines().some(l => l.n >= 16 && l.n <= 19)"
    )
    header.click()  # expands again
    page.wait_for_function("() => window.__logstream.renderedLines().some(l => l.n === 10)")
    row10 = page.evaluate("window.__logstream.renderedLines()")
    assert [r["text"] for r in row10 if r["n"] == 10] == ["Downloading deps 100% ✔"]


def test_job_list_updates_live_from_the_event_stream(
    shared_server: ServerProcess, page: Any
) -> None:
    base = shared_server.url
    page.goto(f"{base}/")
    page.wait_for_function("() => window.__logstream && window.__logstream.mode() === 'sse'")
    job = create_job(base, "appears live")
    page.wait_for_function(
        "id => window.__logstream.jobs().some(j => j.id === id && j.status === 'running')",
        arg=job["id"],
        timeout=5000,
    )
    first = page.evaluate("window.__logstream.jobs()[0]")
    assert first["id"] == job["id"]  # newest first
    fill(base, job, 42)
    page.wait_for_function(
        "id => window.__logstream.jobs().some(j => j.id === id && j.lines === 42)",
        arg=job["id"],
        timeout=5000,
    )
    finish(base, job, "failed", 2)
    page.wait_for_function(
        "id => window.__logstream.jobs().some(j => j.id === id && j.status === 'failed')",
        arg=job["id"],
        timeout=5000,
    )
    row = page.locator(f'tr[data-id="{job["id"]}"]')
    assert "exit 2" in row.inner_text()
    row.locator("a.job-link").click()
    page.wait_for_url(f"**/jobs/{job['id']}")
    wait_for_viewer(page)


def test_a_stream_closed_by_a_502_is_reopened_after_the_last_line(
    shared_server: ServerProcess, page: Any
) -> None:
    # Any non-200 answer closes an EventSource for good (a proxy's 502 during a deploy): the
    # page must open a new one itself, after the last line it has.
    base = shared_server.url
    job = create_job(base, "proxy hiccup")
    append(base, job, [f"old {n}" for n in range(1, 6)])
    answered: list[str] = []

    def hiccup(route: Any) -> None:
        if not answered:
            answered.append("502")
            route.fulfill(status=502, body="Bad Gateway", content_type="text/html")
        else:
            answered.append(route.request.url)
            route.continue_()

    page.route(re.compile(r".*/api/jobs/\d+/log\?.*"), hiccup)
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    wait_state(page, "s.connection === 'recovered' || s.connection === 'live'")
    append(base, job, [f"new {n}" for n in range(6, 11)])
    wait_state(page, "s.lastStreamed === 10")
    assert answered[0] == "502"
    assert answered[1].endswith("?after=5"), answered
    log = state(page)["connectionLog"]
    assert "reconnecting" in log, log
    texts = [line["text"] for line in page.evaluate("window.__logstream.lines(1, 10)")]
    assert texts == [f"old {n}" for n in range(1, 6)] + [f"new {n}" for n in range(6, 11)]


def test_a_204_on_reconnect_shows_the_final_status(shared_server: ServerProcess, page: Any) -> None:
    # 204 is the server's "finished, nothing left": EventSource stops; the page asks the job.
    base = shared_server.url
    job = create_job(base, "finished meanwhile")
    append(base, job, ["only line"])

    def finished_meanwhile(route: Any) -> None:
        finish(base, job, "canceled", 130)
        route.fulfill(status=204, headers={"Cache-Control": "no-cache"})

    page.route(re.compile(r".*/api/jobs/\d+/log\?.*"), finished_meanwhile)
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    banner = page.locator("#end-banner")
    banner.wait_for(state="visible")
    assert "Job canceled" in banner.inner_text()
    assert "exit code 130" in banner.inner_text()
    wait_state(page, "s.connection === 'ended' && s.status === 'canceled'")


def test_collapsing_a_section_whose_end_is_far_away_reads_on_to_find_it(
    shared_server: ServerProcess, page: Any
) -> None:
    # Too big to load whole: the end marker (line 25,000) is found by reading on from the start.
    base = shared_server.url
    job = create_job(base, "long section")

    def text(n: int) -> str:
        if n == 5:
            return "\x1b[0Ksection_start:1700000000:compile\r\x1b[0KCompiling everything"
        if n == 25_000:
            return "\x1b[0Ksection_end:1700000754:compile\r\x1b[0K"
        return f"line {n}"

    fill(base, job, 30_000, batch=10_000, text=text)
    finish(base, job)
    page.goto(f"{base}/jobs/{job['id']}#L5")
    wait_for_viewer(page)
    visible_line(page, 5)
    header = page.locator('#log .row[data-n="5"]')
    assert header.locator(".section-title").inner_text() == "Compiling everything"
    header.click()
    visible_line(page, 25_001)
    numbers = [row["n"] for row in page.evaluate("window.__logstream.visibleLines()")]
    assert numbers[numbers.index(5) + 1] == 25_001
    assert header.locator(".section-duration").inner_text() == "12m 34s"
    assert "24,995 lines" in header.inner_text()


def test_live_lines_show_the_server_time_not_the_arrival_time(
    shared_server: ServerProcess, page: Any
) -> None:
    """The browser's clock is frozen in 2001, so a live line's arrival time reads 00:00:00.000
    here; with timestamps on, the viewer must show the time the server stored it instead."""
    base = shared_server.url
    job = create_job(base, "times")
    fill(base, job, 20)
    page.clock.set_fixed_time(dt.datetime(2001, 1, 1, 0, 0, 0))
    page.add_init_script("localStorage.setItem('logstream.timestamps', '1')")
    page.goto(f"{base}/jobs/{job['id']}")
    wait_for_viewer(page)
    visible_line(page, 20)
    append(base, job, [f"live {n}" for n in range(21, 26)])
    visible_line(page, 25)
    stored = httpx.get(f"{base}/api/jobs/{job['id']}/lines", params={"after": 0}).json()["lines"]
    # What formatClock makes of each server time, in the page's own time zone.
    expected = page.evaluate(
        """(isos) => isos.map((iso) => {
            const d = new Date(Date.parse(iso)), p = (n, w = 2) => String(n).padStart(w, "0");
            return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.`
                + p(d.getMilliseconds(), 3);
        })""",
        [line["ts"] for line in stored],
    )
    assert "00:00:00.000" not in expected  # the test could tell the two apart
    for n in (1, 20, 21, 25):  # history and live lines alike
        cell = page.locator(f'#log .row[data-n="{n}"] .ts')
        page.wait_for_function(
            "([n, want]) => { const c = document.querySelector("
            '`#log .row[data-n="${n}"] .ts`); return c && c.textContent === want; }',
            arg=[n, expected[n - 1]],
            timeout=10_000,
        )
        assert cell.inner_text() == expected[n - 1]
