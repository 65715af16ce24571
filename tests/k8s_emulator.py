"""An emulated Kubernetes cluster for the tests: an API server over HTTP(S) and a fake kubelet.

There is no real cluster on the developers' machines nor in CI, yet the Kubernetes executor
(``sessions/executors/kubernetes.py``) must be tested through the wire protocol it really speaks:
plain HTTP/JSON with a bearer token. So ``KubernetesEmulator`` serves the few endpoints the
executor uses, with Kubernetes' own semantics and error shapes, on a free port of 127.0.0.1
(port 0: parallel pytest-xdist workers never collide), and a kubelet thread runs each Job's pod
as a real local process, so that a solve really runs, writes a log and exits.

kmock (PyPI, 0.8) was considered: its ``KubernetesEmulator`` stores objects, but it has no
authentication, no label selectors, fills in no uid / resourceVersion / creationTimestamp,
answers errors with reasons of its own (``Object Already Exists``, not ``AlreadyExists``) and has
no pod logs, so nearly all of it would have been overridden. This module uses only the standard
library (``http.server``, ``subprocess``), plus ``cryptography`` for the optional TLS.

Served (every request needs ``Authorization: Bearer <token>``, else 401 ``Unauthorized``):

- ``GET /version``, ``/healthz``, ``/readyz``, ``/livez``, ``/api``, ``/apis``.
- ``batch/v1`` jobs: ``POST``, ``GET`` (object; list with ``labelSelector`` / ``fieldSelector``,
  also across namespaces at ``/apis/batch/v1/jobs``), ``PUT``, ``PATCH`` (merge patch; a
  strategic merge patch is applied as a merge patch), ``DELETE`` with ``propagationPolicy``
  ``Background`` / ``Foreground`` / ``Orphan`` (query or DeleteOptions body; Orphan is the
  default, as for Jobs in a real API server: a client that forgets the policy leaves its pod
  running), and ``/status`` (GET, PUT, PATCH: only ``status`` is taken there, and ``status`` is
  ignored on the main resource).
- v1 pods: ``GET`` (object, list), ``DELETE`` (graceful: SIGTERM, then SIGKILL), ``/status``,
  ``/log`` (``tailLines``, ``limitBytes``, ``follow``; 400 while the container waits to start).
  Pods cannot be POSTed: only Jobs' pods exist.
- v1 secrets: ``POST`` (``stringData`` is folded into base64 ``data``), ``GET``, ``PUT``,
  ``PATCH``, ``DELETE``; the kubelet resolves ``env[].valueFrom.secretKeyRef`` from them.

Errors are ``kind: Status`` bodies: 400 BadRequest, 401 Unauthorized, 404 NotFound, 405
MethodNotAllowed, 409 AlreadyExists / Conflict (a stale ``metadata.resourceVersion`` on PUT),
415 UnsupportedMediaType, 422 Invalid (a Job without ``spec.template``, containers, image or a
``restartPolicy`` of Never / OnFailure; a bad name). Stored objects get ``uid``,
``creationTimestamp``, ``resourceVersion``, ``generation``; Jobs get the API server's defaults
(``backoffLimit`` 6, ``completions`` / ``parallelism`` 1, a selector and the template's
``job-name`` / ``controller-uid`` labels). List items carry no ``kind`` / ``apiVersion`` and zero
counts (``active``, ``failed``, ``succeeded``) are left out of a Job's status, as the real server
does: clients must read them with a default.

The kubelet (and Job controller, scheduler, garbage collector and TTL controller, all in one
thread) behaves as Kubernetes 1.31 does for a one-pod Job:

- A new Job gets ``status.startTime``, ``active: 1`` and a pod ``<job>-xxxxx`` (labels of the
  template plus ``job-name``, ``controller-uid`` and their ``batch.kubernetes.io/`` forms, an
  ownerReference to the Job). Beyond ``capacity`` pods bound at once the pod stays Pending with
  ``PodScheduled`` False / ``Unschedulable`` until a slot frees (first come, first bound).
- A bound pod runs its first container's ``command`` + ``args`` (``$(VAR)`` expanded) as a
  local process in a session of its own, with the container's ``env`` (``value``,
  ``valueFrom.secretKeyRef``, ``valueFrom.fieldRef`` for ``metadata.name`` / ``namespace`` /
  ``uid``) over ``image_env``, in ``workingDir`` (which must exist: the host's folders are not
  created) or else in an empty folder of its own, stdout and stderr captured as the pod's log.
  A missing Secret leaves the pod Pending with ``CreateContainerConfigError`` (retried); a
  command that cannot start fails the pod with ``StartError``, exit code 128.
- Pending → Running (``ready``) → Succeeded / Failed with ``containerStatuses[0].state
  .terminated`` (``exitCode``, reason ``Completed`` / ``Error``, 128 + signal when killed). When the
  container's main process ends, the rest of its process group is killed, as a container's are.
- The Job: on success ``succeeded: 1``, ``completionTime`` and the conditions
  ``SuccessCriteriaMet`` then ``Complete`` (reason ``CompletionsReached``). A failed pod counts
  against ``backoffLimit`` (a new pod is made while ``failed <= backoffLimit``, without the
  exponential delay); past it ``FailureTarget`` then ``Failed``, reason ``BackoffLimitExceeded``.
  ``completionTime`` is set on success only, as in Kubernetes. ``activeDeadlineSeconds``
  (counted from ``startTime``, pending time included) kills the pod and fails the Job with
  reason ``DeadlineExceeded``; the ``Failed`` condition comes once the pod's process is gone.
  A pod deleted before it ended counts as failed. ``ttlSecondsAfterFinished`` deletes the Job
  (and its pods) that long after it finished.
- Deleting a Job (Background / Foreground) deletes its pods gracefully: SIGTERM to the process
  group, SIGKILL after the grace period (DeleteOptions ``gracePeriodSeconds``, else the pod's
  ``terminationGracePeriodSeconds``, default 30) capped at ``grace_cap`` seconds; the pod object
  (and its log) is gone once the process is.
- ``evict(job)`` simulates the loss of the node: SIGKILL, the pod Failed with ``reason:
  Evicted`` and a ``DisruptionTarget`` condition, the Job failed as above.

Not emulated: the image (its entrypoint, files and user: the command runs on this machine as
this user, so ``python`` is this virtualenv's by the default ``image_env`` PATH), volumes and
mounts, ``envFrom`` and ConfigMaps, resource requests and limits, ``securityContext`` (stored,
not enforced), init and sidecar containers (only the first container runs), ``completions`` /
``parallelism`` above 1 (one pod at a time), ``suspend``, ``podFailurePolicy``, restarts of
``restartPolicy: OnFailure`` (treated as Never), watches (``?watch=true`` is a 400), set-based
label selectors, JSON patch, RBAC (the one token may do everything), and the API server's
immutability and field validation on update.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

DEFAULT_NAMESPACE = "pro-solves"
SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-emulated",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
NODE_NAME = "emulated-node"
TICK = 0.05  # seconds between two rounds of the kubelet; requests and changes also wake it at once
NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the one Kubernetes draws generateName suffixes from
LABEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
MERGE_PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}


@dataclass(frozen=True)
class _Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    creatable: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How Kubernetes names the resource in messages: ``jobs.batch``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


JOBS = _Resource("batch", "v1", "Job", "jobs")
PODS = _Resource("", "v1", "Pod", "pods", creatable=False)
SECRETS = _Resource("", "v1", "Secret", "secrets")
RESOURCES = {
    ("batch/v1", "jobs"): JOBS,
    ("v1", "pods"): PODS,
    ("v1", "secrets"): SECRETS,
}
SUBRESOURCES = {"jobs": {"status"}, "pods": {"status", "log"}, "secrets": set()}
PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>batch/v1))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?$"
)


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status``: what a client library would raise on."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _not_found(resource: _Resource, name: str) -> ApiError:
    details = {"name": name, "group": resource.group, "kind": resource.plural}
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', details)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _now() -> str:
    """A timestamp as Kubernetes writes them: RFC 3339, UTC, whole seconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` removes a key, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _parse_label_selector(text: str) -> list[tuple[str, str, str]]:
    """Equality-based requirements (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``) as (key, op, value)."""
    if "(" in text or " in " in text or " notin " in text:
        raise _bad_request(f"unable to parse requirement: set-based selectors are not emulated: {text!r}")
    requirements = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append((key.strip(), "!=", value.strip()))
        elif "==" in part:
            key, value = part.split("==", 1)
            requirements.append((key.strip(), "=", value.strip()))
        elif "=" in part:
            key, value = part.split("=", 1)
            requirements.append((key.strip(), "=", value.strip()))
        elif part.startswith("!"):
            requirements.append((part[1:].strip(), "!", ""))
        else:
            requirements.append((part, "exists", ""))
    for key, _, _ in requirements:
        if not key or " " in key:
            raise _bad_request(f"unable to parse requirement: invalid label key in {text!r}")
    return requirements


def _labels_match(labels: Mapping[str, str], requirements: list[tuple[str, str, str]]) -> bool:
    for key, op, value in requirements:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


def _field_value(obj: Mapping[str, Any], path: str) -> str | None:
    if path == "metadata.name":
        return obj["metadata"]["name"]
    if path == "metadata.namespace":
        return obj["metadata"].get("namespace")
    if path == "status.phase" and obj.get("kind") == "Pod":
        return obj.get("status", {}).get("phase")
    raise _bad_request(f'field label not supported: "{path}"')


def _parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    requirements = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        for op, canonical in (("!=", "!="), ("==", "="), ("=", "=")):
            if op in part:
                key, value = part.split(op, 1)
                requirements.append((key.strip(), canonical, value.strip()))
                break
        else:
            raise _bad_request(f"invalid field selector: {text!r}")
    return requirements


@dataclass
class _Container:
    """The local process that stands for a pod's container."""

    popen: subprocess.Popen[bytes]
    log: Path
    started_at: str
    kill_at: float | None = None  # when SIGKILL follows the SIGTERM already sent
    evicted: bool = False

    def alive(self) -> bool:
        """Whether the main process runs, without reaping it: the kubelet reaps, after killing its group."""
        if self.popen.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False


@dataclass
class _JobRun:
    """The Job controller's memory of one Job (by uid): what its pods came to."""

    uid: str
    started: float
    succeeded: int = 0
    failed: int = 0
    failure: tuple[str, str] | None = None  # (reason, message) once the Job is bound to fail
    success: bool = False
    finished: float | None = None
    counted: set[str] = field(default_factory=set)  # the pods already counted as succeeded or failed


class KubernetesEmulator:
    """An emulated Kubernetes API server and kubelet; see the module's docstring for the semantics.

    Use it as a context manager (or ``start()`` / ``stop()``). ``url`` is the API's base URL,
    ``token`` the bearer token it requires, ``ca_file`` the CA certificate to verify it with when
    ``tls=True`` (else None). ``capacity`` (how many pods may be bound at once) may be changed
    while it runs. ``image_env`` is the environment every container starts from, standing for
    what its image would set: by default a PATH that finds this virtualenv's ``python`` first.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        capacity: int = 1000,
        grace_cap: float = 2.0,
        image_env: Mapping[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.namespace = namespace
        self.grace_cap = grace_cap
        self.tls = tls
        if image_env is None:
            image_env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        self.image_env = dict(image_env)
        self._capacity = capacity
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name), in creation order
        self._containers: dict[tuple[str, str], _Container] = {}  # (namespace, pod name)
        self._runs: dict[str, _JobRun] = {}  # by Job uid
        self._foreground_grace: dict[
            str, Any
        ] = {}  # DeleteOptions.gracePeriodSeconds of Jobs deleted in the foreground
        self._resource_version = 1000
        self._stopping = False
        self._folder: Path | None = None
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.ca_file: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> KubernetesEmulator:
        """Bind a free port of 127.0.0.1, and start the API server's and the kubelet's threads."""
        self._folder = Path(tempfile.mkdtemp(prefix="k8s-emulator-"))
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        scheme = "http"
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert, key, self.ca_file = _make_certificates(self._folder)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            scheme = "https"
        port = self._server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{port}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
            threading.Thread(target=self._kubelet, name="k8s-emulator-kubelet", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Kill every pod process still running (SIGKILL to its group), stop the threads, remove the files."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            for container in self._containers.values():
                if container.popen.returncode is None:
                    _signal_group(container.popen.pid, signal.SIGKILL)  # the group, even if its leader has ended
        for container in list(self._containers.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                container.popen.wait(timeout=5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> KubernetesEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at and do ---------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        with self._wake:
            self._capacity = value
            self._wake.notify_all()

    def headers(self) -> dict[str, str]:
        """The headers an authorised client sends."""
        return {"Authorization": f"Bearer {self.token}"}

    def jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored Jobs (of one namespace, or of all), oldest first."""
        return self._list("jobs", namespace)

    def pods(self, namespace: str | None = None, job: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored pods (of one namespace or all; of one Job or all), oldest first."""
        pods = self._list("pods", namespace)
        if job is not None:
            pods = [pod for pod in pods if pod["metadata"]["labels"].get("job-name") == job]
        return pods

    def job(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """A copy of one Job, or None."""
        with self._lock:
            obj = self._objects.get(("jobs", namespace or self.namespace, name))
            return copy.deepcopy(obj) if obj else None

    def running_pids(self) -> list[int]:
        """The process ids of the pod processes still alive, to check that none is left behind."""
        with self._lock:
            return [c.popen.pid for c in self._containers.values() if c.alive()]

    def evict(self, job_name: str, namespace: str | None = None) -> str:
        """Lose the node under the Job's pod: SIGKILL its process, the pod Failed / Evicted.

        The Job then fails as it does in Kubernetes (``BackoffLimitExceeded`` with backoffLimit 0,
        or a new pod while the limit allows). Returns the evicted pod's name.
        """
        namespace = namespace or self.namespace
        with self._wake:
            job = self._objects.get(("jobs", namespace, job_name))
            if job is None:
                raise LookupError(f"no Job {namespace}/{job_name}")
            pods = [
                pod
                for pod in self._pods_of(job["metadata"]["uid"])
                if pod["status"].get("phase") not in ("Succeeded", "Failed")
            ]
            if not pods:
                raise LookupError(f"Job {namespace}/{job_name} has no pod left to evict")
            pod = pods[0]
            name = pod["metadata"]["name"]
            container = self._containers.get((namespace, name))
            if container is not None and container.alive():
                container.evicted = True
                _signal_group(container.popen.pid, signal.SIGKILL)
            message = "The node was lost: the pod's process was killed (emulated eviction)."
            status = pod["status"]
            status["phase"] = "Failed"
            status["reason"] = "Evicted"
            status["message"] = message
            conditions = [c for c in status.get("conditions", []) if c["type"] not in ("Ready", "ContainersReady")]
            conditions.append(_condition("DisruptionTarget", "True", "TerminationByKubelet", message))
            conditions += [
                _condition("Ready", "False", "PodFailed"),
                _condition("ContainersReady", "False", "PodFailed"),
            ]
            status["conditions"] = conditions
            spec_container = pod["spec"]["containers"][0]
            started = container.started_at if container else None
            status["containerStatuses"] = [
                _terminated_status(spec_container, 137, "Error", started, container.popen.pid if container else None)
            ]
            self._bump(pod)
            self._account(pod)
            self._wake.notify_all()
            return name

    # -- the store -------------------------------------------------------------------------------

    def _list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in self._objects.items()
                if kind == plural and (namespace is None or ns == namespace)
            ]

    def _bump(self, obj: dict[str, Any]) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)

    def _new_metadata(self, obj: dict[str, Any], namespace: str) -> None:
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"):
            meta.pop(key, None)
        self._bump(obj)

    def _generate_name(self, plural: str, namespace: str, prefix: str) -> str:
        while True:
            name = prefix[:58] + "".join(secrets.choice(NAME_SUFFIX_ALPHABET) for _ in range(5))
            if (plural, namespace, name) not in self._objects:
                return name

    def api_create(self, resource: _Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST: validate, fill in the server's fields and defaults, store."""
        if not isinstance(body, dict):
            raise _bad_request("the body of the request must be a JSON object")
        for key, expected in (("apiVersion", resource.api_version), ("kind", resource.kind)):
            if body.get(key) not in (None, expected):
                raise _bad_request(f"the {key} of the body ({body.get(key)!r}) is not {expected!r}")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, namespace):
            raise _bad_request("the namespace of the provided object does not match the namespace sent on the request")
        with self._wake:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = self._generate_name(resource.plural, namespace, meta["generateName"])
            self._validate(resource, obj)
            name = meta["name"]
            if (resource.plural, namespace, name) in self._objects:
                details = {"name": name, "group": resource.group, "kind": resource.plural}
                raise ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists', details)
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
            self._new_metadata(obj, namespace)
            if resource is JOBS:
                self._default_job(obj)
            if resource is SECRETS:
                data = dict(obj.get("data") or {})
                for key, value in (obj.pop("stringData", None) or {}).items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                obj["data"] = data
                obj.setdefault("type", "Opaque")
            self._objects[(resource.plural, namespace, name)] = obj
            self._wake.notify_all()
            return copy.deepcopy(obj)

    def _validate(self, resource: _Resource, obj: dict[str, Any]) -> None:
        causes: list[tuple[str, str, str]] = []  # (reason, field, message)
        name = obj["metadata"].get("name")
        pattern = SUBDOMAIN_NAME if resource is SECRETS else LABEL_NAME
        limit = 253 if resource is SECRETS else 63
        if not name:
            causes.append(("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"))
        elif not isinstance(name, str) or not pattern.match(name) or len(name) > limit:
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": must be a lowercase RFC 1123 name of at most {limit} characters',
                )
            )
        if resource is JOBS:
            spec = obj.get("spec")
            template = spec.get("template") if isinstance(spec, dict) else None
            pod_spec = template.get("spec") if isinstance(template, dict) else None
            containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
            if not isinstance(containers, list) or not containers:
                causes.append(("FieldValueRequired", "spec.template.spec.containers", "Required value"))
            else:
                for index, container in enumerate(containers):
                    where = f"spec.template.spec.containers[{index}]"
                    if not isinstance(container, dict):
                        causes.append(("FieldValueInvalid", where, "Invalid value: not an object"))
                        continue
                    for key in ("name", "image"):
                        if not container.get(key):
                            causes.append(("FieldValueRequired", f"{where}.{key}", "Required value"))
            policy = pod_spec.get("restartPolicy", "Always") if isinstance(pod_spec, dict) else "Always"
            if policy not in ("Never", "OnFailure"):
                causes.append(
                    (
                        "FieldValueNotSupported",
                        "spec.template.spec.restartPolicy",
                        f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                    )
                )
        if causes:
            text = ", ".join(f"{where}: {message}" for _, where, message in causes)
            if len(causes) > 1:
                text = f"[{text}]"
            details = {
                "name": name or "",
                "group": resource.group,
                "kind": resource.kind,
                "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
            }
            raise ApiError(
                422, "Invalid", f'{resource.kind}.{resource.group or "core"} "{name}" is invalid: {text}', details
            )

    def _default_job(self, job: dict[str, Any]) -> None:
        uid, name = job["metadata"]["uid"], job["metadata"]["name"]
        job.pop("status", None)
        spec = job["spec"]
        for key, value in (
            ("backoffLimit", 6),
            ("completions", 1),
            ("parallelism", 1),
            ("completionMode", "NonIndexed"),
            ("suspend", False),
            ("manualSelector", False),
            ("podReplacementPolicy", "TerminatingOrFailed"),
        ):
            spec.setdefault(key, value)
        own = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        template_meta = spec["template"].setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), **own}
        job["metadata"]["labels"] = {**own, **(job["metadata"].get("labels") or {})}
        pod_spec = spec["template"]["spec"]
        pod_spec.setdefault("terminationGracePeriodSeconds", 30)
        pod_spec.setdefault("dnsPolicy", "ClusterFirst")
        pod_spec.setdefault("schedulerName", "default-scheduler")
        job["status"] = {}

    def api_get(self, resource: _Resource, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((resource.plural, namespace, name))
            if obj is None:
                raise _not_found(resource, name)
            return copy.deepcopy(obj)

    def api_list(self, resource: _Resource, namespace: str | None, query: Mapping[str, str]) -> dict[str, Any]:
        labels = _parse_label_selector(query.get("labelSelector", ""))
        fields = _parse_field_selector(query.get("fieldSelector", ""))
        with self._lock:
            items = []
            for (plural, ns, _), obj in self._objects.items():
                if plural != resource.plural or (namespace is not None and ns != namespace):
                    continue
                if not _labels_match(obj["metadata"].get("labels") or {}, labels):
                    continue
                if any((_field_value(obj, key) == value) != (op == "=") for key, op, value in fields):
                    continue
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
            return {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self._resource_version)},
                "items": items,
            }

    def api_update(
        self,
        resource: _Resource,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None,
        patch: bool,
    ) -> dict[str, Any]:
        """PUT (replace) or PATCH (merge) the object or its ``status``; metadata the server owns is kept."""
        if not isinstance(body, dict):
            raise _bad_request("the body of the request must be a JSON object")
        with self._wake:
            key = (resource.plural, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise _not_found(resource, name)
            sent_version = (body.get("metadata") or {}).get("resourceVersion")
            if not patch and sent_version and sent_version != current["metadata"]["resourceVersion"]:
                details = {"name": name, "group": resource.group, "kind": resource.plural}
                message = (
                    f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been modified;'
                    " please apply your changes to the latest version and try again"
                )
                raise ApiError(409, "Conflict", message, details)
            new = _merge_patch(current, body) if patch else copy.deepcopy(body)
            has_status = resource is not SECRETS
            if subresource == "status":
                result = copy.deepcopy(current)
                result["status"] = new.get("status", {})
            else:
                result = new
                if has_status:
                    result["status"] = copy.deepcopy(current.get("status", {}))
                meta = result.setdefault("metadata", {})
                for owned in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
                    if owned in current["metadata"]:
                        meta[owned] = current["metadata"][owned]
                result["apiVersion"], result["kind"] = resource.api_version, resource.kind
                if current.get("spec") != result.get("spec"):
                    meta["generation"] = current["metadata"].get("generation", 1) + 1
            self._bump(result)
            self._objects[key] = result
            self._wake.notify_all()
            return copy.deepcopy(result)

    def api_delete(self, resource: _Resource, namespace: str, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """DELETE with Kubernetes' cascading (Jobs) and graceful termination (pods)."""
        with self._wake:
            key = (resource.plural, namespace, name)
            obj = self._objects.get(key)
            if obj is None:
                raise _not_found(resource, name)
            success = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": resource.group,
                    "kind": resource.plural,
                    "uid": obj["metadata"]["uid"],
                },
            }
            grace = options.get("gracePeriodSeconds")
            if resource is PODS:
                self._delete_pod(obj, grace)
                self._wake.notify_all()
                return copy.deepcopy(obj)
            if resource is SECRETS:
                del self._objects[key]
                return success
            policy = options.get("propagationPolicy") or "Orphan"  # a Job's default, kept for compatibility
            if policy not in ("Orphan", "Background", "Foreground"):
                raise _bad_request(
                    f'Unsupported value: "{policy}": supported values: "Orphan", "Background", "Foreground"'
                )
            uid = obj["metadata"]["uid"]
            if policy == "Foreground":
                if obj["metadata"].get("deletionTimestamp") is None:
                    obj["metadata"]["deletionTimestamp"] = _now()
                    obj["metadata"]["deletionGracePeriodSeconds"] = 0
                    obj["metadata"]["finalizers"] = ["foregroundDeletion"]
                    self._foreground_grace[uid] = grace
                    self._bump(obj)
                self._wake.notify_all()
                return copy.deepcopy(obj)
            del self._objects[key]
            self._runs.pop(uid, None)
            if policy == "Orphan":
                for pod in self._pods_of(uid):
                    pod["metadata"].pop("ownerReferences", None)
                    self._bump(pod)
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["metadata"]["finalizers"] = ["orphan"]
                return copy.deepcopy(obj)
            for pod in self._pods_of(uid):
                self._delete_pod(pod, grace)
            self._wake.notify_all()
            return success

    # -- the kubelet, Job controller, scheduler and garbage collector ----------------------------

    def _pods_of(self, job_uid: str) -> list[dict[str, Any]]:
        return [
            obj
            for (plural, _, _), obj in self._objects.items()
            if plural == "pods"
            and any(ref.get("uid") == job_uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def _owner_uid(self, pod: Mapping[str, Any]) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "Job" and ref.get("controller"):
                return ref.get("uid")
        return None

    def _account(self, pod: dict[str, Any], *, deleted: bool = False) -> None:
        """Count a pod that ended (or was deleted before it ended) once, in its Job's run."""
        run = self._runs.get(self._owner_uid(pod) or "")
        uid = pod["metadata"]["uid"]
        if run is None or uid in run.counted:
            return
        phase = pod["status"].get("phase")
        if phase == "Succeeded":
            run.counted.add(uid)
            run.succeeded += 1
        elif phase == "Failed" or deleted:
            run.counted.add(uid)
            run.failed += 1

    def _delete_pod(self, pod: dict[str, Any], grace: Any) -> None:
        """Graceful deletion: mark it, SIGTERM its process group, SIGKILL at the (capped) grace's end."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        try:
            grace = max(0.0, float(grace))
        except (TypeError, ValueError) as error:
            raise _bad_request(f"gracePeriodSeconds: invalid value {grace!r}") from error
        container = self._containers.get((namespace, name))
        if container is not None:  # the kubelet's round reaps it, then removes the pod
            if pod["metadata"].get("deletionTimestamp") is None:
                pod["metadata"]["deletionTimestamp"] = _now()
                pod["metadata"]["deletionGracePeriodSeconds"] = int(grace)
                self._bump(pod)
            if not container.alive():
                return
            wait = min(grace, self.grace_cap)
            if wait <= 0:
                _signal_group(container.popen.pid, signal.SIGKILL)
            elif container.kill_at is None:
                _signal_group(container.popen.pid, signal.SIGTERM)
                container.kill_at = time.monotonic() + wait
            else:
                container.kill_at = min(container.kill_at, time.monotonic() + wait)
            return
        self._account(pod, deleted=True)
        self._objects.pop(("pods", namespace, name), None)

    def _kubelet(self) -> None:
        with self._wake:
            while not self._stopping:
                self._round()
                self._wake.wait(TICK)

    def _round(self) -> None:
        now = time.monotonic()
        # 1. Containers whose main process ended: kill what is left of them, finish their pods.
        for (namespace, name), container in list(self._containers.items()):
            if container.kill_at is not None and now >= container.kill_at and container.alive():
                _signal_group(container.popen.pid, signal.SIGKILL)
            if container.popen.returncode is None:
                if container.alive():
                    continue
                _signal_group(container.popen.pid, signal.SIGKILL)  # a container's processes end with it
                container.popen.wait()
            pod = self._objects.get(("pods", namespace, name))
            if pod is not None and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                code = container.popen.returncode
                exit_code = code if code >= 0 else 128 - code
                spec_container = pod["spec"]["containers"][0]
                pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
                pod["status"]["conditions"] = [
                    c for c in pod["status"].get("conditions", []) if c["type"] not in ("Ready", "ContainersReady")
                ] + [
                    _condition("Ready", "False", "PodCompleted"),
                    _condition("ContainersReady", "False", "PodCompleted"),
                ]
                pod["status"]["containerStatuses"] = [
                    _terminated_status(
                        spec_container,
                        exit_code,
                        "Completed" if exit_code == 0 else "Error",
                        container.started_at,
                        container.popen.pid,
                    )
                ]
                self._bump(pod)
                self._account(pod)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                if pod is not None:
                    self._account(pod, deleted=True)
                self._objects.pop(("pods", namespace, name), None)
                with contextlib.suppress(OSError):
                    container.log.unlink()
            self._containers.pop((namespace, name), None)
        # 2. The garbage collector: pods of deleted Jobs, Jobs deleted in the foreground, TTLs.
        live_jobs = {obj["metadata"]["uid"]: obj for (plural, _, _), obj in self._objects.items() if plural == "jobs"}
        for (plural, _, _), pod in list(self._objects.items()):
            if plural != "pods":
                continue
            owner = self._owner_uid(pod)
            job = live_jobs.get(owner or "")
            if owner is not None and (job is None or "foregroundDeletion" in job["metadata"].get("finalizers", [])):
                grace = self._foreground_grace.get(owner) if job else None
                self._delete_pod(pod, grace)
            elif (
                pod["metadata"].get("deletionTimestamp")
                and (pod["metadata"]["namespace"], pod["metadata"]["name"]) not in self._containers
            ):
                self._delete_pod(pod, 0)
        for uid, job in live_jobs.items():
            meta = job["metadata"]
            if "foregroundDeletion" in meta.get("finalizers", []) and not self._pods_of(uid):
                self._objects.pop(("jobs", meta["namespace"], meta["name"]), None)
                self._runs.pop(uid, None)
                self._foreground_grace.pop(uid, None)
        for uid in list(self._runs):
            if uid not in live_jobs:
                del self._runs[uid]
        # 3. The Job controller.
        for (plural, _, _), job in list(self._objects.items()):
            if plural == "jobs" and "foregroundDeletion" not in job["metadata"].get("finalizers", []):
                self._sync_job(job, now)
        # 4. The scheduler and the kubelet's start of bound pods.
        bound = sum(
            1
            for (plural, _, _), pod in self._objects.items()
            if plural == "pods" and pod["spec"].get("nodeName") and pod["status"].get("phase") in ("Pending", "Running")
        )
        for (plural, _, _), pod in list(self._objects.items()):
            if plural != "pods" or pod["status"].get("phase") != "Pending" or pod["metadata"].get("deletionTimestamp"):
                continue
            if not pod["spec"].get("nodeName"):
                if bound >= self._capacity:
                    self._unschedulable(pod)
                    continue
                bound += 1
                pod["spec"]["nodeName"] = NODE_NAME
                pod["status"]["conditions"] = [_condition("PodScheduled", "True")]
                self._bump(pod)
            self._start(pod)

    def _sync_job(self, job: dict[str, Any], now: float) -> None:
        meta, spec = job["metadata"], job["spec"]
        uid = meta["uid"]
        before = json.dumps(job.get("status"), sort_keys=True)
        status = job.setdefault("status", {})
        run = self._runs.get(uid)
        if run is None:
            run = self._runs[uid] = _JobRun(uid=uid, started=now)
            status.setdefault("startTime", _now())
        if run.finished is not None:
            ttl = spec.get("ttlSecondsAfterFinished")
            if ttl is not None and now - run.finished >= float(ttl):
                self._objects.pop(("jobs", meta["namespace"], meta["name"]), None)
                self._runs.pop(uid, None)
            return
        pods = self._pods_of(uid)
        for pod in pods:
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                self._account(pod)
        active = [
            pod
            for pod in pods
            if pod["status"].get("phase") not in ("Succeeded", "Failed")
            and not pod["metadata"].get("deletionTimestamp")
        ]
        alive = [pod for pod in pods if (meta["namespace"], pod["metadata"]["name"]) in self._containers]
        conditions = status.setdefault("conditions", [])
        if run.failure is None and not run.success:
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None and now - run.started >= float(deadline):
                run.failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            elif run.succeeded >= spec.get("completions", 1):
                run.success = True
                conditions.append(
                    _condition(
                        "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"
                    )
                )
            elif run.failed > spec.get("backoffLimit", 6):
                run.failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
            elif not active and not alive:
                self._make_pod(job)
                active = [p for p in self._pods_of(uid) if p["status"].get("phase") == "Pending"]
            if run.failure is not None:
                conditions.append(_condition("FailureTarget", "True", *run.failure))
                for pod in active:
                    self._delete_pod(pod, None)
                active = []
        alive = [pod for pod in self._pods_of(uid) if (meta["namespace"], pod["metadata"]["name"]) in self._containers]
        if run.failure is not None and not alive:
            conditions.append(_condition("Failed", "True", *run.failure))
            run.finished = now
        elif run.success and not alive:
            conditions.append(
                _condition("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")
            )
            status["completionTime"] = _now()
            run.finished = now
        if not conditions:
            status.pop("conditions")
        counts = {
            "active": len(active),
            "succeeded": run.succeeded,
            "failed": run.failed,
        }
        for key, value in counts.items():
            if value:
                status[key] = value
            else:
                status.pop(key, None)
        status["ready"] = sum(1 for pod in active if pod["status"].get("phase") == "Running")
        status["uncountedTerminatedPods"] = {}
        if json.dumps(status, sort_keys=True) != before:
            self._bump(job)

    def _make_pod(self, job: dict[str, Any]) -> None:
        meta, template = job["metadata"], job["spec"]["template"]
        namespace = meta["namespace"]
        name = self._generate_name("pods", namespace, f"{meta['name']}-")
        pod_meta = copy.deepcopy(template.get("metadata") or {})
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                **pod_meta,
                "name": name,
                "generateName": f"{meta['name']}-",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        self._new_metadata(pod, namespace)
        self._objects[("pods", namespace, name)] = pod

    def _unschedulable(self, pod: dict[str, Any]) -> None:
        message = f"0/1 nodes are available: 1 Too many pods (the emulator's capacity is {self._capacity})."
        conditions = [_condition("PodScheduled", "False", "Unschedulable", message)]
        if [(c["type"], c["status"]) for c in pod["status"].get("conditions", [])] != [("PodScheduled", "False")]:
            pod["status"]["conditions"] = conditions
            self._bump(pod)

    def _start(self, pod: dict[str, Any]) -> None:
        """The kubelet's part: resolve the environment, start the process, or say why not."""
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        namespace, name = meta["namespace"], meta["name"]
        container_spec = spec["containers"][0]
        before = json.dumps(status, sort_keys=True)
        try:
            env = self._container_env(pod, container_spec)
        except _ConfigError as error:
            status["containerStatuses"] = [
                _container_status(
                    container_spec,
                    {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}},
                    ready=False,
                )
            ]
            if json.dumps(status, sort_keys=True) != before:
                self._bump(pod)
            return
        argv = [
            _expand(str(part), env)
            for part in (container_spec.get("command") or []) + (container_spec.get("args") or [])
        ]
        assert self._folder is not None
        log = self._folder / f"{namespace}_{name}.log"
        cwd = container_spec.get("workingDir")
        if not cwd:
            cwd = str(self._folder / f"{namespace}_{name}.root")
            os.makedirs(cwd, exist_ok=True)
        started = _now()
        status["startTime"] = started
        status["hostIP"] = status["podIP"] = "127.0.0.1"
        status["podIPs"] = [{"ip": "127.0.0.1"}]
        try:
            if not argv:
                raise OSError("no command: the emulator cannot run an image's entrypoint")
            if not os.path.isdir(cwd):
                raise OSError(f"workingDir {cwd!r} does not exist on this machine (the emulator does not create it)")
            with open(log, "ab") as out:
                popen = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            log.write_text(f"StartError: {error}\n")
            status["phase"] = "Failed"
            status["containerStatuses"] = [
                _container_status(
                    container_spec,
                    {
                        "terminated": {
                            "exitCode": 128,
                            "reason": "StartError",
                            "message": f"failed to create containerd task: {error}",
                            "startedAt": started,
                            "finishedAt": started,
                        }
                    },
                    ready=False,
                )
            ]
            self._containers.pop((namespace, name), None)
            self._bump(pod)
            self._account(pod)
            return
        self._containers[(namespace, name)] = _Container(popen=popen, log=log, started_at=started)
        status["phase"] = "Running"
        status["conditions"] = [
            _condition("PodReadyToStartContainers", "True"),
            _condition("Initialized", "True"),
            _condition("Ready", "True"),
            _condition("ContainersReady", "True"),
            _condition("PodScheduled", "True"),
        ]
        status["containerStatuses"] = [
            _container_status(container_spec, {"running": {"startedAt": started}}, ready=True, pid=popen.pid)
        ]
        self._bump(pod)

    def _container_env(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        meta = pod["metadata"]
        env = {**self.image_env, "HOSTNAME": meta["name"]}
        for item in container.get("env") or []:
            key = item["name"]
            if "value" in item:
                env[key] = _expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom") or {}
            if not source:
                env[key] = ""
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self._objects.get(("secrets", meta["namespace"], ref.get("name", "")))
                data = (secret or {}).get("data") or {}
                if secret is None or ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    if secret is None:
                        raise _ConfigError(f'secret "{ref.get("name")}" not found')
                    raise _ConfigError(
                        f"couldn't find key {ref.get('key')} in Secret {meta['namespace']}/{ref['name']}"
                    )
                env[key] = base64.b64decode(data[ref["key"]]).decode()
            elif "fieldRef" in source:
                path = source["fieldRef"].get("fieldPath", "")
                values = {
                    "metadata.name": meta["name"],
                    "metadata.namespace": meta["namespace"],
                    "metadata.uid": meta["uid"],
                }
                if path not in values:
                    raise _ConfigError(f"fieldRef {path!r} is not emulated")
                env[key] = values[path]
            else:
                raise _ConfigError(f"valueFrom {sorted(source)} is not emulated")
        return env

    def read_log(self, namespace: str, name: str, query: Mapping[str, str]) -> tuple[bytes, int, _Container | None]:
        """The pod's log as the API serves it (``tailLines``, ``limitBytes``), how far the file was read, and
        the pod's live container (for ``follow``)."""
        with self._lock:
            pod = self._objects.get(("pods", namespace, name))
            if pod is None:
                raise _not_found(PODS, name)
            container_name = pod["spec"]["containers"][0]["name"]
            if query.get("container") not in (None, container_name):
                raise _bad_request(f"container {query['container']} is not valid for pod {name}")
            if query.get("previous") in ("true", "1"):
                raise _bad_request(f'previous terminated container "{container_name}" in pod "{name}" not found')
            assert self._folder is not None
            log = self._folder / f"{namespace}_{name}.log"
            if not log.exists():
                waiting = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason", "ContainerCreating")
                raise _bad_request(f'container "{container_name}" in pod "{name}" is waiting to start: {reason}')
            container = self._containers.get((namespace, name))
            data = log.read_bytes()
        size = len(data)
        if "tailLines" in query:
            try:
                tail = int(query["tailLines"])
            except ValueError as error:
                raise _bad_request("tailLines: not an integer") from error
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if "limitBytes" in query:
            try:
                data = data[: int(query["limitBytes"])]
            except ValueError as error:
                raise _bad_request("limitBytes: not an integer") from error
        return data, size, container


class _ConfigError(Exception):
    """Why a container cannot be configured yet (a Secret missing): Kubernetes retries it."""


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return VAR_REFERENCE.sub(replace, text)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _condition(kind: str, value: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    now = _now()
    condition: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _container_status(
    container: Mapping[str, Any], state: dict[str, Any], *, ready: bool, pid: int | None = None
) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "containerID": f"emulated://{pid}" if pid else "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
        "lastState": {},
    }


def _terminated_status(
    container: Mapping[str, Any], exit_code: int, reason: str, started: str | None, pid: int | None
) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": _now()}
    return _container_status(container, {"terminated": terminated}, ready=False, pid=pid)


def _make_certificates(folder: Path) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it: (cert, key, ca)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s-emulator-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "server.crt", folder / "server.key", folder / "ca.crt"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return str(paths[0]), str(paths[1]), str(paths[2])


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request to the emulated API server (HTTP/1.1, keep-alive, JSON)."""

    emulator: KubernetesEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: the tests' output is not the place for an access log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as error:
            raise _bad_request(f"the body is not JSON: {error}") from error

    def _serve(self, method: str) -> None:
        try:
            body = self._body()
            if self.headers.get("Authorization") != f"Bearer {self.emulator.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(method, body)
        except ApiError as error:
            self._send_json(error.code, error.body())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, method: str, body: Any) -> None:
        emulator = self.emulator
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        simple = {
            "/version": SERVER_VERSION,
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
            "/apis": {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": "batch",
                        "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
                    }
                ],
            },
        }
        if method == "GET" and path in simple:
            self._send_json(200, simple[path])
            return
        if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
            self._send_text(b"ok")
            return
        match = PATH.match(path)
        resource = RESOURCES.get((match["core"] or match["group"], match["plural"])) if match else None
        if match is None or resource is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        namespace, name, sub = match["ns"], match["name"], match["sub"]
        if sub is not None and sub not in SUBRESOURCES[resource.plural]:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if namespace is None and (name is not None or method != "GET"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if query.get("watch") in ("true", "1"):
            raise _bad_request("watch is not emulated: poll with GET")
        if name is None:
            if method == "GET":
                self._send_json(200, emulator.api_list(resource, namespace, query))
            elif method == "POST" and resource.creatable:
                self._send_json(201, emulator.api_create(resource, namespace, body or {}))
            else:
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({method})",
                )
            return
        if sub == "log":
            if method != "GET":
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            self._serve_log(namespace, name, query)
            return
        if method == "GET":
            self._send_json(200, emulator.api_get(resource, namespace, name))
        elif method in ("PUT", "PATCH"):
            if method == "PATCH":
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if content_type not in MERGE_PATCH_TYPES:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - accepted media types include: {', '.join(sorted(MERGE_PATCH_TYPES))}",
                    )
            self._send_json(
                200, emulator.api_update(resource, namespace, name, body, subresource=sub, patch=method == "PATCH")
            )
        elif method == "DELETE" and sub is None:
            options = dict(body or {})
            for key in ("propagationPolicy", "gracePeriodSeconds"):
                if key in query:
                    options[key] = query[key]
            if "orphanDependents" in options and "propagationPolicy" not in options:
                options["propagationPolicy"] = (
                    "Orphan" if str(options["orphanDependents"]).lower() == "true" else "Background"
                )
            self._send_json(200, emulator.api_delete(resource, namespace, name, options))
        else:
            raise ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
            )

    def _serve_log(self, namespace: str, name: str, query: Mapping[str, str]) -> None:
        data, offset, container = self.emulator.read_log(namespace, name, query)
        if query.get("follow") not in ("true", "1") or container is None:
            self._send_text(data)
            return
        # follow: what is there, then what the process writes, until it ends (chunked transfer).
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(data)
        while True:
            alive = container.alive()
            try:
                with open(container.log, "rb") as log:
                    log.seek(offset)
                    more = log.read()
            except OSError:
                more = b""
            offset += len(more)
            self._chunk(more)
            if not alive or self.emulator._stopping:
                break
            time.sleep(TICK)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


@pytest.fixture(name="k8s_cluster")
def k8s_cluster_fixture() -> Iterator[KubernetesEmulator]:
    """``k8s_cluster``: an emulated cluster of its own for each test (namespace ``pro-solves``, room for
    1000 pods; set ``capacity`` to fill it). Import it as ``k8s_cluster_fixture`` (the name the tests'
    parameters do not shadow), as conftest imports ``ldap_server_fixture``."""
    with KubernetesEmulator() as cluster:
        yield cluster
