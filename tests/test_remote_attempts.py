"""Remote attempts without an engine: the runner, started by hand, against a real web server.

What an engine's job does (``python -m sessions.remote_runner`` with the attempt's environment),
done here by the test, so that the attempt API and the runner are checked apart from Slurm and
Kubernetes (tests/test_executor_slurm.py, tests/test_executor_kubernetes.py): the bundle, the
log, the progress, the result, the fencing of a late attempt, and what an attempt's ticket
cannot reach.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sessions import attempts, dispatch, jobs
from sessions.models import Job, JobState
from tests.helpers import ROOT, wait_for, wait_until
from tests.test_runtimes import publish_needing, wheelhouse  # noqa: F401 - fixtures: an app with requirements

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def submit(api_client, **body) -> Job:
    response = api_client.post("/api/v1/jobs", {"app": "lab", **body}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def claim(node: str = "engine-node") -> Job:
    job = jobs.job_claim_next(node=node, executor="slurm")
    assert job is not None
    return job


def runner(job: Job, url: str, work_dir: Path | None = None) -> tuple[subprocess.Popen, str]:
    """The runner of the job's current attempt, as an engine would start it (no Django settings)."""
    ticket, _ = attempts.attempt_ticket_issue(job=job)
    environment = dispatch.runner_environment(job, ticket, "slurm")
    environment["PRO_API_URL"] = url
    if work_dir is not None:
        environment["PRO_RUNNER_WORK_DIR"] = str(work_dir)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PRO_", "DATABASE"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "sessions.remote_runner"],
        cwd=ROOT,
        env={**inherited, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, ticket


def test_a_runner_runs_an_attempt_through_the_api(platform_server, api, alice, lab):
    client = api(alice)
    job = submit(client, procedure="solve", input={"cap": 7.5})
    job = claim()
    process, ticket = runner(job, platform_server.url)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    wait_for(job, JobState.SUCCEEDED, timeout=10)
    body = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["solver_status"] == "Optimal" and body["attempt"] == 1
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()
    assert result["identifiers"]["objective"] == pytest.approx(7.5)
    log = client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"]
    assert f"attempt 1 of job {job.pk} on slurm node" in log and "objective 7.5" in log
    job.refresh_from_db()
    assert job.cpu_seconds is not None and job.peak_memory_mb is not None
    # Its ticket ended with the attempt.
    answer = requests.post(
        f"{platform_server.url}/api/v1/jobs/{job.pk}/attempts/1/heartbeat", headers=_bearer(ticket), timeout=30
    )
    assert answer.status_code == 401


def test_interrupt_reaches_a_remote_attempt(platform_server, api, alice, lab):
    client = api(alice)
    submit(client, procedure="slow", input={"seconds": 600})
    job = claim()
    process, _ = runner(job, platform_server.url)
    try:
        wait_until(
            lambda: (Job.objects.get(pk=job.pk).progress or {}).get("objective"), timeout=60, message="no progress"
        )
        assert client.post(f"/api/v1/jobs/{job.pk}/interrupt").status_code == 200
        job = wait_for(job, JobState.SUCCEEDED, timeout=30)
        assert "interrupted" in job.solver_status.lower()
        assert client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]["steps"] >= 1
    finally:
        process.kill()
        process.wait()


