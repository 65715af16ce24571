"""End to end in a real browser: Playwright drives Debian's Chromium against a live node."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, log_in, shot
from tests.helpers import EXAMPLES, publish_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.live]


def shown(page, label: str) -> str:
    """The text of a read-only value (outputs are shown as text, not as inputs)."""
    return page.get_by_label(label, exact=True).inner_text()


def total_cost(page) -> float:
    page.get_by_role("tab", name="Results").click()
    return float(shown(page, "Total cost"))


def wait_status(page, pattern: str, timeout: float = 60) -> None:
    page.wait_for_function(
        "(pattern) => new RegExp(pattern).test(document.getElementById('status').textContent)",
        arg=pattern,
        timeout=timeout * 1000,
    )


@pytest.fixture
def transport_for_carol(carol, alice, runtime, platform_public_key):
    """Published before the browser starts: Playwright's event loop forbids the ORM in this thread."""
    from sessions.runtime import package

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    publish_as(alice, blob).app.grants.create(user=carol, level="viewer")


def test_transport_edit_solve_save_load_compare(live_node, transport_for_carol, browser_page):
    page, errors = browser_page
    base = live_node.url

    log_in(page, base, "carol")
    shot(page, "1-catalogue")

    clicked = time.monotonic()
    page.locator("[data-app=transport]").get_by_role("button", name="Open").click()
    page.wait_for_selector("#page input.webui-cell")
    launch_seconds = time.monotonic() - clicked
    shot(page, "2-opened")

    page.get_by_role("button", name="Solve").click()
    wait_status(page, "Job \\d+ succeeded")
    first = total_cost(page)
    assert first == pytest.approx(153.675)
    shot(page, "3-solved")

    page.get_by_role("button", name="Cases").click()
    page.fill("#save-case input[name=name]", "baseline")
    page.click("#save-case button")
    page.wait_for_selector("#case-list tr[data-case]")
    page.keyboard.press("Escape")

    page.get_by_role("tab", name="Data").click()
    bad = page.get_by_label("demand Chicago")
    bad.fill("lots")
    bad.press("Tab")
    page.wait_for_selector("input.webui-cell.webui-invalid")
    assert "expected a number" in bad.get_attribute("title")
    shot(page, "4-bad-value")
    bad.fill("320")
    bad.press("Tab")
    page.wait_for_function("() => !document.querySelector('input.webui-cell.webui-invalid')")

    page.get_by_role("button", name="Solve").click()
    wait_status(page, "Job \\d+ succeeded")
    second = total_cost(page)
    assert second > first
    assert page.locator(".webui-chart canvas").count() == 1, "a chart once there are results"
    shot(page, "5-solved-again")

    page.get_by_role("button", name="Cases").click()
    page.fill("#save-case input[name=name]", "more-chicago")
    page.click("#save-case button")
    page.wait_for_function("() => document.querySelectorAll('#case-list tr[data-case]').length === 2")
    page.locator("#case-list tr", has_text="baseline").get_by_role("button", name="Load").click()
    wait_status(page, "Loaded case baseline")
    for name in ("baseline", "more-chicago"):
        page.locator("#case-list tr", has_text=name).locator("input.webui-compare-pick").check()
    page.click("#compare-button")
    page.wait_for_selector("#comparison table.webui-compare .webui-changed")
    assert page.locator("#comparison table[data-identifier=demand] tr.webui-changed").all_inner_texts() == [
        "Chicago\t300\t320\t+20"
    ]
    assert page.locator("#comparison tr.webui-changed[data-identifier=total_cost]").count() == 1
    shot(page, "6-compared")
    page.keyboard.press("Escape")
    assert total_cost(page) == pytest.approx(153.675), "loading the baseline brings its results back"
    page.get_by_role("tab", name="Data").click()
    assert page.get_by_label("demand Chicago").input_value() == "300"
    assert not errors, errors
    print(f"\nlaunch to interactive: {launch_seconds:.3f} s; screenshots in {ARTIFACTS}")


@pytest.fixture
def pyomo_for_carol(carol, alice, runtime, platform_public_key):
    """The Pyomo sample, its environment built from the test wheelhouse (``make test-wheelhouse``)."""
    from apps.catalog.bootstrap import sample_pack

    blob, _ = sample_pack(EXAMPLES / "pyomo-blending", platform_public_key)
    version = publish_as(alice, blob)
    assert version.verification_state == "verified", version.verification_error
    version.app.grants.create(user=carol, level="viewer")


def test_an_app_with_its_own_packages_solves_in_the_browser(live_node, pyomo_for_carol, browser_page):
    page, errors = browser_page
    base = live_node.url
    log_in(page, base, "carol")
    page.locator("[data-app=pyomo-blending]").get_by_role("button", name="Open").click()
    page.wait_for_selector("#page input.webui-cell")
    page.get_by_role("button", name="Solve").click()
    wait_status(page, "Job \\d+ succeeded")
    page.get_by_role("tab", name="Results").click()
    assert float(shown(page, "Cost of a can")) == pytest.approx(0.52)
    assert shown(page, "Solver status") == "Optimal"
    shot(page, "pyomo-solved")
    assert not errors, errors


def test_chromium_is_debians(browser_page):
    page, _ = browser_page
    assert shutil.which("chromium") == CHROMIUM
    assert "Chrome" in page.evaluate("navigator.userAgent")
