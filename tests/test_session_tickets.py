"""A data session's ticket can do only what the session needs: its own app's jobs and cases."""

import pytest

from apps.accounts.services import ticket_issue_for_user
from tests.test_jobs import lab  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scoped(alice, lab):  # noqa: F811
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
