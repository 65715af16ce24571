"""A real browser for the tests of what users click: Playwright driving Debian's Chromium.

``browser_page`` (a fixture, registered by conftest) is a fresh page and the list of the page's
errors: uncaught exceptions and content-security-policy violations, each a bug.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from tests.helpers import password

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30_000  # what a page's action or wait may take before the test fails
ARTIFACTS = settings.DATA_DIR / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # The content-security policy forbids inline script and style: a violation is a bug.
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        yield page, errors
        browser.close()


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password(username))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"webui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
