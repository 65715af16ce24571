"""The emulated Kubernetes cluster (tests/k8s_emulator.py) behaves as the real API server and kubelet do.

The Kubernetes executor's tests trust this harness, so it is proved here with plain ``requests``
calls, the way the executor talks to a real cluster: Jobs run real processes, end, fail, time out,
are deleted, wait for room and are evicted, with Kubernetes' own status fields and error shapes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import wait_until
from tests.k8s_emulator import KubernetesEmulator, k8s_cluster_fixture  # noqa: F401 - fixture k8s_cluster

JOBS = "/apis/batch/v1/namespaces/pro-solves/jobs"
PODS = "/api/v1/namespaces/pro-solves/pods"
SECRETS = "/api/v1/namespaces/pro-solves/secrets"


class Api:
    """A bare client of the emulated API: the requests the executor makes, no more."""

    def __init__(self, cluster: KubernetesEmulator) -> None:
        self.cluster = cluster
        self.session = requests.Session()
        self.session.headers.update(cluster.headers())

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.cluster.url + path, timeout=10, **kwargs)

    def create_job(self, name: str, command: list[str], **spec: Any) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "solve", "image": "pro/runtime:test", "command": command}
        container.update(spec.pop("container", {}))
        manifest = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": {"app": "pro", "attempt": name}},
            "spec": {
                "backoffLimit": 0,
                **spec,
                "template": {
                    "metadata": {"labels": {"app": "pro"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [container],
                        **spec.pop("pod", {}),
                    },
                },
            },
        }
        manifest["spec"].pop("pod", None)
        response = self.request("POST", JOBS, json=manifest)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, name: str) -> dict[str, Any]:
        response = self.request("GET", f"{JOBS}/{name}")
        assert response.status_code == 200, response.text
        return response.json()

    def pods(self, job: str) -> list[dict[str, Any]]:
        response = self.request("GET", PODS, params={"labelSelector": f"job-name={job}"})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def log(self, pod: str, **params: str) -> str:
        response = self.request("GET", f"{PODS}/{pod}/log", params=params)
        assert response.status_code == 200, response.text
        return response.text

    def wait_condition(self, name: str, kind: str, timeout: float = 15) -> dict[str, Any]:
        """The Job once it has the condition ``kind`` (Complete, Failed) True."""

        def done() -> dict[str, Any] | None:
            job = self.job(name)
            conditions = job["status"].get("conditions", [])
            return job if any(c["type"] == kind and c["status"] == "True" for c in conditions) else None

        return wait_until(done, timeout=timeout, message=f"Job {name} never got condition {kind}")

    def wait_phase(self, job: str, phase: str, timeout: float = 15) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            pods = self.pods(job)
            return pods[0] if pods and pods[0]["status"].get("phase") == phase else None

        return wait_until(reached, timeout=timeout, message=f"the pod of {job} never reached {phase}")


@pytest.fixture
def api(k8s_cluster: KubernetesEmulator) -> Iterator[Api]:
    client = Api(k8s_cluster)
    yield client
    client.session.close()


def _alive(pid: int) -> bool:
    """Whether the process runs: a zombie (dead, not yet reaped by whoever adopted it) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("emulated://"))


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in job["status"]["conditions"] if c["type"] == kind)


