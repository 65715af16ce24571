"""Portal pages of jobs: list, job page, submit from the version page, statistics."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions import jobs
from sessions.models import Job
from sessions.statistics import job_statistics
from tests.helpers import browser, messages_of

pytestmark = pytest.mark.django_db


def test_jobs_page_and_its_data(alice, carol, admin_user, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    page = browser(alice).get("/jobs/")
    assert page.status_code == 200 and b"jobs-list.js" in page.content
    assert [j["id"] for j in browser(alice).get("/api/v1/jobs").json()] == [job.pk]
    assert browser(carol).get("/api/v1/jobs").json() == []
    assert b'data-show-owner="1"' in browser(admin_user).get("/jobs/").content


def test_job_page_is_private(alice, carol, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    assert browser(alice).get(f"/jobs/{job.pk}/").status_code == 200
    assert browser(carol).get(f"/jobs/{job.pk}/").status_code == 404
    assert browser(carol).post(f"/jobs/{job.pk}/action", {"action": "cancel"}).status_code == 404


def test_submit_from_the_version_page(alice, lab):
    client = browser(alice)
    page = client.get("/apps/lab/versions/1.0.0/")
    assert b"Run a solve" in page.content and b'value="slow"' in page.content
    response = client.post(
        "/apps/lab/versions/1.0.0/submit", {"procedure": "solve", "priority": "3", "time_limit": "30"}, follow=True
    )
    job = Job.objects.get()
    assert response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"
    assert job.priority == 3 and job.time_limit == 30
    assert f"Job {job.pk} is queued." in messages_of(response)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"procedure": "reset"}, "has no solve procedure"),
        ({"procedure": "solve", "priority": "high"}, "is not a number"),
    ],
)
def test_refused_submission_shows_why(alice, lab, form, message):
    response = browser(alice).post("/apps/lab/versions/1.0.0/submit", form, follow=True)
    assert any(message in m for m in messages_of(response))
    assert not Job.objects.exists()


def test_cancel_and_interrupt_from_the_job_page(alice, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    client = browser(alice)
    refused = client.post(f"/jobs/{job.pk}/action", {"action": "interrupt"}, follow=True)
    assert any("Only a running job can be interrupted" in m for m in messages_of(refused))
    done = client.post(f"/jobs/{job.pk}/action", {"action": "cancel"}, follow=True)
    assert f"Job {job.pk} is cancelled." in messages_of(done)
    job.refresh_from_db()
    assert job.state == "cancelled"


def test_statistics(alice, admin_user, lab):
    now = timezone.now()
    for queue, run in ((1, 10), (2, 20), (3, 30), (4, 40), (100, 1000)):
        job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        Job.objects.filter(pk=job.pk).update(
            created_at=now - timedelta(seconds=queue + run),
            started_at=now - timedelta(seconds=run),
            finished_at=now,
            state="succeeded",
        )
    jobs.job_submit(user=alice, app_name="lab", procedure="solve")  # queued: not counted yet
    [row] = job_statistics(days=1)
    assert row["app"] == "lab" and row["jobs"] == 5
    assert row["queue_median"] == pytest.approx(3) and row["queue_p95"] == pytest.approx(100)
    assert row["run_median"] == pytest.approx(30) and row["run_p95"] == pytest.approx(1000)
    page = browser(admin_user).get("/statistics/?app=lab&days=7")
    assert page.status_code == 200 and b"3.00 s" in page.content and b"1000.00 s" in page.content
    assert browser(alice).get("/statistics/").status_code == 403


def test_static_scripts_are_served(alice):
    client = browser(alice)
    for path in (
        "/static/js/jobs-list.js",
        "/static/js/job-detail.js",
        "/static/js/live.js",
        "/static/js/sessions-list.js",
        "/static/css/jobs.css",
        "/static/js/webui.js",
        "/static/vendor/chartjs/chart.umd.min.js",
    ):
        assert client.get(path).status_code == 200, path


def test_the_jobs_list_pages_and_filters_on_the_server(alice, carol, admin_user, lab):
    from apps.catalog.models import App

    App.objects.get(name="lab").grants.create(user=carol, level="viewer")
    mine = [jobs.job_submit(user=alice, app_name="lab", procedure="solve").pk for _ in range(5)]
    theirs = jobs.job_submit(user=carol, app_name="lab", procedure="slow").pk
    Job.objects.filter(pk=mine[0]).update(created_at=timezone.now() - timedelta(days=3))
    api = browser(admin_user)

    def ids(query: str) -> list[int]:
        response = api.get(f"/api/v1/jobs?{query}")
        assert response.status_code == 200, response.content
        return [job["id"] for job in response.json()]

    page = api.get("/api/v1/jobs?limit=2&offset=2")
    assert page["X-Total-Count"] == "6" and [j["id"] for j in page.json()] == [mine[3], mine[2]]
    assert ids("owner=carol") == [theirs]
    assert ids("q=slow") == [theirs] and ids(f"q=%23{mine[1]}") == [mine[1]]
    assert ids("q=" + "9" * 40) == []  # a number too long for an id is searched as text, not a 500
    today = timezone.localdate()
    assert mine[0] not in ids(f"since={today}") and ids(f"until={today - timedelta(days=2)}") == [mine[0]]
    assert browser(alice).get("/api/v1/jobs?owner=carol").json() == []  # alice sees her own jobs only
    refused = api.get("/api/v1/jobs?since=yesterday")
    assert refused.status_code == 400 and "since" in refused.json()["error"]["message"]
    listing = browser(admin_user).get("/jobs/").content.decode()
    assert 'name="owner"' in listing and "<option>lab</option>" in listing
    assert 'name="owner"' not in browser(alice).get("/jobs/").content.decode()


def test_a_job_links_back_to_the_data_session_that_submitted_it(alice, carol, lab):
    from sessions.models import DataSession

    session = DataSession.objects.create(owner=alice, app_version=lab, state="running")
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve", data_session_id=str(session.pk))
    assert f'href="/sessions/{session.pk}/"' in browser(alice).get(f"/jobs/{job.pk}/").content.decode()
    theirs = DataSession.objects.create(owner=carol, app_version=lab, state="running")
    for other in (str(theirs.pk), "not-a-session"):  # another user's session is not linked; nonsense neither
        assert (
            jobs.job_submit(user=alice, app_name="lab", procedure="solve", data_session_id=other).data_session is None
        )
    DataSession.objects.filter(pk=session.pk).update(state="stopped")
    assert "its data session" not in browser(alice).get(f"/jobs/{job.pk}/").content.decode()
