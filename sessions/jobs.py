"""Solve jobs: submitting, claiming, following, stopping and finishing them.

Every state change is a conditional update on the job row that names the state (and, for a
running job, the attempt) it expects, so that a duplicate delivery, a late worker or a
cancel racing a finish each change the row at most once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.catalog import selectors as catalog
from apps.catalog.models import AppVersion
from pro_portal.errors import ApplicationError, Conflict, NotFound
from sessions.runtime.case import case_from_data, case_to_bytes

from .cases import case_get_for_user, case_store
from .models import FINISHED_STATES, Case, CaseKind, Job, JobLogChunk, JobState

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- reads


def jobs_for_user(user: AbstractUser) -> QuerySet[Job]:
    jobs = Job.objects.select_related("owner", "app_version__app")
    return jobs if user.is_superuser else jobs.filter(owner=user)


def job_get_for_user(user: AbstractUser, job_id: Any) -> Job:
    try:
        return jobs_for_user(user).get(pk=int(job_id))
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no job {job_id} you have access to.") from None


def job_log(job: Job, offset: int = 0) -> tuple[str, int]:
    """The log from byte ``offset`` on, and the offset to ask for next."""
    offset = max(0, offset)
    if job.log_path:
        with default_storage.open(job.log_path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()
        return text.decode("utf-8", "replace"), offset + len(text)
    chunks = list(JobLogChunk.objects.filter(job=job, offset__gte=offset - 65536).values_list("offset", "text"))
    data = b"".join(text.encode() for _, text in chunks)
    base = chunks[0][0] if chunks else offset
    text = data[max(0, offset - base) :]
    return text.decode("utf-8", "replace"), max(offset, base + len(data))


# ---------------------------------------------------------------- submitting


def _interface_input(version: AppVersion, values: dict[str, Any]) -> bytes:
    """Check input values against the app's declared identifiers and encode them as a case.

    The web process does not import app code, so it builds the data from the manifest's
    interface with the SDK's own checks (a stand-in app declared from the interface).
    """
    from sessions.runtime.interface import app_from_interface

    app = app_from_interface(version.manifest)
    data = app.new_data()
    try:
        data.update_from_dict(values)
    except (ValueError, KeyError) as exc:
        raise ApplicationError(f"The input is not valid: {exc}", code="bad_input") from None
    return case_to_bytes(case_from_data(data, meta={"app": version.app.name}))


def job_submit(
    *,
    user: AbstractUser,
    app_name: str,
    procedure: str,
    version: str | None = None,
    input_values: dict[str, Any] | None = None,
    input_case_id: Any = None,
    priority: int = 0,
    time_limit: float | None = None,
    memory_limit_mb: int | None = None,
    not_before: datetime | None = None,
) -> Job:
    """Queue a solve of ``procedure`` of an app version the user may run; return the job."""
    found = catalog.version_resolve_for_user(user, app_name, version or "latest")
    if found.verification_state != "verified":
        raise Conflict(f"Version {found.version} of {app_name!r} is not verified yet.", code="not_verified")
    procedures = {p["name"]: p for p in found.manifest.get("interface", {}).get("procedures", [])}
    if procedures.get(procedure, {}).get("kind") != "solve":
        names = ", ".join(n for n, p in procedures.items() if p.get("kind") == "solve") or "none"
        raise ApplicationError(
            f"{app_name!r} has no solve procedure {procedure!r} (it has: {names}).", code="unknown_procedure"
        )
    if input_values is not None and input_case_id is not None:
        raise ApplicationError("Give the input as values or as a case, not both.", code="invalid")
    if input_case_id is not None:
        input_case = case_get_for_user(user, input_case_id)
        if input_case.app_id != found.app_id:
            raise ApplicationError(f"Case {input_case.id} belongs to another app.", code="bad_input")
    else:
        blob = _interface_input(found, input_values or {})
        input_case = case_store(
            owner=user, app=found.app, app_version=found, blob=blob, kind=CaseKind.INPUT, name=f"input of {procedure}"
        )
    limit = (
        time_limit
        or procedures[procedure].get("time_limit")
        or found.manifest.get("time_limit")
        or settings.PRO_JOB_TIME_LIMIT
    )
    job = Job.objects.create(
        owner=user,
        app_version=found,
        procedure=procedure,
        priority=priority,
        time_limit=float(limit),
        memory_limit_mb=memory_limit_mb or settings.PRO_JOB_MEMORY_MB,
        input_case=input_case,
        not_before=not_before or timezone.now(),
        max_attempts=settings.PRO_JOB_MAX_ATTEMPTS,
    )
    logger.info("%s submitted job %s: %s %s %s", user.username, job.pk, app_name, found.version, procedure)
    return job


# ---------------------------------------------------------------- claiming and running


def job_claim_next(*, node: str) -> Job | None:
    """Claim the best runnable job for ``node``: highest priority, then first in, first out."""
    now = timezone.now()
    runnable = Job.objects.filter(state=JobState.QUEUED, not_before__lte=now, cancel_requested_at__isnull=True)
    for job_id in runnable.order_by("-priority", "created_at", "id").values_list("id", flat=True)[:10]:
        claimed = Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(
            state=JobState.RUNNING,
            node=node,
            attempt=F("attempt") + 1,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS),
            progress={},
        )
        if claimed:
            return Job.objects.select_related("app_version__app", "app_version__runtime", "owner", "input_case").get(
                pk=job_id
            )
    return None


def _mine(job: Job) -> QuerySet[Job]:
    """The row of this attempt of the job, as long as it is still running on this node."""
    return Job.objects.filter(pk=job.pk, state=JobState.RUNNING, attempt=job.attempt, node=job.node)


def job_renew_lease(*, job: Job) -> bool:
    """Extend the lease; False means the job is no longer this worker's (requeued, cancelled)."""
    expires = timezone.now() + timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS)
    return _mine(job).update(lease_expires_at=expires) == 1