def test_a_job_runs_to_completion(api: Api, k8s_cluster: KubernetesEmulator) -> None:
    created = api.create_job("solve-1", ["python", "-c", "print('hi')"])
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    assert created["metadata"]["resourceVersion"]
    assert created["metadata"]["namespace"] == "pro-solves"
    assert created["spec"]["template"]["metadata"]["labels"]["job-name"] == "solve-1"

    job = api.wait_condition("solve-1", "Complete")
    status = job["status"]
    assert status["succeeded"] == 1 and "failed" not in status and "active" not in status
    assert status["startTime"] and status["completionTime"]
    assert _condition(job, "Complete")["reason"] == "CompletionsReached"
    assert int(job["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    [pod] = api.pods("solve-1")
    assert pod["metadata"]["name"].startswith("solve-1-") and len(pod["metadata"]["name"]) == len("solve-1-") + 5
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "pro" and labels["job-name"] == "solve-1"
    assert labels["controller-uid"] == created["metadata"]["uid"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert api.log(pod["metadata"]["name"]) == "hi\n"

    # Lists filter by equality label selectors; the fixture's own view agrees.
    found = api.request("GET", JOBS, params={"labelSelector": "app=pro,attempt=solve-1"}).json()
    assert found["kind"] == "JobList" and [j["metadata"]["name"] for j in found["items"]] == ["solve-1"]
    assert api.request("GET", JOBS, params={"labelSelector": "app=pro,attempt!=solve-1"}).json()["items"] == []
    assert [j["metadata"]["name"] for j in k8s_cluster.jobs()] == ["solve-1"]
    assert [p["metadata"]["name"] for p in k8s_cluster.pods(job="solve-1")] == [pod["metadata"]["name"]]
    assert k8s_cluster.running_pids() == []


def test_env_secrets_and_working_dir(api: Api, tmp_path: Path) -> None:
    script = "import os, sys; print(os.environ['MODE'], os.environ['DB_PASSWORD'], os.getcwd(), flush=True); print('oops', file=sys.stderr)"
    env = [
        {"name": "MODE", "value": "solve"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "solve-secrets", "key": "password"}}},
    ]
    api.create_job("solve-env", ["python", "-c", script], container={"env": env, "workingDir": str(tmp_path)})

    # The Secret does not exist yet: the pod waits, as the kubelet retries a missing Secret.
    def waiting() -> bool:
        pods = api.pods("solve-env")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return bool(statuses) and statuses[0]["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"

    wait_until(waiting, timeout=10, message="the pod never waited for its Secret")
    assert api.request("GET", f"{PODS}/{api.pods('solve-env')[0]['metadata']['name']}/log").status_code == 400

    secret = {"metadata": {"name": "solve-secrets"}, "stringData": {"password": "s3cret"}}
    response = api.request("POST", SECRETS, json=secret)
    assert response.status_code == 201 and response.json()["data"] == {"password": "czNjcmV0"}

    api.wait_condition("solve-env", "Complete")
    [pod] = api.pods("solve-env")
    assert api.log(pod["metadata"]["name"]).splitlines() == [f"solve s3cret {tmp_path}", "oops"]


def test_a_failing_command_fails_the_job(api: Api) -> None:
    api.create_job("solve-bad", ["python", "-c", "import sys; print('no solution', file=sys.stderr); sys.exit(3)"])
    job = api.wait_condition("solve-bad", "Failed")
    assert job["status"]["failed"] == 1 and "succeeded" not in job["status"]
    assert _condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "completionTime" not in job["status"]  # Kubernetes sets it on success only
    [pod] = api.pods("solve-bad")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert api.log(pod["metadata"]["name"]) == "no solution\n"


def test_processes_left_by_the_main_one_die_with_it(api: Api) -> None:
    """A container's processes end with it: a background child does not outlive the pod."""
    api.create_job("solve-fork", ["sh", "-c", "sleep 60 & echo $!"])
    api.wait_condition("solve-fork", "Complete")
    [pod] = api.pods("solve-fork")
    child = int(api.log(pod["metadata"]["name"]))
    wait_until(lambda: not _alive(child), timeout=5, message="the background child lives on")


def test_a_command_that_cannot_start_fails_with_start_error(api: Api) -> None:
    api.create_job("solve-missing", ["/nonexistent/solver"])
    api.wait_condition("solve-missing", "Failed")
    [pod] = api.pods("solve-missing")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 128 and terminated["reason"] == "StartError"


def test_the_default_backoff_limit_retries_six_times(api: Api) -> None:
    """A Job without backoffLimit gets Kubernetes' default 6: seven pods run before it fails."""
    manifest = {
        "metadata": {"name": "solve-retry"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "solve", "image": "x", "command": ["python", "-c", "raise SystemExit(1)"]}],
                }
            }
        },
    }
    assert api.request("POST", JOBS, json=manifest).json()["spec"]["backoffLimit"] == 6
    job = api.wait_condition("solve-retry", "Failed", timeout=30)
    assert job["status"]["failed"] == 7
    assert len(api.pods("solve-retry")) == 7


