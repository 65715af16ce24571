"""A solve node whose executor is an engine (Slurm, Kubernetes): it submits its claims and watches them.

Each claimed attempt becomes exactly one engine job (:mod:`sessions.executors`), whose id is
recorded on the job. The runner in it (:mod:`sessions.remote_runner`) reports through the attempt
API; this node, every ``PRO_EXECUTOR_POLL_SECONDS``, looks at the engine's states of its attempts:

- queued at the engine: the job's lease is renewed and its progress says where it waits;
- cancelled by a user: the engine's job is cancelled (deleted) and the job ends as cancelled (its
  runner, which hears of the cancel within a second, may have ended it so first);
- over at the engine without its runner having recorded an end (a node failure, a preemption,
  an eviction, the engine's time limit): the platform requeues the job as a new attempt, or
  fails it after its last; a late report of the old attempt changes nothing.
"""

from __future__ import annotations

import logging

from django.conf import settings

from . import attempts, jobs, selectors
from .attempt import INTERRUPT_GRACE
from .executors import EngineJob, EngineState, Executor, ExecutorError, Submission
from .models import Job, JobState

logger = logging.getLogger(__name__)

ENGINE_GRACE_SECONDS = 120  # the engine's limits over the job's: the runner's start and its last reports
RUNNER_MEMORY_MB = 512  # the runner beside the job's sandbox, in the engine's memory limit


def runner_environment(job: Job, ticket: str, kind: str) -> dict[str, str]:
    """What the runner of an attempt is told: where the API is, its ticket, and the platform's limits."""
    return {
        "PRO_API_URL": settings.PRO_EXECUTOR_API_URL or settings.PRO_PUBLIC_URL or settings.PRO_INTERNAL_API_URL,
        "PRO_JOB_TICKET": ticket,
        "PRO_JOB_ID": str(job.pk),
        "PRO_JOB_ATTEMPT": str(job.attempt),
        "PRO_EXECUTOR": kind,
        "PRO_SANDBOX": settings.PRO_SANDBOX,
        "PRO_SANDBOX_MAX_PROCESSES": str(settings.PRO_SANDBOX_MAX_PROCESSES),
        "PRO_SANDBOX_TMP_MB": str(settings.PRO_SANDBOX_TMP_MB),
        "PRO_JOB_LEASE_SECONDS": str(settings.PRO_JOB_LEASE_SECONDS),
        "PRO_JOB_LOG_MAX_BYTES": str(settings.PRO_JOB_LOG_MAX_BYTES),
        "PRO_MAX_CASE_BYTES": str(settings.PRO_MAX_CASE_BYTES),
        "PRO_PLATFORM_DATABASE_HOST": str(settings.DATABASES["default"].get("HOST") or ""),
        "PRO_PLATFORM_REDIS_URL": getattr(settings, "REDIS_URL", "") or "",
    }


def attempt_submission(job: Job, ticket: str, executor: Executor) -> Submission:
    command = (
        [settings.PRO_SLURM_PYTHON, "-m", "sessions.remote_runner"]
        if executor.kind == "slurm"
        else list(settings.PRO_K8S_RUNNER_COMMAND)
    )
    return Submission(
        name=f"pro-job-{job.pk}-{job.attempt}",
        command=command,
        environment=runner_environment(job, ticket, executor.kind),
        queue=attempts.attempt_queue(job),
        time_limit_seconds=int(job.time_limit + INTERRUPT_GRACE + ENGINE_GRACE_SECONDS),
        memory_mb=job.memory_limit_mb + RUNNER_MEMORY_MB,
        labels={
            "pro-portal/job": str(job.pk),
            "pro-portal/attempt": str(job.attempt),
            "pro-portal/node": _label(job.node),
            "pro-portal/app": _label(job.app_version.app.name),
        },
    )


