"""The usage page in a real browser (Playwright, Debian's Chromium) against a live web server: its
charts are drawn from the table's rows, and the grouping select shows the table grouped anew."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from sessions.models import DataSession, Job
from tests.browser import ARTIFACTS, log_in
from tests.helpers import publish_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.live]


@pytest.fixture
def used(alice, carol, admin_user, runtime, pack):
    """Jobs and sessions of alice and carol (in group ``ops``) of two apps, over the last days."""
    versions = [publish_as(alice, pack(name=name), verify=False) for name in ("demo", "other")]
    ops = Group.objects.create(name="ops")
    alice.groups.add(ops)
    carol.groups.add(ops)
    now = timezone.now()
    for day in range(5):
        for user, version in ((alice, versions[0]), (carol, versions[1])):
            Job.objects.create(
                owner=user,
                app_version=version,
                procedure="solve",
                state="succeeded",
                started_at=now - timedelta(days=day, hours=2),
                finished_at=now - timedelta(days=day, hours=1),
                time_limit=60,
                memory_limit_mb=512,
                cpu_seconds=1800,
                peak_memory_mb=200,
            )
            DataSession.objects.create(
                owner=user,
                app_version=version,
                state="stopped",
                secret="s",
                started_at=now - timedelta(days=day, hours=3),
                stopped_at=now - timedelta(days=day, hours=1),
                cpu_seconds=60,
                peak_memory_mb=100,
            )


def chart_data(page, canvas: str) -> dict:
    return page.evaluate(
        "(id) => { const c = Chart.getChart(document.getElementById(id));"
        " return {labels: c.data.labels, data: c.data.datasets.map(d => d.data)}; }",
        canvas,
    )


def test_usage_page_charts_and_grouping(platform_server, used, browser_page):
    page, errors = browser_page
    base = platform_server.url
    log_in(page, base, "root")
    page.goto(f"{base}/usage/")
    page.wait_for_selector("#chart-hours[data-drawn='2']")
    page.wait_for_selector("#chart-cpu[data-drawn='2']")
    hours = chart_data(page, "chart-hours")
    assert sorted(hours["labels"]) == ["alice", "carol"]
    assert hours["data"] == [[5, 5], [10, 10]]  # jobs: five of 1 h each; sessions: five of 2 h each
    assert chart_data(page, "chart-cpu")["data"][0] == [2.5, 2.5]
    page.select_option("select[name=by]", "app")
    page.wait_for_url(f"{base}/usage/?by=app*")
    page.wait_for_selector("#chart-hours[data-drawn='2']")
    assert page.eval_on_selector_all("#usage tbody tr", "rows => rows.map(r => r.dataset.name)") == ["demo", "other"]
    assert sorted(chart_data(page, "chart-hours")["labels"]) == ["demo", "other"]
    assert page.get_attribute("#usage-csv", "href").startswith("?by=app")
    page.screenshot(path=str(ARTIFACTS / "portal-usage.png"), full_page=True)
    assert errors == []