def job_requests(*, job: Job) -> dict[str, Any]:
    """What users asked of a running job since it started: interrupt and cancel times."""
    row = Job.objects.filter(pk=job.pk).values("interrupt_requested_at", "cancel_requested_at", "state").first()
    return row or {}


def job_report_progress(*, job: Job, progress: dict[str, Any], points: list[dict[str, Any]] | None = None) -> None:
    changes: dict[str, Any] = {"progress": progress}
    if points is not None:
        changes["progress_points"] = points
    _mine(job).update(**changes)


def job_append_log(*, job: Job, offset: int, text: str) -> int:
    """Append a piece of log at ``offset``; return the next offset."""
    size = len(text.encode())
    with transaction.atomic():
        if _mine(job).update(log_size=offset + size) != 1:
            return offset
        JobLogChunk.objects.create(job=job, attempt=job.attempt, offset=offset, text=text)
    return offset + size


def _archive_log(job: Job) -> tuple[str, int]:
    """Move the log pieces to one file in storage."""
    data = "".join(JobLogChunk.objects.filter(job=job).order_by("offset").values_list("text", flat=True)).encode()
    path = default_storage.save(f"jobs/{job.pk}/log.txt", ContentFile(data))
    return path, len(data)


def job_finish(
    *, job: Job, state: str, error: str = "", solver_status: str = "", result_blob: bytes | None = None
) -> bool:
    """Record the end of this attempt; False when the job was no longer this worker's.

    A late worker (its job requeued or cancelled meanwhile) changes nothing: its result is
    discarded and logged.
    """
    if not _mine(job).exists():
        logger.warning("Discarding the late end of job %s attempt %s on %s", job.pk, job.attempt, job.node)
        return False
    result = None
    if result_blob is not None:
        result = case_store(
            owner=job.owner,
            app=job.app_version.app,
            app_version=job.app_version,
            blob=result_blob,
            kind=CaseKind.RESULT,
            name=f"result of job {job.pk}",
        )
    log_path, log_size = _archive_log(job)
    with transaction.atomic():
        done = _mine(job).update(
            state=state,
            finished_at=timezone.now(),
            error_message=error[:10000],
            solver_status=solver_status[:200],
            result_case=result,
            lease_expires_at=None,
            log_path=log_path,
            log_size=log_size,
        )
        if done:
            JobLogChunk.objects.filter(job=job).delete()
    if not done:
        default_storage.delete(log_path)
        if result is not None:
            default_storage.delete(result.storage_path)
            result.delete()
        logger.warning("Discarding the late end of job %s attempt %s on %s", job.pk, job.attempt, job.node)
    return bool(done)


