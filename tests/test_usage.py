"""Usage accounting: what jobs and data sessions use, as recorded and as reported per user, group, app.

The real-worker tests check what a real solve records; the report's tests make jobs and sessions
with known values (rows written directly) and check the report's sums against them, the period's
rules (jobs by their end, sessions by their stop, running sessions while the period reaches now),
the CSV export, the API's refusals and the page's.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions import data_sessions, jobs
from sessions.models import DataSession, Job, JobState, SessionState
from sessions.usage import By, usage_period, usage_report
from tests.helpers import api_as, browser, wait_for, wait_state, wait_until

NOW = timezone.now()
TODAY = timezone.localdate()


def at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


# ---------------------------------------------------------------- recorded by the real worker and manager


@pytest.mark.django_db(transaction=True)
def test_a_real_solve_records_its_cpu_and_memory(api, alice, lab, worker):
    response = api(alice).post(
        "/api/v1/jobs", {"app": "lab", "procedure": "steady", "input": {"seconds": 1.5}}, format="json"
    )
    assert response.status_code == 201, response.content
    job = wait_for(Job.objects.get(pk=response.json()["id"]), JobState.SUCCEEDED)
    wall = (job.finished_at - job.started_at).total_seconds()
    assert job.cpu_seconds > 0.1, job.cpu_seconds  # HiGHS solving egout again and again for 1.5 s
    assert job.cpu_seconds <= wall * 2 + 3  # two cores at most, and the warm sandbox's start
    assert 5 < job.peak_memory_mb < job.memory_limit_mb
    assert 1.5 <= wall < 30
    body = api(alice).get(f"/api/v1/jobs/{job.pk}").json()
    assert body["cpu_seconds"] == job.cpu_seconds and body["peak_memory_mb"] == job.peak_memory_mb
    assert body["run_seconds"] == pytest.approx(wall, abs=0.01)
    [row] = usage_report(by=By.USER, period=usage_period())
    assert row["name"] == "alice" and row["jobs"] == 1
    assert row["job_hours"] == pytest.approx(wall / 3600, abs=1e-4)
    assert row["job_cpu_hours"] == pytest.approx(job.cpu_seconds / 3600, abs=1e-4)
    assert row["peak_memory_mb"] == pytest.approx(job.peak_memory_mb, abs=0.1)


@pytest.mark.django_db(transaction=True)
def test_a_short_solve_is_measured_too(api, alice, lab, worker):
    response = api(alice).post("/api/v1/jobs", {"app": "lab", "procedure": "solve"}, format="json")
    job = wait_for(Job.objects.get(pk=response.json()["id"]), JobState.SUCCEEDED)
    assert job.cpu_seconds is not None and job.peak_memory_mb is not None
    assert job.peak_memory_mb > 0  # sampled at its start at least


@pytest.mark.django_db(transaction=True)
def test_a_stopped_solve_records_what_it_used(api, alice, lab, worker):
    response = api(alice).post(
        "/api/v1/jobs", {"app": "lab", "procedure": "steady", "input": {"seconds": 60}}, format="json"
    )
    job = wait_for(Job.objects.get(pk=response.json()["id"]), JobState.RUNNING)
    wait_until(lambda: Job.objects.get(pk=job.pk).progress, message="the solve never reported progress")
    api(alice).post(f"/api/v1/jobs/{job.pk}/cancel")
    job = wait_for(job, JobState.CANCELLED)
    assert job.cpu_seconds > 0 and job.peak_memory_mb > 0


@pytest.mark.django_db(transaction=True)
def test_a_session_keeps_its_peak_and_cpu(carol, transport, manager):
    session = wait_state(data_sessions.session_launch(user=carol, app_name="transport"), SessionState.RUNNING)
    recorded = wait_until(
        lambda: DataSession.objects.filter(pk=session.pk, peak_memory_mb__gt=0, cpu_seconds__gt=0).first(),
        message="the session manager never recorded the session's usage",
    )
    assert recorded.peak_memory_mb >= recorded.memory_mb > 0
    data_sessions.session_record_usage(session=session, memory_mb=1.0, cpu_seconds=0.01)  # a lower sample
    lowered = DataSession.objects.get(pk=session.pk)
    assert lowered.peak_memory_mb == recorded.peak_memory_mb and lowered.cpu_seconds >= recorded.cpu_seconds
    data_sessions.session_stop(user=carol, session=session)
    wait_until(lambda: str(session.pk) not in manager.running, message="the manager did not stop the session")
    [row] = usage_report(by=By.APP, period=usage_period())
    ended = DataSession.objects.get(pk=session.pk)
    assert row["name"] == "transport" and row["sessions"] == 1 and row["jobs"] == 0
    assert row["session_hours"] == pytest.approx((ended.stopped_at - ended.started_at).total_seconds() / 3600, abs=1e-4)
    assert row["session_cpu_hours"] == pytest.approx(ended.cpu_seconds / 3600, abs=1e-4)


# ---------------------------------------------------------------- recorded by job_finish and job_release


@pytest.mark.django_db
def test_attempts_add_up(alice, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    first = jobs.job_claim_next(node="node-a")
    assert jobs.job_release(job=first, reason="the node shut down", cpu_seconds=2.0, peak_memory_mb=300.0) == "queued"
    second = jobs.job_claim_next(node="node-b")
    assert jobs.job_finish(job=second, state=JobState.SUCCEEDED, cpu_seconds=3.0, peak_memory_mb=200.0)
    job.refresh_from_db()
    assert (job.cpu_seconds, job.peak_memory_mb) == (5.0, 300.0)
    assert not jobs.job_finish(job=first, state=JobState.SUCCEEDED, cpu_seconds=9.0)  # late: nothing changes
    job.refresh_from_db()
    assert job.cpu_seconds == 5.0


# ---------------------------------------------------------------- the report


@pytest.fixture
def team(alice, bob, carol):
    """Groups: ``ops`` (alice, bob) and ``research`` (alice); carol is in none, not even Everyone."""
    ops, research = Group.objects.create(name="ops"), Group.objects.create(name="research")
    carol.groups.clear()
    alice.groups.add(ops, research)
    bob.groups.add(ops)
    return ops, research


def make_job(user, version, *, finished: datetime, hours: float, cpu: float, peak: float, **fields) -> Job:
    return Job.objects.create(
        owner=user,
        app_version=version,
        procedure="solve",
        state=fields.pop("state", JobState.SUCCEEDED),
        attempt=1,
        time_limit=60,
        memory_limit_mb=1024,
        started_at=finished - timedelta(hours=hours),
        finished_at=finished,
        cpu_seconds=cpu,
        peak_memory_mb=peak,
        **fields,
    )


def make_session(user, version, *, started: datetime, stopped: datetime | None, cpu: float, peak: float):
    return DataSession.objects.create(
        owner=user,
        app_version=version,
        state=SessionState.STOPPED if stopped else SessionState.RUNNING,
        secret="s",
        started_at=started,
        stopped_at=stopped,
        cpu_seconds=cpu,
        peak_memory_mb=peak,
    )


@pytest.fixture
def recorded(alice, bob, carol, lab, team):
    """Known jobs and sessions of ``lab``: in the default period, before it, and not counted at all."""
    day = TODAY - timedelta(days=3)
    made = {
        "jobs": [
            make_job(alice, lab, finished=at(day), hours=2, cpu=3600, peak=100),
            make_job(alice, lab, finished=at(day, 14), hours=1, cpu=1800, peak=250, state=JobState.FAILED),
            make_job(bob, lab, finished=at(day), hours=0.5, cpu=900, peak=50),
            make_job(carol, lab, finished=at(day), hours=4, cpu=7200, peak=400),
        ],
        "sessions": [
            make_session(alice, lab, started=at(day, 8), stopped=at(day, 11), cpu=360, peak=120),
            make_session(carol, lab, started=at(day, 9), stopped=at(day, 10), cpu=36, peak=80),
        ],
    }
    old = TODAY - timedelta(days=40)
    make_job(alice, lab, finished=at(old), hours=10, cpu=10, peak=999)  # before the default period
    make_session(bob, lab, started=at(old, 1), stopped=at(old, 2), cpu=10, peak=999)
    never = make_job(bob, lab, finished=at(day), hours=1, cpu=0, peak=0, state=JobState.CANCELLED)
    Job.objects.filter(pk=never.pk).update(started_at=None)  # cancelled before it started: not counted
    jobs.job_submit(user=alice, app_name="lab", procedure="solve")  # still queued: not counted
    return made


def sums(found_jobs, found_sessions) -> dict:
    """The report's columns computed from the rows themselves."""
    peaks = [j.peak_memory_mb for j in found_jobs] + [s.peak_memory_mb for s in found_sessions]
    return {
        "jobs": len(found_jobs),
        "job_hours": pytest.approx(sum((j.finished_at - j.started_at).total_seconds() for j in found_jobs) / 3600),
        "job_cpu_hours": pytest.approx(sum(j.cpu_seconds for j in found_jobs) / 3600),
        "peak_memory_mb": max(peaks) if peaks else None,
        "sessions": len(found_sessions),
        "session_hours": pytest.approx(
            sum((s.stopped_at - s.started_at).total_seconds() for s in found_sessions) / 3600
        ),
        "session_cpu_hours": pytest.approx(sum(s.cpu_seconds for s in found_sessions) / 3600),
    }