def test_delete_kills_the_running_process(api: Api, k8s_cluster: KubernetesEmulator) -> None:
    api.create_job("solve-long", ["sleep", "60"])
    pod = api.wait_phase("solve-long", "Running")
    pid = _pid(pod)
    assert _alive(pid) and k8s_cluster.running_pids() == [pid]

    response = api.request("DELETE", f"{JOBS}/solve-long", params={"propagationPolicy": "Background"})
    assert response.status_code == 200
    assert response.json()["kind"] == "Status" and response.json()["status"] == "Success"
    assert api.request("GET", f"{JOBS}/solve-long").status_code == 404
    wait_until(lambda: not api.pods("solve-long"), timeout=5, message="the pod was never deleted")
    wait_until(lambda: not _alive(pid), timeout=5, message="the process was never killed")


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(api: Api) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    api.create_job("solve-stubborn", ["python", "-c", script], pod={"terminationGracePeriodSeconds": 1})
    pod = api.wait_phase("solve-stubborn", "Running")
    name = pod["metadata"]["name"]
    wait_until(lambda: api.log(name) == "up\n", timeout=5, message="the process never started")

    response = api.request("DELETE", f"{JOBS}/solve-stubborn", json={"propagationPolicy": "Foreground"})
    assert response.status_code == 200 and response.json()["metadata"]["deletionTimestamp"]
    # Still there during the grace period (SIGTERM is ignored), gone after SIGKILL.
    terminating = api.request("GET", f"{PODS}/{name}").json()
    assert terminating["metadata"]["deletionTimestamp"] and _alive(_pid(pod))
    wait_until(lambda: api.request("GET", f"{JOBS}/solve-stubborn").status_code == 404, timeout=5, message="job stayed")
    assert not api.pods("solve-stubborn") and not _alive(_pid(pod))


def test_deleting_without_a_policy_orphans_the_pod(api: Api, k8s_cluster: KubernetesEmulator) -> None:
    """As in Kubernetes, a Job's default propagation is Orphan: its pod goes on running."""
    api.create_job("solve-orphan", ["sleep", "60"])
    pod = api.wait_phase("solve-orphan", "Running")
    assert api.request("DELETE", f"{JOBS}/solve-orphan").status_code == 200
    orphan = api.request("GET", f"{PODS}/{pod['metadata']['name']}").json()
    assert orphan["status"]["phase"] == "Running" and "ownerReferences" not in orphan["metadata"]
    assert k8s_cluster.running_pids() == [_pid(pod)]  # the fixture's cleanup kills it


