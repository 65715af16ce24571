"""The solve worker of a node: claims jobs and supervises their solve processes.

Each claimed job runs in a sandbox of its own (``solve_runner``, started by
:mod:`sessions.launcher` from the app version's runtime interpreter, with no network, in a
private working folder). A thread of this worker watches it (:class:`sessions.attempt.AttemptWatch`:
log, progress, lease, interrupt, cancel, limits, usage) and records its end through
:class:`LocalChannel`, the job's service functions. A node whose executor is Slurm or Kubernetes
hands its claims to :mod:`sessions.dispatch` instead, and the same watch runs on the engine's node.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import close_old_connections, connection

from apps.catalog.archives import version_archive
from apps.catalog.environments import builtin_python, version_python
from apps.connections.services import Handover, connections_hand_over
from apps.storage import services as storage
from pro_portal import notify
from pro_portal.errors import ApplicationError
from pro_portal.notify import Subscription
from sessions.runtime import package

from . import dispatch, jobs, launcher, selectors
from .attempt import AttemptEnd, AttemptInfo, AttemptUsage, AttemptWatch, FileRefused, launch_solve
from .cases import case_read_bytes
from .dispatch import EngineWatch
from .executors import ExecutorError, executor_for
from .fork_pool import FORK_PREFIX, JOBS, ForkedRunner
from .models import Job, JobState
from .network import grant_of
from .solve_pool import WARM_PREFIX, SolveRunnerPool, WarmRunner

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 0.5  # seconds before the solve worker's loop tries again after it failed

ENGINE_PAUSE_MIN, ENGINE_PAUSE_MAX = 2.0, 60.0  # how long a node waits to claim again when its engine is out of reach


def attempt_info(job: Job) -> AttemptInfo:
    return AttemptInfo(
        job_id=job.pk,
        attempt=job.attempt,
        procedure=job.procedure,
        time_limit=job.time_limit,
        memory_limit_mb=job.memory_limit_mb,
        log_size=job.log_size,
    )


class LocalChannel:
    """An attempt's channel on the node that claimed it: the job's service functions."""

    def __init__(self, job: Job):
        self.job = job

    def append_log(self, offset: int, text: str) -> int:
        return jobs.job_append_log(job=self.job, offset=offset, text=text)

    def report_progress(self, progress: dict[str, Any], points: list[dict[str, Any]]) -> None:
        jobs.job_report_progress(job=self.job, progress=progress, points=points)

    def renew_lease(self) -> bool:
        return jobs.job_renew_lease(job=self.job)

    def requests(self) -> dict[str, bool]:
        asked = selectors.job_requests(job=self.job)
        return {
            "cancel": bool(asked.get("cancel_requested_at")),
            "interrupt": bool(asked.get("interrupt_requested_at")),
        }

    def open_file(self, path: str) -> tuple[str, AbstractContextManager[BinaryIO]]:
        try:
            normalized = storage.normalize_path(path)
            handle, _ = storage.storage_open(user=self.job.owner, path=normalized)
        except ApplicationError as exc:
            raise FileRefused(exc.message) from None
        return normalized, handle

    def finish(self, end: AttemptEnd) -> None:
        jobs.job_finish(
            job=self.job,
            state=end.state,
            error=end.error,
            solver_status=end.solver_status,
            result_blob=end.result,
            log_offset=end.log_offset,
            log_tail=end.log,
            **end.usage,
        )

    def release(self, *, reason: str, usage: AttemptUsage) -> None:
        jobs.job_release(job=self.job, reason=reason, **usage)


class SolveSupervisor(AttemptWatch):
    """Runs one claimed attempt of a job on this node, from its working folder to its recorded end."""

    def __init__(self, job: Job, pool: SolveRunnerPool | None = None):
        workdir = launcher.node_work_dir() / f"job-{job.pk}-{job.attempt}-{secrets.token_hex(4)}"
        super().__init__(attempt_info(job), LocalChannel(job), workdir)
        self.job = job
        self.pool = pool
        self.warm: WarmRunner | ForkedRunner | None = None  # the pool's place this job runs in, if any
        self.handover = Handover()  # the app's granted connections, opened for this attempt

    # ------------------------------------------------------------ lifecycle
    def run(self) -> None:
        # On one of the worker's solve threads, which keep their database connections between
        # jobs (PRO_DB_CONN_MAX_AGE): replaced here when broken or too old.
        close_old_connections()
        try:
            self._prepare()
            self._start()
            self.record(self.watch())
        except Exception as exc:
            logger.exception("Job %s failed in its worker", self.job.pk)
            self.fail(f"The worker could not run the job: {exc}")
        finally:
            if self.process is not None:
                self.process.cleanup(remove_workdir=False)
            elif self.warm is not None:
                self.warm.discard()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def readers_done(self) -> None:
        connection.close()  # the reader thread's own, opened by a file request

    def _prepare(self) -> None:
        version = self.job.app_version
        self.python = version_python(version)
        self.handover = connections_hand_over(app=version.app, actor=self.job.owner, purpose=f"job {self.job.pk}")
        self.secrets = self.handover.secrets
        self.grant = grant_of(version.app).with_targets(self.handover.targets)
        if self.pool is not None:
            preload = tuple(version.environment.preload) if version.environment is not None else ()
            self.warm = self.pool.take(
                self.python,
                memory_limit_mb=self.job.memory_limit_mb,
                networked=bool(self.grant),
                preload=preload,
                forkable=version.environment is None and not self.handover.details,
            )
        if self.warm is not None:
            self.workdir = self.warm.claim(self.workdir)
        else:
            self.workdir.mkdir(parents=True, mode=0o700)
        archive = version_archive(version)
        package.extract_archive(archive, self.workdir / "app")
        if self.job.input_case is not None:
            (self.workdir / "input.case").write_bytes(case_read_bytes(self.job.input_case))
        spec = {"procedure": self.job.procedure, "time_limit": self.job.time_limit, "job": self.job.pk}
        (self.workdir / "job.json").write_text(json.dumps(spec))
        self.log(
            f"--- attempt {self.job.attempt} of job {self.job.pk} on node {self.job.node}: {version.app.name} {version.version}, {self.job.procedure} ---"
        )

    def _start(self) -> None:
        if self.warm is not None and self.warm.wait_ready():
            self.process, control_read = self.warm.process, self.warm.control_read
            self.warm.go()
        else:
            if self.warm is not None:  # it died or hangs while warming up: this job starts its own
                logger.warning("Job %s: its warm sandbox did not start; starting a new one", self.job.pk)
                self.workdir = self._cold_workdir(self.workdir)
                self.warm.discard()
                self.warm = None
            control_read = self._launch()
        self.start_readers(control_read)

    def _cold_workdir(self, filled: Path) -> Path:
        """A working folder of this job's own, with what was put in the warm one."""
        folder = launcher.node_work_dir() / f"job-{self.job.pk}-{self.job.attempt}-{secrets.token_hex(4)}"
        shutil.copytree(filled, folder, ignore=shutil.ignore_patterns("preload.txt"))
        return folder

    def _launch(self) -> int:
        """Start the job's sandbox; return the read end of its control channel."""
        interpreter, site_dirs = self.python
        self.process, control_read = launch_solve(
            self.workdir,
            interpreter=interpreter,
            site_dirs=site_dirs,
            memory_limit_mb=self.job.memory_limit_mb,
            grant=self.grant,
            connections=self.handover.details,
        )
        return control_read


