"""Browser fixtures shared by the browser test modules: one Chromium per module, screenshots."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium_path, launch_chromium
from support.server import REQUIRE_ALL

if not REQUIRE_ALL:
    pytest.importorskip("playwright.sync_api", reason="the `test` extra installs playwright")

needs_chromium = pytest.mark.skipif(
    chromium_path() is None and not REQUIRE_ALL, reason="no Chromium (scripts/test installs it)"
)

# Screenshots the tests take, for people (and CI's artifact upload) to look at.
ARTIFACTS = Path(os.environ.get("LOGSTREAM_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as chromium:
        yield chromium


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    """Save a screenshot of the page as ARTIFACTS/<name>.png (name made file-safe)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
