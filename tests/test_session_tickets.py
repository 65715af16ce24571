"""A data session's ticket can do only what the session needs: its own app's jobs and cases."""

import pytest

from apps.accounts.services import ticket_issue_for_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scoped(alice, lab):
    from rest_framework.test import APIClient

    raw, _ = ticket_issue_for_user(user=alice, scope={"session": "s-1", "app": "lab"})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_scoped_ticket_runs_its_apps_jobs(scoped):
    response = scoped.post("/api/v1/jobs", {"app": "lab", "procedure": "solve"}, format="json")
    assert response.status_code == 201
    job_id = response.json()["id"]
    assert scoped.get(f"/api/v1/jobs/{job_id}").status_code == 200
    assert scoped.get(f"/api/v1/jobs/{job_id}/log").status_code == 200
    assert scoped.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    assert scoped.get("/api/v1/cases?app=lab").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/apps", None),
        ("post", "/api/v1/sessions", {"app": "lab"}),
        ("get", "/api/v1/storage/", None),
        ("post", "/api/v1/jobs", {"app": "other", "procedure": "solve"}),
        ("get", "/api/v1/cases?app=other", None),
        ("get", "/api/v1/apps/lab/grants", None),
    ],
)
def test_scoped_ticket_cannot_do_more(scoped, method, path, body):
    response = getattr(scoped, method)(path, body, format="json") if body else getattr(scoped, method)(path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.fixture
def other_apps_objects(alice, published):
    """Alice's job and case of her other app ``demo``, beside the ticket's app ``lab``."""
    from sessions.cases import case_store
    from sessions.models import Job
    from sessions.runtime.case import CaseData, case_to_bytes

    case = case_store(owner=alice, app=published.app, blob=case_to_bytes(CaseData(meta={})), name="demo's")
    job = Job.objects.create(
        owner=alice,
        app_version=published,
        procedure="solve",
        time_limit=60,
        memory_limit_mb=256,
        input_case=case,
        result_case=case,
    )
    return job, case


def test_scoped_ticket_reaches_only_its_apps_jobs_and_cases(scoped, api, alice, other_apps_objects):
    from sessions import jobs
    from sessions.models import Case, JobState

    other_job, other_case = other_apps_objects
    own_job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    own_case = own_job.input_case

    # Lists: only the session's app, whatever is asked.
    assert [j["id"] for j in scoped.get("/api/v1/jobs").json()] == [own_job.pk]
    assert [c["id"] for c in scoped.get("/api/v1/cases").json()] == [str(own_case.pk)]
    assert scoped.get("/api/v1/jobs?app=demo").status_code == 403
    assert scoped.get("/api/v1/cases?app=demo").status_code == 403

    # Another app's job: unknown to the ticket, in every route.
    for path in ("", "/log", "/result"):
        assert scoped.get(f"/api/v1/jobs/{other_job.pk}{path}").status_code == 404, path
    for action in ("cancel", "interrupt"):
        response = scoped.post(f"/api/v1/jobs/{other_job.pk}/{action}")
        assert response.status_code == 404, action
        assert response.json()["error"]["code"] == "not_found"
    other_job.refresh_from_db()
    assert other_job.state == JobState.QUEUED and other_job.cancel_requested_at is None

    # Another app's case: neither read, downloaded nor deleted; nor sent, nor used as an input.
    assert scoped.get(f"/api/v1/cases/{other_case.pk}").status_code == 404
    assert scoped.get(f"/api/v1/cases/{other_case.pk}?format=json").status_code == 404
    assert scoped.delete(f"/api/v1/cases/{other_case.pk}").status_code == 404
    assert Case.objects.filter(pk=other_case.pk).exists()
    upload = scoped.post("/api/v1/cases?app=demo", b"x", content_type="application/octet-stream")
    assert upload.status_code == 403
    submit = scoped.post("/api/v1/jobs", {"app": "demo", "procedure": "solve"}, format="json")
    assert submit.status_code == 403
    borrowed = {"app": "lab", "procedure": "solve", "input_case": str(other_case.pk)}
    assert scoped.post("/api/v1/jobs", borrowed, format="json").json()["error"]["code"] == "bad_input"

    # Its own app's objects stay reachable, and the user's own ticket still sees everything.
    assert scoped.get(f"/api/v1/jobs/{own_job.pk}").status_code == 200
    assert scoped.get(f"/api/v1/cases/{own_case.pk}?format=json").status_code == 200
    assert {j["id"] for j in api(alice).get("/api/v1/jobs").json()} == {own_job.pk, other_job.pk}
    assert api(alice).get(f"/api/v1/cases/{other_case.pk}?format=json").status_code == 200