@pytest.mark.django_db
def test_report_by_user_group_and_app_adds_up(recorded):
    period = usage_period()
    by_user = {row.pop("name"): row for row in usage_report(by=By.USER, period=period)}
    for name in ("alice", "bob", "carol"):
        mine = [j for j in recorded["jobs"] if j.owner.username == name]
        theirs = [s for s in recorded["sessions"] if s.owner.username == name]
        assert by_user.pop(name) == sums(mine, theirs), name
    assert by_user == {}
    assert usage_report(by=By.USER, period=period)[0]["job_hours"] == 3.0  # alice: 2 h + 1 h

    by_group = {row.pop("name"): row for row in usage_report(by=By.GROUP, period=period)}
    assert list(by_group) == ["Everyone", "ops", "Publishers", "research", None]  # by name, no group last
    ops = [j for j in recorded["jobs"] if j.owner.username in ("alice", "bob")]
    ops_sessions = [s for s in recorded["sessions"] if s.owner.username in ("alice", "bob")]
    assert by_group["ops"] == by_group["Everyone"] == by_group["Publishers"] == sums(ops, ops_sessions)
    alices = [j for j in recorded["jobs"] if j.owner.username == "alice"]
    assert by_group["research"] == sums(alices, [recorded["sessions"][0]])  # alice counts in both groups
    carols = [j for j in recorded["jobs"] if j.owner.username == "carol"]
    assert by_group[None] == sums(carols, [recorded["sessions"][1]])

    [lab_row] = usage_report(by=By.APP, period=period)
    assert lab_row.pop("name") == "lab"
    assert lab_row == sums(recorded["jobs"], recorded["sessions"])
    assert lab_row["jobs"] == 4 and lab_row["job_cpu_hours"] == pytest.approx(3.75)


