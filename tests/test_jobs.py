"""Solve jobs through the real queue: a worker claims them and runs real solve processes."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from sessions import jobs
from sessions.models import Job, JobState
from tests.helpers import RunningWorker, body_of, publish_as, sandboxed_sleepers, wait_for, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LAB = Path(__file__).parent / "apps" / "lab"


def submit(api_client, **body):
    response = api_client.post("/api/v1/jobs", {"app": "lab", **body}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def test_submit_run_and_fetch_result(api, alice, lab, worker):
    client = api(alice)
    job = submit(client, procedure="solve", input={"cap": 7.5})
    assert job.state in (JobState.QUEUED, JobState.RUNNING) and job.input_case is not None  # claimed at once
    wait_for(job, JobState.SUCCEEDED)
    body = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["state"] == "succeeded" and body["attempt"] == 1 and body["node"] == "test-node"
    assert body["solver_status"] == "Optimal" and body["run_seconds"] >= 0 and body["queue_seconds"] >= 0
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()
    assert result["identifiers"]["objective"] == pytest.approx(7.5)
    assert result["identifiers"]["cap"] == 7.5
    download = client.get(f"/api/v1/jobs/{job.pk}/result")
    assert body_of(download).startswith(b"PROCASE")
    log = client.get(f"/api/v1/jobs/{job.pk}/log").json()
    assert "objective 7.5" in log["text"] and log["finished"]
    assert client.get(f"/api/v1/jobs/{job.pk}/log?offset={log['offset']}").json()["text"] == ""


def test_log_follows_a_running_job(api, alice, lab, worker):
    client = api(alice)
    job = submit(client, procedure="slow", input={"seconds": 3})
    wait_for(job, JobState.RUNNING)
    offset, seen = 0, ""
    wait_until(lambda: "step 3" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], message="no live log")
    while not Job.objects.get(pk=job.pk).is_finished:
        part = client.get(f"/api/v1/jobs/{job.pk}/log?offset={offset}").json()
        seen += part["text"]
        offset = part["offset"]
        time.sleep(0.2)
    part = client.get(f"/api/v1/jobs/{job.pk}/log?offset={offset}").json()
    seen += part["text"]
    assert seen == client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"]
    steps = [int(n) for n in re.findall(r"^step (\d+)$", seen, re.M)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 10


def test_interrupt_keeps_the_incumbent(api, alice, lab, worker):
    client = api(alice)
    job = submit(client, procedure="slow", input={"seconds": 600})
    wait_for(job, JobState.RUNNING)
    wait_until(lambda: (Job.objects.get(pk=job.pk).progress or {}).get("objective"), message="no progress reported")
    response = client.post(f"/api/v1/jobs/{job.pk}/interrupt")
    assert response.status_code == 200 and response.json()["interrupt_requested_at"]
    wait_for(job, JobState.SUCCEEDED, timeout=20)
    assert "interrupted" in job.solver_status.lower()
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]
    assert result["status"] == "Interrupted" and result["steps"] >= 1
    assert result["objective"] == result["steps"]
    assert (
        len(job.progress_points) >= 1 and job.progress_points[-1]["bound"] == 2 * job.progress_points[-1]["objective"]
    )


def test_time_limit_interrupts_first(api, alice, lab, worker):
    job = submit(api(alice), procedure="slow", input={"seconds": 600}, time_limit=1.5)
    wait_for(job, JobState.SUCCEEDED, timeout=30)
    assert "time limit of 1.5 s reached" in job.solver_status
    assert job.result_case is not None
    assert "time limit of 1.5 s reached" in jobs.job_log(job)[0]


def test_cancel_running_kills_the_whole_sandbox(api, alice, lab, worker):
    client = api(alice)
    before = sandboxed_sleepers()
    job = submit(client, procedure="stubborn")
    wait_until(lambda: "started" in jobs.job_log(Job.objects.get(pk=job.pk))[0], message="stubborn solve did not start")
    children = sandboxed_sleepers() - before
    assert len(children) == 1
    asked = time.monotonic()
    assert client.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 200
    wait_for(job, JobState.CANCELLED, timeout=10)
    wait_until(lambda: not (sandboxed_sleepers() & children), timeout=5, message="processes left behind")
    assert time.monotonic() - asked < 5


def test_cancel_queued_job_never_starts(api, alice, lab):
    client = api(alice)
    job = submit(client, procedure="solve")
    assert client.post(f"/api/v1/jobs/{job.pk}/cancel").json()["state"] == "cancelled"
    with RunningWorker(capacity=1):
        time.sleep(1)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.attempt == 0 and job.started_at is None
    response = client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_finished"


def test_memory_limit(api, alice, lab, worker):
    job = submit(api(alice), procedure="hog", memory_limit_mb=300)
    wait_for(job, JobState.FAILED, timeout=60)
    assert "memory limit of 300 MB" in job.error_message


def test_app_error_fails_only_that_job(api, alice, lab, worker):
    client = api(alice)
    bad = submit(client, procedure="crash")
    good = submit(client, procedure="solve")
    wait_for(bad, JobState.FAILED)
    assert bad.error_message == "ValueError: row 3 of the demand table is negative"
    assert "Traceback" in jobs.job_log(bad)[0]
    wait_for(good, JobState.SUCCEEDED)
    assert worker.thread.is_alive()


def test_priority_then_first_in_first_out(api, alice, lab):
    client = api(alice)
    order = [submit(client, procedure="solve", priority=p) for p in (0, 5, 0, 9, 5)]
    with RunningWorker(capacity=1):
        for job in order:
            wait_for(job, JobState.SUCCEEDED)
    started = sorted(order, key=lambda j: Job.objects.get(pk=j.pk).started_at)
    assert [j.pk for j in started] == [order[i].pk for i in (3, 1, 4, 0, 2)]


def test_scheduled_job_waits(api, alice, lab, worker):
    from datetime import timedelta

    from django.utils import timezone

    later = timezone.now() + timedelta(seconds=2)
    job = submit(api(alice), procedure="solve", start_at=later.isoformat())
    time.sleep(1)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    wait_for(job, JobState.SUCCEEDED)
    assert job.started_at >= later


def test_duplicate_claims_run_once(alice, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    claims = []
    barrier = threading.Barrier(4)

    def claim():
        barrier.wait()
        claims.append(jobs.job_claim_next(node="racer"))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].pk == job.pk
    job.refresh_from_db()
    assert job.attempt == 1 and job.state == JobState.RUNNING


def test_late_worker_result_is_discarded(alice, lab):
    jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    first = jobs.job_claim_next(node="node-a")
    jobs.job_release(job=first, reason="node-a was declared dead")
    second = jobs.job_claim_next(node="node-b")
    assert second.attempt == 2
    assert jobs.job_finish(job=first, state=JobState.SUCCEEDED) is False
    assert jobs.job_renew_lease(job=first) is False
    assert jobs.job_finish(job=second, state=JobState.SUCCEEDED) is True


def test_attempts_are_limited(alice, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    for _ in range(3):
        claimed = jobs.job_claim_next(node="flaky")
        jobs.job_release(job=claimed, reason="the node died")
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.attempt == 3
    assert "attempted 3 times" in job.error_message


def test_worker_requeues_its_own_leftovers(alice, lab):
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    jobs.job_claim_next(node="test-node")
    with RunningWorker(capacity=1):
        wait_for(job, JobState.SUCCEEDED)
    assert job.attempt == 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"procedure": "nope"}, 400, "unknown_procedure"),
        ({"procedure": "reset"}, 400, "unknown_procedure"),
        ({"procedure": "solve", "input": {"cap": "lots"}}, 400, "bad_input"),
        ({"procedure": "solve", "input": {"unknown": 1}}, 400, "bad_input"),
        ({"procedure": "solve", "priority": 1000}, 400, "invalid"),
        ({"procedure": "solve", "time_limit": -1}, 400, "invalid"),
        ({"procedure": "solve", "input_case": "00000000-0000-0000-0000-000000000000"}, 404, "not_found"),
        ({"procedure": "solve", "version": "9.9.9"}, 404, "not_found"),
        ({"app": "nothing", "procedure": "solve"}, 404, "not_found"),
    ],
)
def test_bad_submissions(api, alice, lab, body, status, code):
    response = api(alice).post("/api/v1/jobs", {"app": "lab", **body}, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert not Job.objects.exists()


def test_jobs_are_private(api, alice, carol, admin_user, lab):
    lab.app.grants.create(user=carol, level="viewer")
    job = submit(api(alice), procedure="solve")
    assert api(carol).get(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert api(carol).post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 404
    assert api(carol).get(f"/api/v1/jobs/{job.pk}/log").status_code == 404
    assert api(carol).get(f"/api/v1/cases/{job.input_case_id}").status_code == 404
    assert api(carol).get("/api/v1/jobs").json() == []
    assert [j["id"] for j in api(admin_user).get("/api/v1/jobs").json()] == [job.pk]
    assert api(admin_user).get(f"/api/v1/cases/{job.input_case_id}?format=json").status_code == 200


def test_version_with_queued_jobs_cannot_be_deleted(api, alice, lab, pack, platform_public_key):
    from sessions.runtime import package

    folder = LAB
    blob, _ = package.pack_folder(folder, platform_public_key)
    job = submit(api(alice), procedure="solve")
    lab.app.latest_version = None
    lab.app.save()
    response = api(alice).delete(f"/api/v1/apps/lab/versions/{lab.version}")
    assert response.status_code == 409 and "1 queued or running job uses it" in response.json()["error"]["message"]
    assert job.pk and blob


def test_unverified_version_cannot_run(api, alice, runtime, platform_public_key):
    from sessions.runtime import package

    blob, _ = package.pack_folder(LAB, platform_public_key)
    publish_as(alice, blob, verify=False)
    response = api(alice).post("/api/v1/jobs", {"app": "lab", "procedure": "solve"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_verified"


def test_retention_removes_old_jobs(alice, lab, storage_folder, settings):
    from datetime import timedelta

    from django.utils import timezone

    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    claimed = jobs.job_claim_next(node="n")
    jobs.job_append_log(job=claimed, offset=0, text="hello\n")
    jobs.job_finish(
        job=claimed, state=JobState.SUCCEEDED, result_blob=(storage_folder / job.input_case.storage_path).read_bytes()
    )
    job.refresh_from_db()
    files = [job.log_path, job.input_case.storage_path, job.result_case.storage_path]
    assert all((storage_folder / f).exists() for f in files)
    assert jobs.jobs_remove_expired(now=timezone.now() + timedelta(days=29)) == 0
    assert jobs.jobs_remove_expired(now=timezone.now() + timedelta(days=31)) == 1
    assert not Job.objects.exists()
    assert not any((storage_folder / f).exists() for f in files)
