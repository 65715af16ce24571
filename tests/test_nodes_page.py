"""The nodes page: every node, its state, the master, and what each node runs; admins only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.cluster.models import MasterLease, Node, NodeState
from apps.cluster.selectors import RUNNING_JOB_IDS, cluster_overview, master_lease, master_name
from sessions import data_sessions, jobs
from sessions.models import DataSession, SessionState
from tests.helpers import browser

pytestmark = pytest.mark.django_db


def rows_of(html: str) -> dict[str, str]:
    """``node name`` → the HTML of its row in the nodes table."""
    return dict(re.findall(r'<tr data-node="([^"]+)">(.*?)</tr>', html, re.S))


def _lease(holder: str, *, term: int = 3, expires_in: float = 60) -> MasterLease:
    now = timezone.now()
    return MasterLease.objects.create(
        holder=holder,
        term=term,
        acquired_at=now - timedelta(minutes=5),
        renewed_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )


@pytest.fixture
def nodes_world(alice, lab):
    """Four nodes (up master, up sessions node, dead, stopped backend), a running job, a live session."""
    now = timezone.now()
    Node.objects.create(
        name="alpha",
        address="10.0.0.1",
        roles=["web", "sessions", "solves"],
        max_solves=2,
        max_sessions=20,
        version="0.1.0",
        last_heartbeat=now - timedelta(seconds=3),
        restarts=3,
        last_restart_at=datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
        last_restart_child="solves",
        last_restart_reason="killed by SIGKILL",
    )
    Node.objects.create(name="beta", address="10.0.0.2", roles=["sessions"], max_sessions=8, version="0.1.0")
    Node.objects.create(
        name="gamma",
        address="10.0.0.3",
        roles=["solves"],
        max_solves=4,
        state=NodeState.DEAD,
        last_heartbeat=now - timedelta(hours=2),
        declared_dead_at=datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
        declared_dead_by="alpha",
    )
    Node.objects.create(name="delta", address="10.0.0.4", roles=[], state=NodeState.STOPPED)
    _lease("alpha")
    jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    job = jobs.job_claim_next(node="alpha")
    data_sessions.session_launch(user=alice, app_name="lab")
    session = data_sessions.session_claim_starting(node="beta")
    assert job is not None and session is not None
    return {"job": job, "session": session}


def test_the_admin_sees_the_nodes_the_master_and_their_work(admin_user, nodes_world):
    page = browser(admin_user).get("/nodes/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Master: <strong>alpha</strong>" in html and "term 3" in html
    rows = rows_of(html)
    assert list(rows) == ["alpha", "beta", "delta", "gamma"]
    assert [name for name, row in rows.items() if "badge master" in row] == ["alpha"]
    alpha, beta, gamma, delta = rows["alpha"], rows["beta"], rows["gamma"], rows["delta"]
    job = nodes_world["job"]
    assert f'<a href="/jobs/{job.pk}/">#{job.pk}</a>' in alpha
    assert '<td class="solves">1 / 2</td>' in alpha and '<td class="sessions">0 / 20</td>' in alpha
    assert re.search(r'<td class="heartbeat">\d s ago</td>', alpha)
    assert '<td class="sessions">1 / 8</td>' in beta and "/jobs/" not in beta
    assert "badge state-up" in alpha and "badge state-up" in beta
    assert "badge state-dead" in gamma and 'title="2020-01-02 03:04:05">declared dead' in gamma
    assert "by alpha</div>" in gamma
    assert "2\xa0hours ago" in gamma  # a long silence reads as a duration, not in seconds
    assert "badge state-stopped" in delta and "backend" in delta
    # Restarts of the node's processes: the count, and the last one (which child, how it ended, when).
    assert '<td class="restarts"><strong>3</strong>' in alpha
    assert 'title="2020-01-02 03:04:05">last: solves (killed by SIGKILL),' in alpha
    assert '<td class="restarts">0</td>' in beta and "last-restart" not in beta
    assert "js/nodes.js" in html and 'data-refresh-seconds="' in html
    assert 'href="/nodes/" class="active">Nodes</a>' in html


def test_an_expired_lease_means_no_master(admin_user, nodes_world):
    MasterLease.objects.filter(name="master").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert master_name() is None and master_lease() is None
    html = browser(admin_user).get("/nodes/").content.decode()
    assert "No master right now" in html and "badge master" not in html


def test_master_name_reads_the_lease():
    assert master_name() is None
    lease = _lease("alpha", expires_in=10)
    assert master_name() == "alpha"
    assert master_name(now=lease.expires_at) is None  # the lease ends at expires_at
    MasterLease.objects.filter(pk=lease.pk).update(holder="")
    assert master_name() is None


def test_a_silent_node_that_is_still_up_is_late(settings, db):
    settings.PRO_HEARTBEAT_SECONDS = 1.0
    now = timezone.now()
    Node.objects.create(name="quiet", last_heartbeat=now - timedelta(seconds=2.5))
    Node.objects.create(name="fresh", last_heartbeat=now - timedelta(seconds=0.5))
    Node.objects.create(name="gone", state=NodeState.DEAD, last_heartbeat=now - timedelta(seconds=30))
    late = {row.node.name: row.heartbeat_late for row in cluster_overview(now=now)}
    assert late == {"fresh": False, "gone": False, "quiet": True}
    ages = {row.node.name: row.heartbeat_age for row in cluster_overview(now=now)}
    assert ages["quiet"] == pytest.approx(2.5) and ages["gone"] == pytest.approx(30)


@pytest.mark.parametrize("path", ["/nodes/", "/statistics/"])
def test_only_admins_see_it_as_the_statistics_page_refuses(alice, path):
    refused = browser(alice).get(path)
    assert refused.status_code == 403 and b"Only admins see the" in refused.content
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and anonymous["Location"] == f"/login/?next={path}"
    assert b'href="/nodes/"' not in browser(alice).get("/").content


def _running_jobs(alice, node: str, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        claimed = jobs.job_claim_next(node=node)
        assert claimed is not None
        ids.append(claimed.pk)
    return ids


def test_a_busy_node_names_its_first_jobs_and_counts_them_all(admin_user, alice, lab):
    Node.objects.create(name="busy", roles=["solves"], max_solves=16)
    ids = _running_jobs(alice, "busy", RUNNING_JOB_IDS + 2)
    [row] = cluster_overview()
    assert row.running_jobs == RUNNING_JOB_IDS + 2 and row.running_job_ids == ids[:RUNNING_JOB_IDS]
    html = browser(admin_user).get("/nodes/").content.decode()
    assert f"{RUNNING_JOB_IDS + 2} in all" in html and f"/jobs/{ids[-1]}/" not in html


def _add_nodes(alice, version, first: int, count: int) -> None:
    for i in range(first, first + count):
        name = f"node-{i:02d}"
        Node.objects.create(name=name, roles=["sessions", "solves"], max_solves=2, max_sessions=4)
        _running_jobs(alice, name, 2)
        DataSession.objects.create(owner=alice, app_version=version, node=name, state=SessionState.RUNNING)


def test_the_overview_takes_the_same_few_queries_for_any_number_of_nodes(
    alice,
    lab,
    django_assert_max_num_queries,
):
    _lease("node-00")
    _add_nodes(alice, lab, 0, 2)
    with django_assert_max_num_queries(4):
        few = cluster_overview()
    _add_nodes(alice, lab, 2, 18)
    with django_assert_max_num_queries(4):
        many = cluster_overview()
    assert len(few) == 2 and len(many) == 20
    assert [row.node.name for row in many if row.is_master] == ["node-00"]
    assert all(row.running_jobs == 2 and len(row.running_job_ids) == 2 and row.live_sessions == 1 for row in many)


def test_the_refresh_script_is_served(admin_user):
    assert browser(admin_user).get("/static/js/nodes.js").status_code == 200


def test_the_page_says_loudly_where_apps_run_unconfined(admin_user, settings):
    from apps.cluster.services import node_register

    node_register(name="confined")
    settings.PRO_SANDBOX = "off"
    node_register(name="loose")
    rows = rows_of(browser(admin_user).get("/nodes/").content.decode())
    assert Node.objects.get(name="confined").sandbox == "bubblewrap"
    assert "bubblewrap" in rows["confined"] and "UNCONFINED" not in rows["confined"]
    assert Node.objects.get(name="loose").sandbox == "off"
    assert "UNCONFINED" in rows["loose"] and "PRO_SANDBOX=off" in rows["loose"]