def job_release(*, job: Job, reason: str) -> str:
    """Put a job whose attempt could not complete back in the queue, or fail it after the last attempt."""
    if job.attempt >= job.max_attempts:
        job_finish(
            job=job, state=JobState.FAILED, error=f"{reason}; the job was attempted {job.attempt} times, the limit."
        )
        return JobState.FAILED
    _mine(job).update(state=JobState.QUEUED, node="", lease_expires_at=None, error_message=reason)
    return JobState.QUEUED


def jobs_requeue_from_node(*, node: str, reason: str) -> dict[str, list[int]]:
    """Requeue the running jobs of a node that is gone (or fail those on their last attempt).

    Each job's log says what happened to the attempt; the node's late end of it, should it
    come back, changes nothing (see ``job_finish``).
    """
    outcome: dict[str, list[int]] = {JobState.QUEUED: [], JobState.FAILED: []}
    for job in Job.objects.filter(state=JobState.RUNNING, node=node).select_related("app_version__app", "owner"):
        try:
            with transaction.atomic():  # one job apart from the others
                job_append_log(job=job, offset=job.log_size, text=f"--- attempt {job.attempt}: {reason} ---\n")
                outcome[job_release(job=job, reason=reason)].append(job.pk)
        except OperationalError as exc:
            # Its row is locked by a write its node began and has not finished (the node froze
            # mid-write): the next round tries again, the other jobs go on now.
            logger.warning("Job %s of node %s is locked (%s); it is requeued later", job.pk, node, exc)
    for state, ids in outcome.items():
        if ids:
            logger.warning("Jobs %s of node %s: %s", ids, node, "requeued" if state == JobState.QUEUED else "failed")
    return outcome


def jobs_with_expired_lease(*, now: datetime | None = None) -> list[Job]:
    """Running jobs whose worker stopped renewing their lease a whole lease period ago."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS)
    return list(
        Job.objects.filter(state=JobState.RUNNING, lease_expires_at__lt=cutoff).select_related(
            "app_version__app", "owner"
        )
    )


def job_requeue_expired(*, job: Job) -> str:
    reason = f"The worker on node {job.node} stopped renewing its lease on the job"
    job_append_log(job=job, offset=job.log_size, text=f"--- attempt {job.attempt}: {reason} ---\n")
    return job_release(job=job, reason=reason)


# ---------------------------------------------------------------- stopping


def job_cancel(*, user: AbstractUser, job: Job) -> Job:
    """Cancel: a queued job never starts; a running one is stopped by its worker within seconds."""
    if job.is_finished:
        raise Conflict(f"Job {job.pk} has already ended ({job.state}).", code="job_finished")
    now = timezone.now()
    Job.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
        state=JobState.CANCELLED,
        cancel_requested_at=now,
        finished_at=now,
        error_message=f"Cancelled by {user.username}.",
    )
    Job.objects.filter(pk=job.pk, state=JobState.RUNNING, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now
    )
    job.refresh_from_db()
    return job


def job_interrupt(*, user: AbstractUser, job: Job) -> Job:
    """Ask the solver to stop and keep the best solution found so far as the result."""
    if job.state != JobState.RUNNING:
        raise Conflict(f"Only a running job can be interrupted; job {job.pk} is {job.state}.", code="job_not_running")
    Job.objects.filter(pk=job.pk, interrupt_requested_at__isnull=True).update(interrupt_requested_at=timezone.now())
    job.refresh_from_db()
    return job


# ---------------------------------------------------------------- housekeeping


def jobs_remove_expired(*, now: datetime | None = None) -> int:
    """Remove finished jobs older than the retention, with their cases and logs."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PRO_JOB_RETENTION_DAYS)
    expired = Job.objects.filter(state__in=FINISHED_STATES, finished_at__lt=cutoff)
    paths, case_ids = [], set()
    for job in expired.select_related("input_case", "result_case"):
        paths.append(job.log_path)
        for case in (job.input_case, job.result_case):
            if case is not None and case.kind != CaseKind.SAVED:
                case_ids.add(case.pk)
                paths.append(case.storage_path)
    count = expired.count()
    with transaction.atomic():
        expired.delete()
        Case.objects.filter(pk__in=case_ids).delete()
    for path in paths:
        if path:
            default_storage.delete(path)
    if count:
        logger.info("Removed %s jobs finished before %s", count, cutoff)
    return count


def version_jobs_in_use(version: AppVersion) -> int:
    return Job.objects.filter(app_version=version).filter(Q(state=JobState.QUEUED) | Q(state=JobState.RUNNING)).count()