class SolveThreads:
    """The threads that run a node's attempts, one per slot, kept between jobs: a job pays for
    neither a new thread nor a new database connection (each keeps its own, see ``SolveSupervisor.run``)."""

    def __init__(self, size: int):
        self.tasks: queue.SimpleQueue[tuple[Callable[[], None], threading.Event] | None] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._serve, name=f"solve-{n}", daemon=True) for n in range(size)]
        for thread in self.threads:
            thread.start()

    def submit(self, task: Callable[[], None]) -> threading.Event:
        """Run ``task`` on a free thread; the event is set when it has ended."""
        ended = threading.Event()
        self.tasks.put((task, ended))
        return ended

    def _serve(self) -> None:
        while (item := self.tasks.get()) is not None:
            task, ended = item
            try:
                task()
            except Exception:
                logger.exception("A solve thread's task failed")
            finally:
                ended.set()
        connection.close()

    def close(self, timeout: float) -> None:
        """End the threads once their tasks are done (waiting at most ``timeout`` seconds)."""
        for _ in self.threads:
            self.tasks.put(None)
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class SolveWorker:
    """The node's solve loop: claim jobs up to the node's capacity, one supervisor thread each."""

    def __init__(self, node: str, capacity: int, pool_size: int | None = None, executor: str | None = None):
        self.node = node
        self.capacity = capacity
        self.executor_kind = executor or settings.PRO_EXECUTOR
        self.engine: EngineWatch | None = None  # for an engine's executor (Slurm, Kubernetes)
        self.at_engine = 0  # this node's attempts at the engine, as last seen
        self.engine_looked = 0.0
        self.engine_pause = 0.0  # seconds the node waits after its engine could not be reached
        self.engine_resumes = 0.0  # when it claims again
        self.pool_size = settings.PRO_SOLVE_POOL if pool_size is None else pool_size
        self.pool: SolveRunnerPool | None = None
        self.running: dict[int, tuple[SolveSupervisor, threading.Event]] = {}
        self.threads: SolveThreads | None = None
        self.wake: Subscription | None = None
        self.next_due: float | None = None  # the earliest start time of a job queued for later

    def reconcile(self) -> int:
        """Requeue the jobs an earlier run of this node's worker left running (it died); return how many."""
        outcome = jobs.jobs_requeue_from_node(
            node=self.node, reason=f"The worker on node {self.node} stopped while running the job"
        )
        return sum(len(ids) for ids in outcome.values())

    def reap(self) -> None:
        for job_id, (_, ended) in list(self.running.items()):
            if ended.is_set():
                del self.running[job_id]

    def step(self) -> Job | None:
        """Reap finished supervisors and start at most one new job; return it."""
        if self.engine is not None:
            return self._dispatch_step()
        self.reap()
        if len(self.running) >= self.capacity:
            return None
        job = jobs.job_claim_next(node=self.node, executor="local")
        if job is None:
            return None
        supervisor = SolveSupervisor(job, self.pool)
        if self.threads is None:
            self.threads = SolveThreads(self.capacity)
        self.running[job.pk] = (supervisor, self.threads.submit(lambda: self._supervise(supervisor)))
        return job

    def _dispatch_step(self) -> Job | None:
        """Look at the engine when it is time; hand at most one new claim to it."""
        assert self.engine is not None
        if time.monotonic() - self.engine_looked >= settings.PRO_EXECUTOR_POLL_SECONDS:
            self.engine_looked = time.monotonic()
            self.at_engine = self.engine.look()
        if self.at_engine >= settings.PRO_EXECUTOR_SLOTS or time.monotonic() < self.engine_resumes:
            return None
        job = jobs.job_claim_next(node=self.node, executor=self.executor_kind)
        if job is None:
            return None
        try:
            if dispatch.attempt_dispatch(job, self.engine.executor):
                self.at_engine += 1
        except ExecutorError as exc:
            self.engine_pause = min(ENGINE_PAUSE_MAX, max(ENGINE_PAUSE_MIN, self.engine_pause * 2))
            self.engine_resumes = time.monotonic() + self.engine_pause
            logger.error(
                "%s cannot be reached; claiming again in %.0f s: %s", self.executor_kind, self.engine_pause, exc
            )
            return None
        self.engine_pause = 0.0
        return job

    def _supervise(self, supervisor: SolveSupervisor) -> None:
        try:
            supervisor.run()
        finally:
            if self.wake is not None:
                self.wake.poke()  # a slot is free: look at the queue now

    def _idle(self, stopping: threading.Event) -> None:
        """Wait for a job to be queued (a notification), a free slot, or the safety poll."""
        timeout = settings.PRO_QUEUE_SAFETY_POLL_SECONDS
        if self.engine is not None:
            timeout = min(timeout, settings.PRO_EXECUTOR_POLL_SECONDS)
        if self.next_due is not None:
            timeout = max(0.0, min(timeout, self.next_due - time.time()))
        assert self.wake is not None
        for message in self.wake.idle(stopping, timeout):
            due = message.get("not_before")
            if message.get("state") == JobState.QUEUED and isinstance(due, (int, float)) and due > time.time():
                self.next_due = min(due, self.next_due or due)
        if self.next_due is not None and self.next_due <= time.time():
            self.next_due = None

    def run(self, stopping: threading.Event) -> None:
        # A job that starts (or reports progress) never makes another startable: only a queued
        # one, or one whose end frees its owner's quota, is worth a look at the queue.
        self.wake = notify.hub().subscribe("jobs", wants=lambda message: message.get("state") != JobState.RUNNING)
        executor = executor_for(self.executor_kind)
        if executor is not None:
            self.engine = EngineWatch(self.node, executor)  # app code runs at the engine, not here
        else:
            self._prepare_local()
        while not stopping.is_set():
            try:
                started = self.step()
            except Exception:
                # e.g. SQLite's "database is locked" under a burst of writes: the message that
                # woke the worker is spent, so it looks again soon, not at the safety poll.
                logger.exception("The solve worker's loop failed; trying again")
                close_old_connections()
                stopping.wait(RETRY_AFTER_FAILURE)
                continue
            if started is None:
                self._idle(stopping)
        self.wake.close()
        self.shutdown()
        connection.close()

    def _prepare_local(self) -> None:
        """Check the sandbox, clear what an earlier run of this node left, start the warm pool."""
        launcher.mode()  # refuses to run app code where it cannot be sandboxed
        launcher.node_work_dir().mkdir(parents=True, exist_ok=True)
        launcher.remove_leftovers(WARM_PREFIX)
        forked = len(list(launcher.node_work_dir().glob(f"{FORK_PREFIX}-*/{JOBS}/job-*")))
        launcher.remove_leftovers(FORK_PREFIX)
        removed = launcher.remove_leftovers("job") + forked
        if removed:
            logger.info("Removed %s working folders left by an earlier worker on %s", removed, self.node)
        requeued = self.reconcile()
        if requeued:
            logger.info("Requeued %s jobs left running by an earlier worker on %s", requeued, self.node)
        if self.pool_size > 0:
            self.pool = SolveRunnerPool(self.pool_size, builtin_python())
            self.pool.start()

    def shutdown(self) -> None:
        """Stop every running solve and put its job back in the queue."""
        for supervisor, _ in self.running.values():
            supervisor.shutdown.set()
        deadline = time.monotonic() + launcher.TERMINATE_GRACE + 5
        for _, ended in self.running.values():
            ended.wait(max(0.0, deadline - time.monotonic()))
        self.running.clear()
        if self.threads is not None:
            self.threads.close(max(0.0, deadline - time.monotonic()))
            self.threads = None
        if self.pool is not None:
            self.pool.shutdown()