@pytest.mark.django_db
def test_period_counts_jobs_by_their_end_and_sessions_by_their_stop(alice, lab):
    since, until = TODAY - timedelta(days=10), TODAY - timedelta(days=5)
    period = usage_period(since, until)
    make_job(alice, lab, finished=at(since, 0) + timedelta(minutes=1), hours=30, cpu=1, peak=1)  # began before
    make_job(alice, lab, finished=at(until, 23), hours=1, cpu=2, peak=2)  # the last day is included
    make_job(alice, lab, finished=at(until + timedelta(days=1), 0), hours=1, cpu=4, peak=4)  # the day after
    make_job(alice, lab, finished=at(since) - timedelta(days=1), hours=1, cpu=8, peak=8)  # the day before
    make_session(alice, lab, started=at(since) - timedelta(days=2), stopped=at(since), cpu=16, peak=16)
    make_session(alice, lab, started=at(until), stopped=at(until + timedelta(days=1)), cpu=32, peak=32)
    make_session(alice, lab, started=NOW - timedelta(hours=2), stopped=None, cpu=64, peak=64)
    [row] = usage_report(by=By.USER, period=period)
    assert (row["jobs"], row["job_cpu_hours"] * 3600, row["peak_memory_mb"]) == (2, pytest.approx(3, abs=0.01), 16)
    assert row["job_hours"] == pytest.approx(31) and row["sessions"] == 1 and row["session_hours"] == 48
    # A running session counts, with its hours so far, in a period that reaches now, and nowhere else.
    [today] = usage_report(by=By.USER, period=usage_period(TODAY, TODAY), now=NOW)
    assert today["sessions"] == 1 and today["session_hours"] == pytest.approx(2)
    assert today["session_cpu_hours"] * 3600 == pytest.approx(64, abs=0.01)


@pytest.mark.django_db
def test_report_takes_two_queries_however_many_rows(alice, bob, carol, lab, team, django_assert_num_queries):
    day = TODAY - timedelta(days=1)
    for by in By:
        with django_assert_num_queries(2):
            usage_report(by=by, period=usage_period())
    for number in range(30):
        user = (alice, bob, carol)[number % 3]
        make_job(user, lab, finished=at(day), hours=1, cpu=number, peak=number)
        make_session(user, lab, started=at(day, 1), stopped=at(day, 2), cpu=number, peak=number)
    for by in By:
        with django_assert_num_queries(2):
            assert usage_report(by=by, period=usage_period())


# ---------------------------------------------------------------- the API


