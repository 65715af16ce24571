"""Attempts that run on an engine (Slurm, Kubernetes): their tickets, their bundle, their reports.

An attempt handed to an engine reaches the platform only through the attempt API
(:mod:`sessions.attempt_api`) with a ticket scoped to that job and that attempt
(``{"job": id, "attempt": n, "app": name}``): it reads its bundle (the app, the input case, what
to run), its environment's archive and the owner's storage files it asks for, and it writes its
log, progress and end. Every write is fenced like a local worker's (``sessions.jobs._mine``): once
the job is no longer that attempt's, the write changes nothing and the runner hears it is lost.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.accounts.models import ApiTicket
from apps.accounts.services import ticket_issue_for_user, ticket_revoke
from apps.catalog.archives import version_archive
from apps.connections.services import connections_hand_over
from apps.storage import services as storage
from pro_portal.errors import ApplicationError, Conflict, Forbidden, NotFound

from . import jobs, selectors
from .cases import case_read_bytes
from .models import Job, JobState
from .network import grant_of

TICKET_GRACE_SECONDS = 24 * 3600  # an attempt may wait this long in the engine's queue before it starts


class AttemptOver(Conflict):
    """The job is no longer this attempt's: its writes are discarded and its runner stops."""

    code = "attempt_over"


def attempt_ticket_issue(*, job: Job) -> tuple[str, ApiTicket]:
    """A ticket for this attempt of ``job`` alone, valid while it may wait in the engine and run."""
    ttl = int(job.time_limit) + TICKET_GRACE_SECONDS
    scope = {"job": job.pk, "attempt": job.attempt, "app": job.app_version.app.name}
    return ticket_issue_for_user(user=job.owner, ttl_seconds=ttl, scope=scope)


def attempt_tickets_revoke(*, job_id: int) -> None:
    """Revoke every ticket of the job's attempts (its end, its requeue): a late runner is refused."""
    for ticket in ApiTicket.objects.filter(scope__job=job_id, revoked_at__isnull=True):
        ticket_revoke(ticket=ticket)


def attempt_queue(job: Job) -> str:
    """The engine's queue of a job (``PRO_EXECUTOR_QUEUES``): by its app, else its owner's first mapped group."""
    queues = settings.PRO_EXECUTOR_QUEUES
    by_app = queues.get("apps", {})
    if job.app_version.app.name in by_app:
        return str(by_app[job.app_version.app.name])
    by_group = queues.get("groups", {})
    for group in job.owner.groups.order_by("name").values_list("name", flat=True):
        if group in by_group:
            return str(by_group[group])
    return str(queues.get("default", ""))


