"""Helpers for the browser tests and bench: Debian's Chromium under Playwright, job feeding."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.server import auth

CHROMIUM = os.environ.get("LOGSTREAM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # Many tabs in one test: none of them may be throttled as a background tab.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


# Screenshots the browser tests take, for people (and CI's artifact upload) to look at.
ARTIFACTS = Path(
    os.environ.get("LOGSTREAM_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / "browser" / "artifacts"
)


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    """Save a screenshot of the page as ARTIFACTS/<name>.png (the name made file-safe)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when this machine has none."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


@contextmanager
def launch_chromium(extra_args: Sequence[str] = ()) -> Iterator[Any]:
    """A headless Chromium (the system's, never a downloaded one) as a Playwright Browser."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium: install Debian's `chromium` (scripts/test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()


def append(
    base_url: str,
    job: dict[str, Any],
    lines: list[str],
    first: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Append lines to a job over the JSON API (idempotent when `first` is given)."""
    body: dict[str, Any] = {"lines": lines}
    if first is not None:
        body["first"] = first
    response = httpx.post(
        f"{base_url}/api/jobs/{job['id']}/lines",
        json=body,
        headers=auth(job),
        timeout=60,
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def finish(
    base_url: str,
    job: dict[str, Any],
    status: str = "succeeded",
    exit_code: int | None = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Finish a job."""
    response = httpx.post(
        f"{base_url}/api/jobs/{job['id']}/finish",
        json={"status": status, "exit_code": exit_code},
        headers=auth(job),
        timeout=30,
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def fill(
    base_url: str, job: dict[str, Any], total: int, batch: int = 5000, text: Any = None
) -> None:
    """Append lines 1..total in batches; `text(n)` gives line n (default `line n`)."""
    make = text or (lambda n: f"line {n}")
    with httpx.Client(base_url=base_url, headers=auth(job), timeout=120) as client:
        for first in range(1, total + 1, batch):
            last = min(total, first + batch - 1)
            response = client.post(
                f"/api/jobs/{job['id']}/lines",
                json={"lines": [make(n) for n in range(first, last + 1)], "first": first},
            )
            assert response.status_code == 200, response.text


def wait_for_viewer(page: Any, timeout: float = 15_000) -> None:
    """Wait until the viewer page has loaded its job."""
    page.wait_for_function(
        "() => window.__logstream && window.__logstream.ready && window.__logstream.ready()",
        timeout=timeout,
    )


def demo_lines() -> list[str]:
    """A realistic build log: colours, styles, sections, a progress bar, an XSS attempt."""
    esc = "\x1b"
    return [
        f"{esc}[0Ksection_start:1700000000:prepare\r{esc}[0K{esc}[36;1mPreparing the environment{esc}[0m",  # noqa: E501
        "Running on runner-7 (linux/amd64)",
        f"{esc}[32;1m$ git fetch --depth 50 origin main{esc}[0m",
        "Receiving objects: 100% (1287/1287), 2.31 MiB | 14.2 MiB/s, done.",
        f"{esc}[0Ksection_end:1700000004:prepare\r{esc}[0K",
        f"{esc}[0Ksection_start:1700000004:build\r{esc}[0K{esc}[36;1mBuilding{esc}[0m",
        f"{esc}[32;1m$ make build{esc}[0m",
        f"{esc}[1mcc{esc}[0m -O2 -Wall -c src/main.c -o build/main.o",
        f"src/util.c:42:7: {esc}[35;1mwarning:{esc}[0m unused variable '{esc}[1mtmp{esc}[0m' [-Wunused-variable]",  # noqa: E501
        f"Downloading deps  10%\rDownloading deps  55%\rDownloading deps 100% {esc}[32m✔{esc}[0m",
        f"{esc}]0;make: building{esc}\\Linking {esc}[4mbuild/app{esc}[24m with {esc}[3mlto{esc}[23m",  # noqa: E501
        f"{esc}[38;5;208m256-colour orange{esc}[0m and {esc}[38;2;120;200;255mtruecolour sky{esc}[0m",  # noqa: E501
        "<img src=x onerror=alert(1)>",
        f"{esc}[0Ksection_end:1700000071:build\r{esc}[0K",
        "::group::Run tests",
        "test_parse ... ok",
        "test_render ... ok",
        f"test_resume ... {esc}[31;1mFAILED{esc}[0m",
        "::endgroup::",
        f"{esc}[31;1mERROR:{esc}[0m 1 test failed: test_resume (expected 120 lines, got 119)",
        "\ttab-indented detail",
    ]
