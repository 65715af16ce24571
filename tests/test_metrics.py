"""``/metrics`` in Prometheus's format: who may read it, the cluster-wide figures from the
database, and this node's request latency summed over its web server processes."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import api_as


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def metrics_token(settings):
    settings.PRO_METRICS_TOKEN = "scrape-" + "x" * 30
    return settings.PRO_METRICS_TOKEN


@pytest.mark.django_db
def test_only_admins_and_the_scraper_read_the_metrics(client, admin_user, alice, metrics_token):
    from apps.accounts.services import ticket_issue_for_user

    assert client.get("/metrics").status_code == 401
    assert api_as(alice).get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert scraped.status_code == 200 and scraped["Content-Type"].startswith("text/plain; version=")
    assert api_as(admin_user).get("/metrics").status_code == 200
    # A data session's ticket is the app's: not even an admin's reaches the metrics with it.
    raw, _ = ticket_issue_for_user(user=admin_user, ttl_seconds=60, scope={"session": "s", "app": "lab"})
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 403


@pytest.mark.django_db
def test_queue_nodes_and_outcomes_are_counted_from_the_database(client, admin_user, alice, bob, lab, metrics_token):
    from django.contrib.auth.models import Group

    from apps.cluster.models import Node
    from sessions import jobs
    from sessions.models import DataSession, Job, JobState

    Group.objects.create(name="planners").user_set.add(alice)
    lab.app.grants.create(user=bob, level="viewer")
    now = timezone.now()
    for user in (alice, alice, bob):
        jobs.job_submit(user=user, app_name="lab", procedure="solve")
    Job.objects.filter(owner=bob).update(not_before=now - timedelta(seconds=120))
    later = jobs.job_submit(user=bob, app_name="lab", procedure="solve")
    Job.objects.filter(pk=later.pk).update(not_before=now + timedelta(hours=1))  # scheduled, not waiting
    done = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    Job.objects.filter(pk=done.pk).update(
        state=JobState.SUCCEEDED, started_at=now - timedelta(seconds=40), finished_at=now - timedelta(seconds=10)
    )
    running = jobs.job_submit(user=bob, app_name="lab", procedure="solve")
    Job.objects.filter(pk=running.pk).update(state=JobState.RUNNING, node="n1", started_at=now)
    Node.objects.create(name="n1", max_solves=4, max_sessions=20)
    DataSession.objects.create(owner=alice, app_version=lab, state="running", node="n1")

    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").content.decode())
    assert found[("pro_queue_jobs", (("app", "lab"),))] == 3
    assert found[("pro_queue_jobs_by_group", (("group", "planners"),))] == 2
    assert found[("pro_queue_jobs_by_group", (("group", "Everyone"),))] == 3  # each group of the owner
    assert 119 <= found[("pro_queue_oldest_wait_seconds", (("app", "lab"),))] < 200
    assert found[("pro_jobs_running", (("node", "n1"),))] == 1
    assert found[("pro_sessions_live", (("node", "n1"),))] == 1
    assert found[("pro_node_solve_slots", (("node", "n1"),))] == 4
    assert found[("pro_node_up", (("node", "n1"), ("state", "up")))] == 1
    assert found[("pro_jobs_finished_total", (("app", "lab"), ("state", "succeeded")))] == 1
    assert found[("pro_job_duration_seconds_bucket", (("le", "15.0"),))] == 0
    assert found[("pro_job_duration_seconds_bucket", (("le", "60.0"),))] == 1
    assert found[("pro_job_duration_seconds_count", ())] == 1
    assert found[("pro_job_duration_seconds_sum", ())] == pytest.approx(30)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_run_platform_sums_the_request_latency_of_its_web_processes(tmp_path, admin_user, storage_folder):
    """The whole node as `make run` starts it: two web server processes, one scrape sees both."""
    from tests.live import ROOT, free_port, platform_env, start_group, stop_groups, wait_healthy

    port = free_port()
    env = platform_env(
        port,
        storage_folder.as_uri(),
        PRO_WEB_WORKERS="2",
        PRO_NODE_ROLES="web",
        PRO_NODE_NAME=f"metrics-{port}",
        PRO_METRICS_TOKEN="scrape-token-of-the-test",
    )
    process = start_group([sys.executable, str(ROOT / "manage.py"), "run_platform"], env, tmp_path / "node.log")
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_healthy(url, [process]), (tmp_path / "node.log").read_text()[-3000:]
        for _ in range(40):  # a new connection each: both processes take some
            requests.get(f"{url}/login/", timeout=10)
        scrape = {"Authorization": "Bearer scrape-token-of-the-test"}
        text = requests.get(f"{url}/metrics", headers=scrape, timeout=10).text
    finally:
        stop_groups({"node": process})
    found = samples(text)
    count = found[("pro_http_request_duration_seconds_count", (("status", "2xx"), ("view", "portal:login")))]
    assert count == 40