def test_a_requeued_attempt_is_fenced_off(platform_server, api, alice, lab):
    """The platform requeued the job (its engine lost it): the old runner stops, its end changes nothing."""
    client = api(alice)
    submit(client, procedure="slow", input={"seconds": 600})
    job = claim()
    process, ticket = runner(job, platform_server.url)
    try:
        wait_until(lambda: "step 2" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], timeout=60)
        jobs.job_requeue_lost(job=job, reason="Its slurm job 1 ended (NODE_FAIL) before the attempt reported its end")
        process.wait(timeout=30)  # it heard it is over (409) and stopped its sandbox
    finally:
        process.kill()
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempt == 1 and "NODE_FAIL" in job.error_message
    answer = requests.post(
        f"{platform_server.url}/api/v1/jobs/{job.pk}/attempts/1/finish",
        json={"state": "failed", "error": "late"},
        headers=_bearer(ticket),
        timeout=30,
    )
    assert answer.status_code in (401, 409)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_what_an_attempt_ticket_cannot_reach(platform_server, api, alice, bob, lab):
    client = api(alice)
    first = submit(client, procedure="slow", input={"seconds": 600})
    second = submit(client, procedure="slow", input={"seconds": 600})
    first, second = claim(), claim()
    ticket, _ = attempts.attempt_ticket_issue(job=first)
    url = platform_server.url
    headers = _bearer(ticket)
    # The rest of the API: refused, its own job's ordinary views included.
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{first.pk}", "/api/v1/apps", "/api/v1/cases", "/api/v1/storage/"):
        answer = requests.get(url + path, headers=headers, timeout=30)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["error"]["code"]
    # Another job's attempt, another attempt of its own job.
    other = requests.get(f"{url}/api/v1/jobs/{second.pk}/attempts/{second.attempt}/bundle", headers=headers, timeout=30)
    assert other.status_code == 403
    stale = requests.get(
        f"{url}/api/v1/jobs/{first.pk}/attempts/{first.attempt + 1}/bundle", headers=headers, timeout=30
    )
    assert stale.status_code == 403
    # A full ticket of the owner does not pass as an attempt's.
    own = api(alice).get(f"/api/v1/jobs/{first.pk}/attempts/{first.attempt}/bundle")
    assert own.status_code == 403
    # Bad bodies: a clear error, nothing changed.
    bad = requests.post(
        f"{url}/api/v1/jobs/{first.pk}/attempts/1/finish", json={"state": "queued"}, headers=headers, timeout=30
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    missing = requests.post(
        f"{url}/api/v1/jobs/{first.pk}/attempts/1/finish", json={"state": "succeeded"}, headers=headers, timeout=30
    )
    assert missing.status_code == 400
    first.refresh_from_db()
    assert first.state == JobState.RUNNING
    # Its bundle: the app, the input, what to run; checked by its hash.
    bundle = requests.get(f"{url}/api/v1/jobs/{first.pk}/attempts/1/bundle", headers=headers, timeout=30)
    assert bundle.status_code == 200 and bundle.headers["X-Pro-Sha256"]


def _bearer(ticket: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ticket}"}


@pytest.mark.usefixtures("wheelhouse")
def test_a_runner_fetches_the_environment_once_and_checks_its_hash(platform_server, alice, request, tmp_path):
    publish = request.getfixturevalue("publish_needing")
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    version = publish("needs-one", ["tinypkg==1.0"])
    assert version.environment is not None and version.environment.state == "ready"
    job = jobs.job_submit(user=alice, app_name="needs-one", procedure="solve")
    job = claim()
    process, _ = runner(job, platform_server.url, tmp_path)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    job = wait_for(job, JobState.SUCCEEDED, timeout=10)
    assert "SEEN tinypkg 1.0 from /pro/site/0/tinypkg/__init__.py" in jobs.job_log(job)[0]
    kept = list((tmp_path / "pro-attempts").glob(f"*/.pro-envs/{version.environment.key}/.pro-ready"))
    assert len(kept) == 1  # unpacked once on this engine node, for its next attempts
    # An archive changed in storage is refused by its hash (on a node that has not unpacked it yet).
    default_storage.delete(version.environment.archive_path)
    default_storage.save(version.environment.archive_path, ContentFile(b"not the archive the build made"))
    job = jobs.job_submit(user=alice, app_name="needs-one", procedure="solve")
    job = claim()
    process, _ = runner(job, platform_server.url, tmp_path / "another-node")
    output, _ = process.communicate(timeout=120)
    job = wait_for(job, JobState.FAILED, timeout=10)
    assert "does not match its hash" in job.error_message


def test_the_queue_follows_the_app_then_the_group(settings, alice, lab):
    from django.contrib.auth.models import Group

    job = Job.objects.create(owner=alice, app_version=lab, procedure="solve", time_limit=60, memory_limit_mb=512)
    settings.PRO_EXECUTOR_QUEUES = {}
    assert attempts.attempt_queue(job) == ""  # the executor's own default
    settings.PRO_EXECUTOR_QUEUES = {"default": "solve", "groups": {"research": "gpu"}, "apps": {"lab": "long"}}
    assert attempts.attempt_queue(job) == "long"
    settings.PRO_EXECUTOR_QUEUES = {"default": "solve", "groups": {"research": "gpu"}}
    assert attempts.attempt_queue(job) == "solve"
    alice.groups.add(Group.objects.get_or_create(name="research")[0])
    assert attempts.attempt_queue(job) == "gpu"


def test_the_cli_says_where_a_remote_attempt_runs_and_why_it_waits():
    from pro_cli.main import _job_line

    job = {"id": 7, "state": "running", "attempt": 1, "node": "slurm-node", "executor": "slurm", "external_id": "4711"}
    job.update(error_message="", solver_status="", progress={"message": "Queued on slurm as 4711: PENDING (Resources)"})
    assert _job_line(job) == (
        "job 7 running (attempt 1, node slurm-node, slurm 4711) Queued on slurm as 4711: PENDING (Resources)"
    )
    local = {**job, "executor": "local", "external_id": "", "node": "n1", "progress": {}}
    assert _job_line(local) == "job 7 running (attempt 1, node n1)"
