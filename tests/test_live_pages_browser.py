"""The jobs list and a job's page in a real browser: redrawn when jobs change, by pushed updates
over the websocket, with no polling while nothing changes; slow polling when the websocket is
not there; the job page's failure, actions and chart as a user reads them."""

from __future__ import annotations

import pytest
import requests

from tests.browser import log_in, shot
from tests.helpers import LAB, publish_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.live]


@pytest.fixture
def lab_ticket(alice, runtime, platform_public_key) -> str:
    """alice's lab app published, and a ticket of hers for the API (made before the browser starts:
    Playwright's event loop forbids the ORM in the test's thread)."""
    from apps.accounts.services import ticket_issue_for_user
    from sessions.runtime import package

    blob, _ = package.pack_folder(LAB, platform_public_key)
    publish_as(alice, blob)
    raw, _ = ticket_issue_for_user(user=alice)
    return raw


def submit(base: str, ticket: str, procedure: str, **input_values) -> int:
    body: dict = {"app": "lab", "procedure": procedure}
    if input_values:
        body["input"] = input_values
    response = requests.post(
        f"{base}/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {ticket}"}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def api_requests(page, seen: list[str]) -> None:
    page.on("request", lambda request: seen.append(request.url) if "/api/v1/jobs" in request.url else None)


def test_the_jobs_list_is_pushed_its_changes_and_does_not_poll(live_node, lab_ticket, browser_page):
    page, errors = browser_page
    base = live_node.url
    log_in(page, base, "alice")
    seen: list[str] = []
    api_requests(page, seen)
    page.goto(f"{base}/jobs/")
    page.wait_for_selector("#jobs-table[data-live='live']", state="attached")
    page.wait_for_selector("text=No jobs yet")

    job = submit(base, lab_ticket, "solve")
    page.wait_for_selector(f"tr[data-job='{job}'] .badge.state-succeeded", timeout=60_000)
    shot(page, "live-jobs-list")

    page.wait_for_timeout(1500)  # the last redraw's fetch has ended
    before = len(seen)
    page.wait_for_timeout(5000)  # nothing changes: nothing is fetched
    assert seen[before:] == []
    assert errors == []


def test_a_job_page_follows_its_job_and_shows_a_failure_first(live_node, lab_ticket, browser_page):
    page, errors = browser_page
    base = live_node.url
    log_in(page, base, "alice")

    slow = submit(base, lab_ticket, "slow", seconds=3)
    page.goto(f"{base}/jobs/{slow}/")
    page.wait_for_selector("#job-state.state-running", timeout=60_000)
    page.wait_for_selector("#chart-box:not(.is-empty)")
    assert page.locator("#cancel").is_enabled()
    page.wait_for_selector("#job-state.state-succeeded", timeout=60_000)
    assert page.locator("#job-actions").is_hidden()  # nothing to interrupt or cancel any more
    assert "step 1" in page.locator("#log").text_content()

    quick = submit(base, lab_ticket, "solve")  # reports no objective while it runs: no empty chart
    page.goto(f"{base}/jobs/{quick}/")
    page.wait_for_selector("#job-state.state-succeeded", timeout=60_000)
    assert page.locator("#chart-box").is_hidden()

    crash = submit(base, lab_ticket, "crash")
    page.goto(f"{base}/jobs/{crash}/")
    page.wait_for_selector("#job-state.state-failed", timeout=60_000)
    failure = page.locator("#job-error")
    assert failure.is_visible()
    assert "ValueError: row 3 of the demand table is negative" in page.locator("#error-message").text_content()
    page.wait_for_selector("#traceback-box:not([hidden])")
    assert page.locator("#traceback").is_hidden()  # folded until asked for
    page.locator("#traceback-box summary").click()
    traceback = page.locator("#traceback").text_content()
    assert 'File "app/lab_model.py"' in traceback and "/pro/" not in traceback and "solve_runner" not in traceback
    shot(page, "live-job-failed")
    assert errors == []


def test_without_the_websocket_the_jobs_list_polls_slowly(live_node, lab_ticket, browser_page):
    page, _ = browser_page
    base = live_node.url
    log_in(page, base, "alice")
    page.route_web_socket("**/ws/live/**", lambda socket: socket.close(code=1011))
    page.goto(f"{base}/jobs/")
    page.wait_for_selector("#jobs-table[data-live='polling']", state="attached")
    job = submit(base, lab_ticket, "solve")
    page.wait_for_selector(f"tr[data-job='{job}']", timeout=40_000)  # the next poll (every 15 s) shows it