def _label(value: str) -> str:
    """A Kubernetes label value: 63 characters of letters, digits, '-', '_' and '.'."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in value)[:63]
    return cleaned.strip("-_.") or "x"


def attempt_dispatch(job: Job, executor: Executor) -> bool:
    """Hand a claimed attempt to the engine. Refused, the attempt counts and the job goes back to the
    queue (or fails after its last); an engine out of reach gives the claim back uncounted and
    raises :class:`ExecutorError` (the node then waits before it claims again)."""
    ticket, _ = attempts.attempt_ticket_issue(job=job)
    try:
        external_id = executor.submit(attempt_submission(job, ticket, executor))
    except Exception as exc:  # whatever went wrong, the job must not stay claimed and unrun
        logger.warning("Job %s attempt %s: %s refused it: %s", job.pk, job.attempt, executor.kind, exc)
        attempts.attempt_tickets_revoke(job_id=job.pk)
        if isinstance(exc, ExecutorError) and exc.unreachable:
            jobs.job_unclaim(job=job, reason=f"{executor.kind} cannot be reached: {exc}")
            raise
        jobs.job_requeue_lost(job=job, reason=f"{executor.kind} refused the attempt: {exc}")
        return False
    jobs.job_append_log(
        job=job,
        offset=job.log_size,
        text=f"--- attempt {job.attempt} of job {job.pk}: submitted to {executor.kind} as {external_id} ---\n",
    )
    if not jobs.job_record_external(job=job, external_id=external_id):
        executor.cancel(external_id)  # cancelled meanwhile
        return False
    return True


class EngineWatch:
    """What a dispatching node remembers between two looks at its engine (what it last told users)."""

    def __init__(self, node: str, executor: Executor):
        self.node = node
        self.executor = executor
        self.shown: dict[int, str] = {}

    def running(self) -> list[Job]:
        return list(selectors.jobs_running_on(node=self.node, executor=self.executor.kind))

    def look(self) -> int:
        """One look at the engine's states of this node's attempts; return how many are at the engine."""
        running = [job for job in self.running() if job.external_id]
        try:
            states = self.executor.states([job.external_id for job in running])
        except ExecutorError as exc:  # their runners renew the leases of those running meanwhile
            logger.warning("%s cannot be asked about this node's attempts: %s", self.executor.kind, exc)
            return len(running)
        for job in running:
            try:
                self._settle(job, states.get(job.external_id, EngineJob(EngineState.MISSING)))
            except ExecutorError as exc:
                logger.warning("Job %s: %s", job.pk, exc)
        self.shown = {pk: text for pk, text in self.shown.items() if pk in {job.pk for job in running}}
        return len(running)

    def _settle(self, job: Job, engine: EngineJob) -> None:
        kind = self.executor.kind
        if job.cancel_requested_at is not None:
            self._cancel(job, engine)
            return
        if engine.state in (EngineState.PENDING, EngineState.RUNNING):
            jobs.job_renew_lease(job=job)
            if engine.state == EngineState.PENDING and self.shown.get(job.pk) != engine.detail:
                self.shown[job.pk] = engine.detail
                message = f"Queued on {kind} as {job.external_id}: {engine.detail}"
                jobs.job_report_progress(job=job, progress={"message": message})
            return
        current = Job.objects.filter(pk=job.pk).values_list("state", "attempt").first()
        if current != (JobState.RUNNING, job.attempt):
            return  # its runner recorded its end meanwhile
        what = engine.detail or engine.state
        jobs.job_requeue_lost(
            job=job, reason=f"Its {kind} job {job.external_id} ended ({what}) before the attempt reported its end"
        )
        attempts.attempt_tickets_revoke(job_id=job.pk)

    def _cancel(self, job: Job, engine: EngineJob) -> None:
        """End a cancelled attempt: its engine's job is cancelled (its runner, hearing it too, may be first)."""
        if engine.state in (EngineState.PENDING, EngineState.RUNNING):
            self.executor.cancel(job.external_id)
        jobs.job_finish(
            job=job, state=JobState.CANCELLED, error=f"Cancelled; its {self.executor.kind} job was cancelled."
        )
        attempts.attempt_tickets_revoke(job_id=job.pk)