@pytest.mark.django_db
def test_api_for_admins_and_for_each_user(recorded, admin_user, alice, carol):
    body = api_as(admin_user).get("/api/v1/usage?by=group").json()
    assert body["by"] == "group" and body["until"] == TODAY.isoformat()
    assert body["since"] == (TODAY - timedelta(days=29)).isoformat()
    assert [row["name"] for row in body["rows"]] == ["Everyone", "ops", "Publishers", "research", None]
    since = (TODAY - timedelta(days=60)).isoformat()
    everyone = api_as(admin_user).get(f"/api/v1/usage?by=user&since={since}").json()["rows"]
    assert {row["name"]: row["jobs"] for row in everyone} == {"alice": 3, "bob": 1, "carol": 1}
    # Anyone else: only their own, by app (the default).
    [own] = api_as(carol).get("/api/v1/usage").json()["rows"]
    assert own["name"] == "lab" and own["jobs"] == 1 and own["job_cpu_hours"] == 2.0 and own["sessions"] == 1
    assert api_as(alice).get(f"/api/v1/usage?by=app&since={since}").json()["rows"][0]["jobs"] == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "query", "status", "code"),
    [
        ("admin_user", "by=node", 400, "invalid"),
        ("admin_user", "since=yesterday", 400, "invalid"),
        ("admin_user", "since=2025-02-01&until=2025-01-01", 400, "bad_period"),
        ("carol", "by=user", 403, "forbidden"),
        ("carol", "by=group", 403, "forbidden"),
        (None, "", 401, None),
    ],
)
def test_api_refusals(request, who, query, status, code):
    user = request.getfixturevalue(who) if who else None
    response = api_as(user).get(f"/api/v1/usage?{query}")
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    if code:
        assert error["code"] == code


@pytest.mark.django_db
def test_api_is_in_the_schema(admin_user):
    schema = browser(admin_user).get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/usage"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"by", "since", "until"}
    assert {"200", "400", "403"} <= set(operation["responses"])


# ---------------------------------------------------------------- the pages


@pytest.mark.django_db
def test_usage_page_for_admins_only(recorded, admin_user, alice, carol):
    assert browser(carol).get("/usage/").status_code == 403
    assert browser(alice).get("/usage/").status_code == 403
    client = browser(admin_user)
    page = client.get("/usage/")
    assert page.status_code == 200 and b"usage.js" in page.content and b'href="/usage/"' in page.content
    assert [row["name"] for row in page.context["rows"]] == ["alice", "bob", "carol"]
    groups = client.get("/usage/?by=group")
    assert b"counts in each group" in groups.content and b"(no group)" in groups.content
    assert client.get("/usage/?by=node").status_code == 400
    assert client.get("/usage/?since=2025-13-01").status_code == 400


@pytest.mark.django_db
def test_usage_csv_export(recorded, admin_user):
    response = browser(admin_user).get("/usage/?by=app&format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="usage-by-app-')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "app",
        "jobs",
        "job_hours",
        "job_cpu_hours",
        "peak_memory_mb",
        "sessions",
        "session_hours",
        "session_cpu_hours",
    ]
    assert rows[1:] == [["lab", "4", "7.5", "3.75", "400.0", "2", "4.0", "0.11"]]
    by_group = list(csv.reader(io.StringIO(browser(admin_user).get("/usage/?by=group&format=csv").content.decode())))
    assert [row[0] for row in by_group] == ["group", "Everyone", "ops", "Publishers", "research", ""]


@pytest.mark.django_db
def test_app_page_shows_totals_to_its_managers(recorded, alice, carol, lab):
    lab.app.grants.create(user=carol, level="viewer")
    page = browser(alice).get("/apps/lab/")
    assert page.status_code == 200 and b'id="app-usage"' in page.content
    usage = page.context["usage"]
    assert (usage["jobs"], usage["job_hours"], usage["sessions"]) == (4, 7.5, 2)
    viewer = browser(carol).get("/apps/lab/")
    assert viewer.status_code == 200 and b'id="app-usage"' not in viewer.content


@pytest.mark.django_db
def test_pages_take_as_many_queries_however_many_rows(admin_user, alice, bob, carol, lab, team):
    """The usage page and the app page: the same queries with a few rows and with many."""
    day = TODAY - timedelta(days=1)

    def grow(count: int) -> None:
        for number in range(count):
            user = (alice, bob, carol)[number % 3]
            make_job(user, lab, finished=at(day), hours=1, cpu=number, peak=number)
            make_session(user, lab, started=at(day, 1), stopped=at(day, 2), cpu=number, peak=number)

    def count(client, url: str) -> int:
        client.get(url)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured.captured_queries)

    pages = [(browser(admin_user), f"/usage/?by={by}") for by in By]
    pages += [(browser(admin_user), "/usage/?format=csv"), (browser(alice), "/apps/lab/")]
    grow(2)
    few = [count(client, url) for client, url in pages]
    grow(30)
    assert [count(client, url) for client, url in pages] == few
    assert max(few) <= 10, few
