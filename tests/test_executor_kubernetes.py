"""The Kubernetes executor against an emulated API server and kubelet (tests/k8s_emulator.py).

A solve node with ``PRO_EXECUTOR=kubernetes`` claims jobs and makes each attempt one Job of the
emulated cluster, whose fake kubelet runs the pod's command (the remote runner) as a real local
process, with the real sandbox inside, reporting to a real web server. What only a real cluster
would show (the image, the security context enforced, the emptyDir, the network policies) is
said in docs/executors.md.
"""

from __future__ import annotations

import sys

import pytest

from sessions.models import Job, JobState
from tests.helpers import ROOT, RunningWorker, wait_for, wait_until
from tests.k8s_emulator import k8s_cluster_fixture  # noqa: F401 - fixture k8s_cluster

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def k8s_node(settings, k8s_cluster, platform_server, tmp_path):
    """A solve node whose executor is the emulated cluster; its attempts report to ``platform_server``."""
    token_file = tmp_path / "token"
    token_file.write_text(k8s_cluster.token)
    settings.PRO_EXECUTOR_API_URL = platform_server.url
    settings.PRO_EXECUTOR_POLL_SECONDS = 0.3
    settings.PRO_K8S_API_URL = k8s_cluster.url
    settings.PRO_K8S_TOKEN_FILE = str(token_file)
    settings.PRO_K8S_CA_FILE = str(tmp_path / "no-ca.crt")
    settings.PRO_K8S_NAMESPACE = k8s_cluster.namespace
    settings.PRO_K8S_IMAGE = "registry.example.com/pro-portal:test"
    settings.PRO_K8S_APP_DIR = str(ROOT)  # the image's /app: the platform's code
    settings.PRO_K8S_WORK_DIR = str(tmp_path / "work")  # the pod's emptyDir
    (tmp_path / "work").mkdir()
    settings.PRO_K8S_RUNNER_COMMAND = [sys.executable, "-m", "sessions.remote_runner"]
    with RunningWorker(capacity=4, node="k8s-node", executor="kubernetes") as running:
        yield running


def submit(api_client, **body) -> Job:
    response = api_client.post("/api/v1/jobs", {"app": "lab", **body}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def the_job_of(cluster, job: Job) -> dict:
    return next(j for j in cluster.jobs() if j["metadata"]["labels"].get("pro-portal/job") == str(job.pk))


def test_a_solve_runs_as_one_kubernetes_job(api, alice, lab, k8s_cluster, k8s_node):
    client = api(alice)
    job = submit(client, procedure="solve", input={"cap": 7.5}, time_limit=120, memory_limit_mb=700)
    job = wait_for(job, JobState.SUCCEEDED, timeout=120)
    assert job.executor == "kubernetes" and job.external_id == f"{k8s_cluster.namespace}/pro-job-{job.pk}-1"
    body = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["executor"] == "kubernetes" and body["external_id"] == job.external_id
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()
    assert result["identifiers"]["objective"] == pytest.approx(7.5)
    log = client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"]
    assert "submitted to kubernetes" in log and f"attempt 1 of job {job.pk} on kubernetes node" in log
    manifest = the_job_of(k8s_cluster, job)
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 120  # above the job's own limit: the runner interrupts first
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"] == f"{700 + 512}Mi"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/component"] == "solve-attempt"
    # The ticket is in a Secret, never a plain value of the Job.
    env = {item["name"]: item for item in container["env"]}
    assert "value" not in env["PRO_JOB_TICKET"] and env["PRO_JOB_TICKET"]["valueFrom"]["secretKeyRef"]
    assert "pro_t_" not in str(manifest)


def test_cancel_deletes_the_job(api, alice, lab, k8s_cluster, k8s_node):
    client = api(alice)
    job = submit(client, procedure="slow", input={"seconds": 600}, memory_limit_mb=700)
    wait_until(lambda: "step 2" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], timeout=90)
    assert client.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 200
    job = wait_for(job, JobState.CANCELLED, timeout=15)
    wait_until(lambda: not k8s_cluster.running_pids(), timeout=15, message="the pod still runs")


def test_interrupt_keeps_the_incumbent(api, alice, lab, k8s_node):
    client = api(alice)
    job = submit(client, procedure="slow", input={"seconds": 600}, memory_limit_mb=700)
    wait_until(lambda: (Job.objects.get(pk=job.pk).progress or {}).get("objective"), timeout=90)
    assert client.post(f"/api/v1/jobs/{job.pk}/interrupt").status_code == 200
    job = wait_for(job, JobState.SUCCEEDED, timeout=30)
    assert "interrupted" in job.solver_status.lower() and len(job.progress_points) >= 1