def test_authentication_is_required(k8s_cluster: KubernetesEmulator) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": k8s_cluster.token}):
        response = requests.get(f"{k8s_cluster.url}/version", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    response = requests.post(f"{k8s_cluster.url}{JOBS}", json={}, timeout=5)
    assert response.status_code == 401 and not k8s_cluster.jobs()
    version = requests.get(f"{k8s_cluster.url}/version", headers=k8s_cluster.headers(), timeout=5)
    assert version.status_code == 200 and version.json()["gitVersion"].startswith("v1.")


def test_error_shapes(api: Api) -> None:
    missing = api.request("GET", f"{JOBS}/nope")
    assert missing.status_code == 404
    body = missing.json()
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and body["code"] == 404
    assert body["message"] == 'jobs.batch "nope" not found'
    assert body["details"] == {"name": "nope", "group": "batch", "kind": "jobs"}
    assert api.request("DELETE", f"{JOBS}/nope").status_code == 404
    assert api.request("GET", f"{PODS}/nope/log").json()["reason"] == "NotFound"
    assert api.request("GET", "/apis/batch/v1/namespaces/pro-solves/cronjobs").status_code == 404

    api.create_job("solve-twice", ["true"])
    again = api.request("POST", JOBS, json=api.job("solve-twice") | {"status": {}})
    assert again.status_code == 409
    assert (
        again.json()["reason"] == "AlreadyExists"
        and again.json()["message"] == 'jobs.batch "solve-twice" already exists'
    )

    invalid = api.request("POST", JOBS, json={"metadata": {"name": "no-template"}, "spec": {}})
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "Job"
    assert {c["field"] for c in body["details"]["causes"]} == {
        "spec.template.spec.containers",
        "spec.template.spec.restartPolicy",
    }
    bad_name = api.request("POST", JOBS, json={"metadata": {"name": "Bad_Name"}, "spec": {}})
    assert bad_name.status_code == 422 and "metadata.name" in bad_name.json()["message"]

    # Merge patches are accepted, JSON patches are not; a stale resourceVersion conflicts on PUT.
    patched = api.request(
        "PATCH",
        f"{JOBS}/solve-twice",
        data='{"metadata": {"labels": {"seen": "yes"}}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200 and patched.json()["metadata"]["labels"]["seen"] == "yes"
    assert api.request("PATCH", f"{JOBS}/solve-twice", json=[]).status_code == 415
    stale = api.job("solve-twice")
    stale["metadata"]["resourceVersion"] = "1"
    conflict = api.request("PUT", f"{JOBS}/solve-twice", json=stale)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "Conflict"


def test_active_deadline_fails_the_job(api: Api) -> None:
    api.create_job("solve-slow", ["sleep", "30"], activeDeadlineSeconds=1)
    pod = api.wait_phase("solve-slow", "Running")
    job = api.wait_condition("solve-slow", "Failed", timeout=10)
    failed = _condition(job, "Failed")
    assert (
        failed["reason"] == "DeadlineExceeded" and failed["message"] == "Job was active longer than specified deadline"
    )
    assert job["status"]["failed"] == 1 and "active" not in job["status"]
    assert not _alive(_pid(pod))
    assert not api.pods("solve-slow")  # the Job controller deletes the pods of a Job past its deadline


def test_capacity_keeps_a_job_pending_until_a_slot_frees(
    api: Api, k8s_cluster: KubernetesEmulator, tmp_path: Path
) -> None:
    k8s_cluster.capacity = 1
    release = tmp_path / "release"
    wait_for_file = f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)\nprint('first')"
    api.create_job("solve-first", [sys.executable, "-c", wait_for_file])
    api.wait_phase("solve-first", "Running")
    api.create_job("solve-second", ["python", "-c", "print('second')"])

    def unschedulable() -> bool:
        pods = api.pods("solve-second")
        conditions = pods[0]["status"].get("conditions", []) if pods else []
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    wait_until(unschedulable, timeout=5, message="the second pod was never Unschedulable")
    time.sleep(0.5)  # ten rounds of the kubelet: it stays so while the first runs
    assert unschedulable() and api.pods("solve-second")[0]["status"]["phase"] == "Pending"
    job = api.job("solve-second")
    assert job["status"]["active"] == 1 and "conditions" not in job["status"]

    release.touch()
    api.wait_condition("solve-first", "Complete")
    api.wait_condition("solve-second", "Complete")
    [pod] = api.pods("solve-second")
    assert api.log(pod["metadata"]["name"]) == "second\n"


def test_evict_fails_the_job_as_a_lost_node_does(api: Api, k8s_cluster: KubernetesEmulator) -> None:
    api.create_job("solve-evicted", ["sleep", "60"])
    pod = api.wait_phase("solve-evicted", "Running")
    assert k8s_cluster.evict("solve-evicted") == pod["metadata"]["name"]

    job = api.wait_condition("solve-evicted", "Failed")
    assert job["status"]["failed"] == 1
    assert _condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    [evicted] = api.pods("solve-evicted")
    assert evicted["status"]["phase"] == "Failed" and evicted["status"]["reason"] == "Evicted"
    assert any(c["type"] == "DisruptionTarget" for c in evicted["status"]["conditions"])
    assert evicted["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    wait_until(lambda: not _alive(_pid(pod)), timeout=5, message="the evicted process lives on")


def test_ttl_after_finished_deletes_the_job(api: Api) -> None:
    api.create_job("solve-ttl", ["true"], ttlSecondsAfterFinished=0)
    wait_until(
        lambda: api.request("GET", f"{JOBS}/solve-ttl").status_code == 404, timeout=10, message="the Job was kept"
    )
    wait_until(lambda: not api.pods("solve-ttl"), timeout=5, message="its pod was kept")


def test_follow_streams_the_log_until_the_process_ends(api: Api) -> None:
    script = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
    api.create_job("solve-follow", ["python", "-c", script])
    pod = api.wait_phase("solve-follow", "Running")
    response = api.request("GET", f"{PODS}/{pod['metadata']['name']}/log", params={"follow": "true"}, stream=True)
    assert response.status_code == 200
    assert response.text == "0\n1\n2\n"
    assert api.log(pod["metadata"]["name"], tailLines="1") == "2\n"


def test_tls_with_a_ca_file() -> None:
    with KubernetesEmulator(tls=True) as cluster:
        assert cluster.url.startswith("https://127.0.0.1:") and cluster.ca_file
        response = requests.get(f"{cluster.url}/version", headers=cluster.headers(), verify=cluster.ca_file, timeout=5)
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{cluster.url}/version", headers=cluster.headers(), timeout=5)


def test_stop_kills_every_pod_process() -> None:
    cluster = KubernetesEmulator().start()
    api = Api(cluster)
    api.create_job("solve-left", ["sleep", "60"])
    pid = _pid(api.wait_phase("solve-left", "Running"))
    cluster.stop()
    assert not _alive(pid)
