"""Fair share, quotas and seats: users take turns in the queue; what a user may run, queue, open and
ask for is limited by their own quota, their groups' and the defaults; seats limit the users at
once. Claims are made as the solve workers make them (sessions.jobs.job_claim_next)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from apps.accounts.models import Quota
from apps.accounts.quotas import limits_of
from apps.catalog.models import App
from sessions import data_sessions, jobs
from sessions.fair_share import wait_reason
from sessions.models import DataSession, Job, JobState, SessionState
from tests.helpers import api_as, browser

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_lab(lab, carol, bob):
    app = App.objects.get(name="lab")
    for user in (carol, bob):
        app.grants.create(user=user, level="viewer")
    return lab


def submit(user, **options) -> Job:
    return jobs.job_submit(user=user, app_name="lab", procedure="solve", **options)


def claim(node: str = "node-a") -> Job | None:
    return jobs.job_claim_next(node=node)


def test_users_take_turns_whatever_one_users_backlog(shared_lab, alice, carol):
    backlog = [submit(alice) for _ in range(20)]
    first = claim()
    assert first.pk == backlog[0].pk
    late = submit(carol)  # carol comes after alice's 20, with nothing running
    assert claim().pk == late.pk  # her job is next: alice already has one running
    assert claim().pk == backlog[1].pk
    assert wait_reason(Job.objects.get(pk=backlog[2].pk)) == "It waits for a free solve slot; users take turns."


def test_priority_comes_first_and_each_users_jobs_in_order(shared_lab, alice, carol, admin_user):
    mine = [submit(alice), submit(alice)]
    urgent = jobs.job_submit(user=admin_user, app_name="lab", procedure="solve", priority=50)
    theirs = submit(carol)
    assert [claim().pk for _ in range(4)] == [urgent.pk, mine[0].pk, theirs.pk, mine[1].pk]


def test_a_running_quota_holds_back_a_users_jobs_and_says_so(shared_lab, alice, carol):
    Quota.objects.create(user=alice, running_jobs=1)
    first, second = submit(alice), submit(alice)
    assert claim().pk == first.pk
    assert claim() is None  # alice's second waits although a slot is free
    second.refresh_from_db()
    assert "alice has 1 solves running, the quota" in wait_reason(second)
    detail = api_as(alice).get(f"/api/v1/jobs/{second.pk}").json()
    assert detail["state"] == "queued" and "the quota" in detail["waiting_for"]
    theirs = submit(carol)
    assert claim().pk == theirs.pk  # others are not held back
    jobs.job_finish(job=Job.objects.get(pk=first.pk), state=JobState.SUCCEEDED)
    assert claim().pk == second.pk


def test_the_users_own_quota_then_the_most_generous_group_then_the_default(alice, settings):
    strict, generous = Group.objects.create(name="strict"), Group.objects.create(name="generous")
    alice.groups.add(strict, generous)
    Quota.objects.create(group=strict, running_jobs=1, max_priority=2)
    Quota.objects.create(group=generous, running_jobs=4)  # sets no priority: the other group's counts
    limits = limits_of(alice)
    assert limits.running_jobs == 4 and limits.max_priority == 2
    assert limits.max_memory_mb == settings.PRO_QUOTA_DEFAULTS["max_memory_mb"]  # neither sets it
    Quota.objects.create(user=alice, running_jobs=2)
    assert limits_of(alice).running_jobs == 2 and limits_of(alice).max_priority == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"priority": 100}, "Priority 100 is over your limit: at most 10."),
        ({"memory_limit_mb": 1024 * 1024}, "A memory limit of 1048576 MB is over your limit: at most 16384 MB."),
        ({"time_limit": 100000}, "A time limit of 100000 s is over your limit: at most 86400 s."),
    ],
)
def test_requests_over_a_limit_are_400_with_the_limit(shared_lab, carol, body, message):
    answer = api_as(carol).post("/api/v1/jobs", {"app": "lab", "procedure": "solve", **body}, format="json")
    assert answer.status_code == 400 and answer.json()["error"]["message"] == message
    assert not Job.objects.exists()


def test_admins_have_no_limits(shared_lab, admin_user):
    answer = api_as(admin_user).post(
        "/api/v1/jobs", {"app": "lab", "procedure": "solve", "priority": 100, "memory_limit_mb": 65536}, format="json"
    )
    assert answer.status_code == 201, answer.content


def test_a_queue_quota_refuses_with_429(shared_lab, carol):
    Quota.objects.create(user=carol, queued_jobs=2)
    submit(carol), submit(carol)
    answer = api_as(carol).post("/api/v1/jobs", {"app": "lab", "procedure": "solve"}, format="json")
    assert answer.status_code == 429 and "2 jobs in the queue, your limit" in answer.json()["error"]["message"]
    assert answer["Retry-After"]
    assert Job.objects.count() == 2


def test_a_session_quota_refuses_a_launch_with_429_naming_it(shared_lab, carol):
    Quota.objects.create(user=carol, sessions=1)
    data_sessions.session_launch(user=carol, app_name="lab")
    answer = api_as(carol).post("/api/v1/sessions", {"app": "lab"}, format="json")
    assert answer.status_code == 429
    assert answer.json()["error"]["message"].startswith("You have 1 open sessions, your quota")
    assert DataSession.objects.count() == 1


def test_starting_sessions_are_limited_per_user_not_for_everyone(shared_lab, alice, carol, settings):
    settings.PRO_SESSIONS_STARTING_LIMIT = 1
    data_sessions.session_launch(user=alice, app_name="lab")  # starting: nobody serves it here
    assert data_sessions.session_launch(user=carol, app_name="lab").state == SessionState.STARTING


def test_seats_limit_the_users_at_once_and_admins_see_who_holds_them(shared_lab, alice, carol, admin_user, settings):
    settings.PRO_SEATS = 1
    mine = submit(alice)
    assert claim().pk == mine.pk  # alice holds the seat
    submit(alice)
    theirs = submit(carol)
    assert claim().pk != theirs.pk  # alice's second solve: she holds a seat already
    assert claim() is None  # carol gets none while the seat is taken
    theirs.refresh_from_db()
    assert wait_reason(theirs).startswith("All 1 seats are taken")
    refused = api_as(carol).post("/api/v1/sessions", {"app": "lab"}, format="json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "no_free_seat"
    page = browser(admin_user).get("/nodes/").content.decode()
    assert "Seats: <strong>1 of 1</strong> taken by alice" in page
    Job.objects.filter(owner=alice, state=JobState.RUNNING).update(state=JobState.SUCCEEDED)
    assert claim().pk == theirs.pk


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="two nodes' claims at once need PostgreSQL's locks")
def test_a_group_quota_holds_across_nodes_claiming_at_once(shared_lab, alice):
    team = Group.objects.create(name="team")
    alice.groups.add(team)
    Quota.objects.create(group=team, running_jobs=1)
    for _ in range(6):
        submit(alice)
    start = threading.Barrier(6)
    claimed: list = []

    def node(name: str) -> None:
        try:
            start.wait()
            claimed.append(jobs.job_claim_next(node=name))
        finally:
            connection.close()

    threads = [threading.Thread(target=node, args=(f"node-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len([job for job in claimed if job is not None]) == 1
    assert Job.objects.filter(state=JobState.RUNNING).count() == 1


@pytest.mark.slow
def test_with_a_real_worker_another_users_job_starts_at_the_next_free_slot(shared_lab, alice, carol):
    from tests.helpers import RunningWorker, wait_for, wait_until

    with RunningWorker(capacity=1):
        backlog = [
            jobs.job_submit(user=alice, app_name="lab", procedure="slow", input_values={"seconds": 0.3})
            for _ in range(8)
        ]
        wait_until(lambda: Job.objects.filter(pk=backlog[0].pk, state=JobState.RUNNING).exists(), message="no start")
        late = submit(carol)
        done = wait_for(late, JobState.SUCCEEDED)
        started_before = Job.objects.filter(owner=alice, started_at__lt=done.started_at).count()
        assert started_before == 1, "carol's job waited behind alice's backlog"
        for job in backlog:
            wait_for(job, JobState.SUCCEEDED)


def test_admins_set_a_groups_quota_on_the_groups_page_and_a_users_in_the_quota_list(admin_user, carol, bob):
    from django.test import Client

    portal = Client()
    portal.force_login(admin_user)
    form = {"name": "analysts", "networks-TOTAL_FORMS": "0", "networks-INITIAL_FORMS": "0"}
    form.update({"quota-TOTAL_FORMS": "1", "quota-INITIAL_FORMS": "0", "quota-0-running_jobs": "2"})
    form.update({"quota-0-max_priority": "5"})
    assert portal.post("/admin/auth/group/add/", form).status_code == 302
    assert Quota.objects.get(group__name="analysts").running_jobs == 2
    mine = {"user": str(carol.pk), "sessions": "1"}
    assert portal.post("/admin/accounts/quota/add/", mine).status_code == 302
    carol.groups.add(Group.objects.get(name="analysts"))
    limits = limits_of(carol)
    assert (limits.running_jobs, limits.max_priority, limits.sessions) == (2, 5, 1)
    both = {"user": str(bob.pk), "group": str(Group.objects.get(name="analysts").pk), "sessions": "1"}
    refused = portal.post("/admin/accounts/quota/add/", both)  # a quota is a group's or a user's, not both
    assert refused.status_code == 200 and not Quota.objects.filter(user=bob).exists()