def test_an_evicted_pod_is_requeued_as_a_new_attempt(api, alice, lab, k8s_cluster, k8s_node):
    client = api(alice)
    job = submit(client, procedure="slow", input={"seconds": 4}, memory_limit_mb=700)
    wait_until(lambda: "step 2" in client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"], timeout=90)
    k8s_cluster.evict(f"pro-job-{job.pk}-1")
    job = wait_for(job, JobState.SUCCEEDED, timeout=120)
    assert job.attempt == 2 and job.external_id.endswith(f"pro-job-{job.pk}-2")
    log = client.get(f"/api/v1/jobs/{job.pk}/log").json()["text"]
    assert "before the attempt reported its end" in log and "attempt 2 of job" in log


def test_a_full_cluster_keeps_jobs_waiting(api, alice, lab, k8s_cluster, k8s_node):
    k8s_cluster.capacity = 1
    client = api(alice)
    first = submit(client, procedure="slow", input={"seconds": 600}, memory_limit_mb=700)
    wait_until(lambda: "step 1" in client.get(f"/api/v1/jobs/{first.pk}/log").json()["text"], timeout=90)
    second = submit(client, procedure="solve", input={"cap": 2}, memory_limit_mb=700)
    wait_until(
        lambda: "Unschedulable" in str(Job.objects.get(pk=second.pk).progress.get("message")),
        timeout=30,
        message="the waiting attempt does not say why",
    )
    body = client.get(f"/api/v1/jobs/{second.pk}").json()
    assert body["state"] == "running" and "Queued on kubernetes" in body["progress"]["message"]
    assert client.post(f"/api/v1/jobs/{first.pk}/cancel").status_code == 200
    wait_for(second, JobState.SUCCEEDED, timeout=120)


def test_jobs_wait_while_the_cluster_refuses_this_node(api, alice, lab, k8s_node):
    """The node's token no longer works (revoked): the job waits, saying why, and loses no attempt."""
    wait_until(lambda: k8s_node.worker.engine is not None)
    executor = k8s_node.worker.engine.executor
    token = executor.http.headers["Authorization"]
    executor.http.headers["Authorization"] = "Bearer revoked"
    client = api(alice)
    job = submit(client, procedure="solve", input={"cap": 1}, memory_limit_mb=700)
    wait_until(lambda: "cannot be reached" in str(Job.objects.get(pk=job.pk).progress.get("message")), timeout=30)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempt == 0 and "401" in job.progress["message"]
    executor.http.headers["Authorization"] = token  # the admin fixed the token
    job = wait_for(job, JobState.SUCCEEDED, timeout=120)
    assert job.attempt == 1


def test_a_job_the_cluster_refuses_fails_with_the_reason(api, alice, lab, k8s_node):
    """The cluster refuses the Job itself (422: here, no image): the attempts count, the job fails saying why."""
    wait_until(lambda: k8s_node.worker.engine is not None)
    k8s_node.worker.engine.executor.image = ""
    client = api(alice)
    job = submit(client, procedure="solve", input={"cap": 1}, memory_limit_mb=700)
    job = wait_for(job, JobState.FAILED, timeout=60)
    assert "kubernetes refused the attempt" in job.error_message and "422" in job.error_message
    assert job.attempt == job.max_attempts


def test_the_jobs_own_limits_hold_at_the_engine(api, alice, lab, k8s_cluster, k8s_node):
    """The runner interrupts at the job's time limit (the Job's deadline is later) and stops a solve
    over the job's memory limit (the pod's limit is higher)."""
    client = api(alice)
    timed = submit(client, procedure="slow", input={"seconds": 600}, time_limit=2, memory_limit_mb=700)
    hog = submit(client, procedure="hog", memory_limit_mb=300)
    timed = wait_for(timed, JobState.SUCCEEDED, timeout=90)
    assert "time limit of 2 s reached" in timed.solver_status and timed.result_case is not None
    hog = wait_for(hog, JobState.FAILED, timeout=90)
    assert "memory limit of 300 MB" in hog.error_message
    deadline = the_job_of(k8s_cluster, timed)["spec"]["activeDeadlineSeconds"]
    limit = the_job_of(k8s_cluster, hog)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert deadline > 2 + 30 and limit["memory"] == f"{300 + 512}Mi"
