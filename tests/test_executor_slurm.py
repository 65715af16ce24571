"""The Slurm executor against a real Slurm cluster on this machine (tests/slurm_cluster.py).

A solve node with ``PRO_EXECUTOR=slurm`` claims jobs and submits each attempt with ``sbatch``;
the batch job runs the remote runner, which runs the real sandbox and reports to a real web
server. The cluster has three one-CPU nodes (``pn1`` to ``pn3``, 2,000 MB each) in partition ``solve``.
"""

from __future__ import annotations

import pytest

from sessions.models import Job, JobState
from tests.helpers import RunningWorker, wait_for, wait_until
from tests.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.django_db(transaction=True)]

MEMORY = 700  # MB a job asks; Slurm is asked for it plus the runner's share, within a node's 2,000


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> SlurmCluster:
    slurm_cluster.reset()
    return slurm_cluster


@pytest.fixture
def slurm_node(settings, slurm, platform_server):
    """A solve node whose executor is the Slurm cluster; its attempts report to ``platform_server``."""
    settings.PRO_EXECUTOR_API_URL = platform_server.url
    settings.PRO_EXECUTOR_POLL_SECONDS = 0.3
    settings.PRO_EXECUTOR_QUEUES = {"default": "solve"}
    settings.PRO_SLURM_CONF = str(slurm.conf)
    with RunningWorker(capacity=4, node="slurm-node", executor="slurm") as running:
        yield running


def submit(api_client, **body) -> Job:
    body.setdefault("memory_limit_mb", MEMORY)
    response = api_client.post("/api/v1/jobs", {"app": "lab", **body}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def running_on(slurm: SlurmCluster, job: Job) -> str:
    """The Slurm node the job's current attempt runs on."""
    job.refresh_from_db()
    return wait_until(lambda: slurm.job(job.external_id).get("NodeList", "").strip("()") or None, timeout=30)


def test_a_solve_runs_as_one_slurm_job(api, alice, transport, slurm, slurm_node):
    """The sample transport model, solved on a Slurm node, reaches its known optimum."""
    client = api(alice)
    response = client.post(
        "/api/v1/jobs", {"app": "transport", "procedure": "solve", "memory_limit_mb": MEMORY}, format="json"
    )
    assert response.status_code == 201, response.content
    job = wait_for(Job.objects.get(pk=response.json()["id"]), JobState.SUCCEEDED, timeout=120)
    assert job.executor == "slurm" and job.external_id.isdigit() and job.attempt == 1
    record = slurm.job(job.external_id)
    assert record["JobName"] == f"pro-job-{job.pk}-1" and record["Partition"] == "solve"
    assert record["Requeue"] == "0"  # the platform counts attempts, never Slurm
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()
    assert result["identifiers"]["total_cost"] == pytest.approx(153.675)
    log = client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"]
    assert f"submitted to slurm as {job.external_id}" in log and "on slurm node" in log and "Optimal" in log


def test_interrupt_and_cancel(api, alice, lab, slurm, slurm_node):
    client = api(alice)
    kept = submit(client, procedure="slow", input={"seconds": 600})
    ended = submit(client, procedure="slow", input={"seconds": 600})
    for job in (kept, ended):
        wait_until(lambda job=job: "step 2" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], timeout=90)
    assert client.post(f"/api/v1/jobs/{kept.pk}/interrupt").status_code == 200
    assert client.post(f"/api/v1/jobs/{ended.pk}/cancel").status_code == 200
    kept = wait_for(kept, JobState.SUCCEEDED, timeout=30)
    assert "interrupted" in kept.solver_status.lower()
    assert client.get(f"/api/v1/jobs/{kept.pk}/result?format=json").json()["identifiers"]["steps"] >= 1
    ended = wait_for(ended, JobState.CANCELLED, timeout=15)
    slurm.wait_job(ended.external_id, ("CANCELLED", "COMPLETED"), timeout=15)


def test_a_dead_slurm_node_gives_the_job_a_second_attempt(api, alice, lab, slurm, slurm_node):
    client = api(alice)
    job = submit(client, procedure="slow", input={"seconds": 8})
    wait_until(lambda: "step 2" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], timeout=90)
    first_node = running_on(slurm, job)
    slurm.kill_node(first_node)
    job = wait_for(job, JobState.SUCCEEDED, timeout=150)
    assert job.attempt == 2
    second_node = slurm.job(job.external_id)["NodeList"]
    assert second_node != first_node
    log = client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"]
    assert "NODE_FAIL" in log and "attempt 2 of job" in log
    assert client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]["status"] != "Interrupted"


def test_a_full_partition_keeps_jobs_queued(api, alice, lab, slurm, slurm_node):
    client = api(alice)
    busy = [submit(client, procedure="slow", input={"seconds": 600}) for _ in slurm.nodes]
    for job in busy:
        wait_until(lambda job=job: "step 1" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], timeout=120)
    waiting = submit(client, procedure="solve", input={"cap": 2})
    wait_until(
        lambda: "Resources" in str((Job.objects.get(pk=waiting.pk).progress or {}).get("message")),
        timeout=30,
        message="the waiting job does not say it waits for Slurm's resources",
    )
    body = client.get(f"/api/v1/jobs/{waiting.pk}").json()
    assert body["progress"]["message"].startswith(f"Queued on slurm as {Job.objects.get(pk=waiting.pk).external_id}")
    assert client.post(f"/api/v1/jobs/{busy[0].pk}/cancel").status_code == 200
    wait_for(waiting, JobState.SUCCEEDED, timeout=120)
    for job in busy[1:]:
        client.post(f"/api/v1/jobs/{job.pk}/cancel")


def test_a_job_slurm_cannot_place_fails_with_slurms_reason(api, alice, lab, slurm, slurm_node):
    client = api(alice)
    job = submit(client, procedure="solve", input={"cap": 1}, memory_limit_mb=5000)  # over every node's 2,000 MB
    job = wait_for(job, JobState.FAILED, timeout=60)
    assert "slurm refused the attempt" in job.error_message
    assert "Requested node configuration is not available" in job.error_message