def attempt_for_credential(credential: Any, job_id: int, attempt: int) -> Job:
    """The job a runner's ticket names, checked: its scope is this job and attempt, and the attempt is current."""
    scope = getattr(credential, "scope", None) or {}
    if scope.get("job") != job_id or scope.get("attempt") != attempt:
        raise Forbidden("This ticket is not this attempt's.", code="permission_denied")
    job = (
        Job.objects.select_related("app_version__app", "app_version__environment", "owner", "input_case")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    if job.state != JobState.RUNNING or job.attempt != attempt:
        raise AttemptOver(f"Attempt {attempt} of job {job_id} is over (the job is {job.state}, attempt {job.attempt}).")
    return job


def attempt_bundle(job: Job) -> bytes:
    """What the runner needs, as a tar: ``app/``, ``input.case``, ``job.json`` and ``attempt.json``."""
    version = job.app_version
    archive = version_archive(version)
    handover = connections_hand_over(app=version.app, actor=job.owner, purpose=f"job {job.pk} attempt {job.attempt}")
    grant = grant_of(version.app).with_targets(handover.targets)
    meta = {
        "job_id": job.pk,
        "attempt": job.attempt,
        "procedure": job.procedure,
        "time_limit": job.time_limit,
        "memory_limit_mb": job.memory_limit_mb,
        "log_size": job.log_size,
        "title": f"{version.app.name} {version.version}, {job.procedure}",
        "environment": _environment_meta(job),
        "network": {"outbound": grant.outbound, "targets": [list(target) for target in grant.targets]},
        "connections": handover.details,
        "secrets": list(handover.secrets),
    }
    spec = {"procedure": job.procedure, "time_limit": job.time_limit, "job": job.pk}
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w") as tar:
        _add(tar, "app.tar", archive)
        _add(tar, "job.json", json.dumps(spec).encode())
        _add(tar, "attempt.json", json.dumps(meta).encode())
        if job.input_case is not None:
            _add(tar, "input.case", case_read_bytes(job.input_case))
    return sink.getvalue()


def _environment_meta(job: Job) -> dict[str, Any] | None:
    version = job.app_version
    if not version.runtime.is_builtin:
        raise ApplicationError(
            f"Runtime {version.runtime.key} runs on local executors only: a remote attempt runs the built-in runtime.",
            code="runtime_not_remote",
        )
    environment = version.environment
    if environment is None:
        return None
    return {"key": environment.key, "sha256": environment.archive_sha256}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = 0o600
    tar.addfile(member, io.BytesIO(data))


def attempt_environment(job: Job) -> Iterator[bytes]:
    """The archive of the job's app environment, in chunks (the runner checks its SHA-256)."""
    environment = job.app_version.environment
    if environment is None:
        raise NotFound("The app has no environment of its own.")
    with default_storage.open(environment.archive_path, "rb") as stream:
        while chunk := stream.read(1024 * 1024):
            yield chunk


def attempt_file(job: Job, path: str) -> tuple[str, IO[bytes]]:
    """(normalized path, stream) of a storage file the job's owner may read, for the running app."""
    normalized = storage.normalize_path(path)
    handle, _ = storage.storage_open(user=job.owner, path=normalized)
    return normalized, handle


def attempt_requests(job: Job) -> dict[str, bool]:
    """Renew the attempt's lease and say what users asked of it."""
    if not jobs.job_renew_lease(job=job):
        return {"lost": True, "cancel": False, "interrupt": False}
    asked = selectors.job_requests(job=job)
    return {
        "lost": False,
        "cancel": bool(asked.get("cancel_requested_at")),
        "interrupt": bool(asked.get("interrupt_requested_at")),
    }


def _result_path(job: Job) -> str:
    return f"jobs/{job.pk}/attempt-{job.attempt}-result.case"


def attempt_result_store(job: Job, stream: IO[bytes]) -> int:
    """Keep the result case an attempt sends before its end; return its size (checked against the limit)."""
    data = stream.read(settings.PRO_MAX_CASE_BYTES + 1)
    if len(data) > settings.PRO_MAX_CASE_BYTES:
        raise ApplicationError(
            f"The result is over the limit of {settings.PRO_MAX_CASE_BYTES} bytes.", code="too_large", status=413
        )
    path = _result_path(job)
    default_storage.delete(path)
    default_storage.save(path, ContentFile(data))
    return len(data)


def attempt_finish(job: Job, *, end: dict[str, Any]) -> bool:
    """Record the attempt's end, with the result it sent first when it succeeded."""
    result = None
    path = _result_path(job)
    if end["state"] == JobState.SUCCEEDED:
        if not default_storage.exists(path):
            raise ApplicationError("Send the result (PUT …/result) before a succeeded end.", code="invalid")
        with default_storage.open(path, "rb") as handle:
            result = handle.read()
    done = jobs.job_finish(
        job=job,
        state=end["state"],
        error=end.get("error", ""),
        solver_status=end.get("solver_status", ""),
        result_blob=result,
        cpu_seconds=end.get("cpu_seconds"),
        peak_memory_mb=end.get("peak_memory_mb"),
    )
    default_storage.delete(path)
    attempt_tickets_revoke(job_id=job.pk)
    return done


def attempt_release(job: Job, *, reason: str, usage: dict[str, Any]) -> str:
    outcome = jobs.job_release(job=job, reason=reason, **usage)
    attempt_tickets_revoke(job_id=job.pk)
    return outcome
