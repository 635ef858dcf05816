"""Headless Debian chromium through Playwright for the report and dashboard tests (see shared BROWSER.md).

Without /usr/bin/chromium the tests skip with the reason, except in CI (CI set), where they fail:
.ci/run installs chromium, so a missing one there is a broken CI, not a reason to skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import deadline

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = deadline(
    30_000
)  # every Playwright wait gives up after this; the dashboard's first load takes ~1.3 s
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored; CI keeps it


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium and playwright)")
    pytest.skip(f"{reason}; install it to run the browser tests (apt-get install chromium)")


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium, closed at the end; skips (fails in CI) when it is not installed."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--disable-gpu", "--disable-quic"],
            timeout=TIMEOUT_MS,
        )
        try:
            yield browser
        finally:
            browser.close()


def watched_page(browser: Browser) -> tuple[Page, list[str]]:
    """A new page with a short default timeout and the list its console errors, page errors and failed
    requests are collected in."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(f"page error: {err}"))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url} {req.failure}"))
    return page, errors


def save_screenshot(page: Page, name: str, *also: Path) -> Path:
    """Save a full-page screenshot as test-artifacts/NAME (and into each folder of `also`)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    for folder in also:
        (folder / name).write_bytes(path.read_bytes())
    return path
