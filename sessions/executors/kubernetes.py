"""The Kubernetes executor: each attempt one batch/v1 Job, over the API server's REST interface.

The Job never retries (``backoffLimit: 0``, ``restartPolicy: Never``): the platform counts
attempts. ``activeDeadlineSeconds`` is the job's time limit plus grace, so the runner interrupts
the solver before Kubernetes kills the pod; requests and limits come from the job's memory limit
plus the runner's own; the pod runs as a non-root user on a read-only root file system, its work
in an ``emptyDir``; finished Jobs are removed by ``ttlSecondsAfterFinished``. The attempt's
ticket is a Secret of its own (owned by the Job, so it goes with it), never a plain value.
Labels link the Job and its pod to the platform's job. Cancel deletes the Job (and its pod).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from . import EngineJob, EngineState, ExecutorError, Submission

TIMEOUT = 15
TTL_AFTER_FINISHED = 3600
RUNNER_MEMORY_MB = 256  # the runner's own Python beside the job's sandbox
PART_OF = "pro-portal"


class KubernetesExecutor:
    kind = "kubernetes"

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        namespace: str,
        image: str,
        ca_file: str | None = None,
        app_dir: str = "/app",
        work_dir: str = "/work",
    ):
        self.api_url = api_url.rstrip("/")
        self.app_dir = app_dir
        self.work_dir = work_dir
        self.namespace = namespace
        self.image = image
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.http.verify = ca_file if ca_file else True

    @classmethod
    def from_settings(cls) -> KubernetesExecutor:
        token_file = Path(settings.PRO_K8S_TOKEN_FILE)
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ExecutorError(f"The Kubernetes token file {token_file} cannot be read: {exc}") from None
        ca_file = settings.PRO_K8S_CA_FILE if Path(settings.PRO_K8S_CA_FILE).is_file() else None
        return cls(
            api_url=settings.PRO_K8S_API_URL,
            token=token,
            namespace=settings.PRO_K8S_NAMESPACE,
            image=settings.PRO_K8S_IMAGE,
            ca_file=ca_file,
            app_dir=settings.PRO_K8S_APP_DIR,
            work_dir=settings.PRO_K8S_WORK_DIR,
        )

    # ------------------------------------------------------------ HTTP
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """The API's JSON answer; None for 404 (the object is gone)."""
        try:
            answer = self.http.request(method, self.api_url + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ExecutorError(
                f"The Kubernetes API at {self.api_url} cannot be reached: {exc}", unreachable=True
            ) from None
        if answer.status_code == 404:
            return None
        if answer.status_code >= 400:
            try:
                message = answer.json().get("message", "")
            except ValueError:
                message = answer.text[:300]
            # This node's credentials or the API server itself, not the job: it waits for them.
            unreachable = answer.status_code in (401, 403, 429) or answer.status_code >= 500
            raise ExecutorError(
                f"Kubernetes answered {answer.status_code} to {method} {path}: {message}", unreachable=unreachable
            )
        return answer.json() if answer.content else {}

    def _jobs_path(self, namespace: str) -> str:
        return f"/apis/batch/v1/namespaces/{namespace}/jobs"

    # ------------------------------------------------------------ Executor
    def manifests(self, submission: Submission, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The attempt's Secret (its ticket) and Job."""
        labels = {
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/component": "solve-attempt",
            **submission.labels,
        }
        secret_values = {"PRO_JOB_TICKET": submission.environment["PRO_JOB_TICKET"]}
        plain = {k: v for k, v in submission.environment.items() if k not in secret_values}
        plain = {**plain, "PRO_EXECUTOR": self.kind, "PRO_RUNNER_WORK_DIR": self.work_dir}
        env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in sorted(plain.items())]
        env.append(
            {
                "name": "PRO_JOB_TICKET",
                "valueFrom": {"secretKeyRef": {"name": submission.name, "key": "PRO_JOB_TICKET"}},
            }
        )
        memory = f"{submission.memory_mb}Mi"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": submission.name, "namespace": namespace, "labels": labels},
            "type": "Opaque",
            "stringData": secret_values,
        }
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": submission.name, "namespace": namespace, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": submission.time_limit_seconds,
                "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 1000,
                            "runAsGroup": 1000,
                            "fsGroup": 1000,
                        },
                        "containers": [
                            {
                                "name": "attempt",
                                "image": self.image,
                                "command": submission.command,
                                "env": env,
                                "workingDir": self.app_dir,
                                "resources": {
                                    "requests": {"cpu": "1", "memory": memory},
                                    "limits": {"memory": memory},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "work", "mountPath": self.work_dir}],
                            }
                        ],
                        "volumes": [{"name": "work", "emptyDir": {}}],
                    },
                },
            },
        }
        return secret, job

    def submit(self, submission: Submission) -> str:
        namespace = submission.queue or self.namespace
        secret, job = self.manifests(submission, namespace)
        self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", json=secret)
        try:
            created = self._call("POST", self._jobs_path(namespace), json=job) or {}
        except ExecutorError:
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{submission.name}")
            raise
        uid = created.get("metadata", {}).get("uid")
        if uid:  # the Secret goes with its Job (Kubernetes' garbage collector)
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": submission.name, "uid": uid}
            self._call(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/secrets/{submission.name}",
                json={"metadata": {"ownerReferences": [owner]}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        return f"{namespace}/{submission.name}"

    def states(self, ids: list[str]) -> dict[str, EngineJob]:
        """Two lists per namespace (its attempts' Jobs, then their pods), whatever the number of attempts."""
        by_namespace: dict[str, list[str]] = {}
        for external_id in ids:
            namespace, _, name = external_id.partition("/")
            by_namespace.setdefault(namespace, []).append(name)
        found: dict[str, EngineJob] = {}
        for namespace, names in by_namespace.items():
            selector = {
                "labelSelector": f"app.kubernetes.io/component=solve-attempt,app.kubernetes.io/part-of={PART_OF}"
            }
            listed = self._call("GET", self._jobs_path(namespace), params=selector) or {}
            jobs = {item["metadata"]["name"]: item for item in listed.get("items", [])}
            pods: dict[str, list[dict[str, Any]]] = {}
            if any(name in jobs and _ended(jobs[name]) is None for name in names):
                listed_pods = self._call("GET", f"/api/v1/namespaces/{namespace}/pods", params=selector) or {}
                for pod in listed_pods.get("items", []):
                    owner = (pod.get("metadata", {}).get("labels") or {}).get("job-name", "")
                    pods.setdefault(owner, []).append(pod)
            for name in names:
                found[f"{namespace}/{name}"] = _state(jobs.get(name), pods.get(name, []))
        return found

    def cancel(self, external_id: str) -> None:
        namespace, _, name = external_id.partition("/")
        self._call("DELETE", f"{self._jobs_path(namespace)}/{name}", params={"propagationPolicy": "Background"})
        self._call("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")


def _ended(job: dict[str, Any]) -> EngineJob | None:
    """The end of a Job from its status (its conditions first, as the Job controller sets them), or None."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return EngineJob(EngineState.ENDED, condition.get("reason") or condition["type"])
    if status.get("succeeded", 0):
        return EngineJob(EngineState.ENDED, "Complete")
    if status.get("failed", 0):
        return EngineJob(EngineState.ENDED, "Failed")
    return None


def _state(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> EngineJob:
    if job is None:
        return EngineJob(EngineState.MISSING)
    ended = _ended(job)
    if ended is not None:
        return ended
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Running":
            return EngineJob(EngineState.RUNNING, "Running")
        if phase in ("Failed", "Succeeded"):
            return EngineJob(EngineState.ENDED, (pod.get("status") or {}).get("reason") or phase)
    return EngineJob(EngineState.PENDING, _pending_reason(pods[0]) if pods else "Pending")


def _pending_reason(pod: dict[str, Any]) -> str:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"Pending ({condition.get('reason') or 'Unschedulable'})"
    return "Pending"
