"""The solve worker of a node: claims jobs and supervises their solve processes.

Each claimed job runs in a sandbox of its own (``solve_runner``, started by
:mod:`sessions.launcher` from the app version's runtime interpreter, with no network, in a
private working folder). A thread of this worker watches it: it streams the log and progress into the admin database, renews the job's lease (from
this process, so a solver that holds its CPU cannot starve it), asks the solver to stop on
interrupt or at the time limit, kills the whole sandbox on cancel or when a limit (memory,
processes) is exceeded, and records the result. Timeouts, all in seconds:

- ``PRO_JOB_LEASE_SECONDS``: how long a claim holds without renewal (renewed every third of it);
- ``INTERRUPT_GRACE``: after an interrupt at the time limit, how long the solver may take to
  return its incumbent before it is killed;
- ``launcher.TERMINATE_GRACE``: between SIGTERM and SIGKILL of a sandbox (a cancel ends within
  it plus one watch tick, well under 5 seconds).

The watch also measures what the sandbox uses (``SandboxedProcess.usage``: every process of its
PID namespace, its memory from its cgroup where there is one): right after the start, at every
tick, and once more when the solve ends or just before this worker stops it. The job keeps the
most memory seen at once and the CPU seconds (the most seen: the count falls when a process of the
sandbox exits). A solve shorter than a tick is measured at its start and at its end; once its
processes are gone ``/proc`` tells nothing more, so what it used between is not seen.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection

from apps.catalog.environments import builtin_python, version_python
from apps.catalog.keys import platform_private_key
from apps.connections.services import Handover, connections_hand_over, masked
from apps.storage import services as storage
from pro_portal import notify
from pro_portal.errors import ApplicationError
from pro_portal.notify import Subscription
from sessions.runtime import package

from . import jobs, launcher, selectors
from .cases import case_read_bytes
from .launcher import workfiles
from .models import Job, JobState
from .network import grant_of
from .solve_pool import WARM_PREFIX, SolveRunnerPool, WarmRunner

logger = logging.getLogger(__name__)

WATCH_TICK = 0.2
FLUSH_EVERY = 0.5
INTERRUPT_GRACE = 30.0
LOG_BUFFER_BYTES = 4 * 1024 * 1024  # what the worker holds of a job's log between two flushes
LOG_CHUNK_BYTES = 64 * 1024  # the longest line read at once; a longer one arrives in pieces
OUTCOME_BYTES = 1024 * 1024  # what the solve process may say about its end


class EndReason(StrEnum):
    """Why the watch of a solve process ended: it exited, or this worker stopped it."""

    EXITED = "exited"  # by itself: its exit code and outcome say how it went
    LOST = "lost"  # the job is no longer this worker's (requeued or cancelled meanwhile)
    SHUTDOWN = "shutdown"  # the node is shutting down: the job goes back to the queue
    CANCELLED = "cancelled"
    MEMORY = "memory"  # over the job's memory limit
    PROCESSES = "processes"  # over the sandbox's limit of processes
    TIME_LIMIT_KILL = "time_limit_kill"  # still running INTERRUPT_GRACE after its interrupt


class StopReason(StrEnum):
    """Why the solver was asked to stop and keep its best solution as the result."""

    INTERRUPTED = "interrupted"  # a user asked
    TIME_LIMIT = "time_limit"  # the job's time limit was reached


class AttemptUsage(TypedDict):
    """What one attempt's sandbox used, as ``job_finish`` and ``job_release`` take it."""

    cpu_seconds: float
    peak_memory_mb: float


class SolveSupervisor:
    """Runs one claimed attempt of a job, from its working folder to its recorded end."""

    def __init__(self, job: Job, pool: SolveRunnerPool | None = None):
        self.job = job
        self.pool = pool
        self.warm: WarmRunner | None = None  # the pool's started sandbox this job runs in, if any
        self.workdir = launcher.node_work_dir() / f"job-{job.pk}-{job.attempt}-{secrets.token_hex(4)}"
        self.process: launcher.SandboxedProcess | None = None
        self.log_lines: list[str] = []
        self.lock = threading.Lock()
        self.progress: dict[str, Any] = {}
        self.points: list[dict[str, Any]] = []
        self.progress_dirty = False
        self.log_offset = job.log_size
        self.started = time.monotonic()
        self.stop_reason: StopReason | None = None
        self.shutdown = threading.Event()
        self.readers: list[threading.Thread] = []
        self.buffered = self.dropped = 0
        self.head_lines: list[str] = []  # the start of the log, which the job's log keeps whole
        self.head_left = max(0, settings.PRO_JOB_LOG_MAX_BYTES // 2 - job.log_size)
        self.peak_memory_mb = 0.0  # what this attempt's sandbox used, as sampled (see ``_sample``)
        self.cpu_seconds = 0.0
        self.handover = Handover()  # the app's granted connections, opened for this attempt

    # ------------------------------------------------------------ lifecycle
    def run(self) -> None:
        try:
            self._prepare()
            self._start()
            outcome = self._watch()
            self._record(outcome)
        except Exception as exc:
            logger.exception("Job %s failed in its worker", self.job.pk)
            if self.process is not None and self.process.poll() is None:
                self._sample()
                self.process.stop()
            self._flush_log()
            jobs.job_finish(
                job=self.job, state=JobState.FAILED, error=f"The worker could not run the job: {exc}", **self._usage()
            )
        finally:
            if self.process is not None:
                self.process.cleanup(remove_workdir=False)
            elif self.warm is not None:
                self.warm.discard()
            shutil.rmtree(self.workdir, ignore_errors=True)
            connection.close()

    def _prepare(self) -> None:
        version = self.job.app_version
        self.python = version_python(version)
        self.handover = connections_hand_over(app=version.app, actor=self.job.owner, purpose=f"job {self.job.pk}")
        self.grant = grant_of(version.app).with_targets(self.handover.targets)
        if self.pool is not None:
            preload = tuple(version.environment.preload) if version.environment is not None else ()
            self.warm = self.pool.take(
                self.python, memory_limit_mb=self.job.memory_limit_mb, networked=bool(self.grant), preload=preload
            )
        if self.warm is not None:
            self.warm.claim(self.workdir)
        else:
            self.workdir.mkdir(parents=True, mode=0o700)
        with default_storage.open(version.package_path, "rb") as handle:
            archive = package.decrypt(handle.read(), platform_private_key())
        package.extract_archive(archive, self.workdir / "app")
        if self.job.input_case is not None:
            (self.workdir / "input.case").write_bytes(case_read_bytes(self.job.input_case))
        spec = {"procedure": self.job.procedure, "time_limit": self.job.time_limit, "job": self.job.pk}
        (self.workdir / "job.json").write_text(json.dumps(spec))
        self._log(
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
        self.readers = [
            threading.Thread(target=self._read_log, daemon=True),
            threading.Thread(target=self._read_control, args=(control_read,), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self._sample()

    def _cold_workdir(self, filled: Path) -> Path:
        """A working folder of this job's own, with what was put in the warm one."""
        folder = launcher.node_work_dir() / f"job-{self.job.pk}-{self.job.attempt}-{secrets.token_hex(4)}"
        shutil.copytree(filled, folder, ignore=shutil.ignore_patterns("preload.txt"))
        return folder

    def _launch(self) -> int:
        """Start the job's sandbox; return the read end of its control channel."""
        control_read, control_write = os.pipe()
        interpreter, site_dirs = self.python
        spec = launcher.LaunchSpec(
            name=self.workdir.name,
            interpreter=interpreter,
            site_dirs=site_dirs,
            module="sessions.runtime.solve_runner",
            args=[launcher.work_path(self.workdir)],
            workdir=self.workdir,
            env={"PRO_CONTROL_FD": str(control_write)},
            memory_limit_mb=self.job.memory_limit_mb,
            network=self.grant,
            connections=self.handover.details,
            pass_fds=(control_write,),
            stdin=True,
        )
        try:
            self.process = launcher.launch(spec)
        except BaseException:
            os.close(control_read)
            raise
        finally:
            os.close(control_write)
        return control_read

    # ------------------------------------------------------------ channels
    def _log(self, line: str, partial: bool = False) -> None:
        """Buffer a log line; past ``LOG_BUFFER_BYTES`` the oldest buffered lines after the log's head are dropped."""
        text = line if partial or line.endswith("\n") else line + "\n"
        text = masked(text, self.handover.secrets)
        with self.lock:
            if self.head_left > 0:
                self.head_lines.append(text)
                self.head_left -= len(text)
                return
            self.log_lines.append(text)
            self.buffered += len(text)
            while self.buffered > LOG_BUFFER_BYTES and len(self.log_lines) > 1:
                dropped = self.log_lines.pop(0)
                self.buffered -= len(dropped)
                self.dropped += len(dropped)

    def _read_log(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads
        for raw in iter(lambda: self.process.stdout.readline(LOG_CHUNK_BYTES), b""):
            self._log(decoder.decode(raw), partial=not raw.endswith(b"\n"))

    def _read_control(self, fd: int) -> None:
        close_old_connections()
        try:
            with os.fdopen(fd, "r") as control:
                for line in control:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    if message.get("type") == "progress":
                        self._on_progress(message)
                    elif message.get("type") == "fetch":
                        self._on_fetch(message)
        finally:
            connection.close()

    def _on_progress(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.progress = {k: message.get(k) for k in ("fraction", "message", "objective", "bound")}
            if message.get("objective") is not None or message.get("bound") is not None:
                point = {
                    "t": round(time.monotonic() - self.started, 3),
                    "objective": message.get("objective"),
                    "bound": message.get("bound"),
                }
                self.points.append(point)
                if len(self.points) > 2000:  # keep the chart's data bounded for hour-long solves
                    self.points = self.points[::2]
            self.progress_dirty = True

    def _on_fetch(self, message: dict[str, Any]) -> None:
        """Copy a storage file the job's owner may read into the working folder."""
        try:
            path = storage.normalize_path(str(message.get("path", "")))
            handle, _ = storage.storage_open(user=self.job.owner, path=path)
            with handle:  # never through a link or FIFO the app left in its folder
                workfiles.write_from(self.workdir, f"files/{path}", handle)
            answer = {"ok": True, "local": f"{launcher.work_path(self.workdir)}/files/{path}"}
        except ApplicationError as exc:
            answer = {"ok": False, "error": exc.message}
        except OSError as exc:
            answer = {"ok": False, "error": f"cannot read {message.get('path')!r}: {exc}"}
        try:
            self.process.stdin.write((json.dumps(answer) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    # ------------------------------------------------------------ watching
    def _flush_log(self) -> None:
        with self.lock:
            head, text = "".join(self.head_lines), "".join(self.log_lines)
            self.head_lines, self.log_lines, self.buffered = [], [], 0
            if self.dropped:
                text = f"--- {self.dropped} bytes of log dropped: the app printed faster than they could be kept ---\n{text}"
                self.dropped = 0
            text = head + text
        if text:
            self.log_offset = jobs.job_append_log(job=self.job, offset=self.log_offset, text=text)

    def _flush_progress(self) -> None:
        with self.lock:
            if not self.progress_dirty:
                return
            progress, points, self.progress_dirty = dict(self.progress), list(self.points), False
        jobs.job_report_progress(job=self.job, progress=progress, points=points)

    def _watch(self) -> EndReason:
        """Watch the solve process until it ends; return why it ended if this worker ended it."""
        last_flush = last_lease = 0.0
        interrupted_at: float | None = None
        lease_every = settings.PRO_JOB_LEASE_SECONDS / 3
        while True:
            try:
                self.process.wait(timeout=WATCH_TICK)  # returns the moment the solve ends
                self._sample()  # what is left of it: a process that outlived the solve's own
                break
            except subprocess.TimeoutExpired:
                pass
            usage = self._sample()
            now = time.monotonic()
            if self.shutdown.is_set():
                return self._stop(EndReason.SHUTDOWN)
            if now - last_lease >= lease_every:
                last_lease = now
                if not jobs.job_renew_lease(job=self.job):
                    return self._stop(EndReason.LOST)
            if now - last_flush < FLUSH_EVERY:
                continue
            last_flush = now
            self._flush_log()
            self._flush_progress()
            requests = selectors.job_requests(job=self.job)
            if requests.get("cancel_requested_at"):
                return self._stop(EndReason.CANCELLED)
            elapsed = now - self.started
            if interrupted_at is None and (requests.get("interrupt_requested_at") or elapsed >= self.job.time_limit):
                interrupted_at = now
                asked = bool(requests.get("interrupt_requested_at"))
                self.stop_reason = StopReason.INTERRUPTED if asked else StopReason.TIME_LIMIT
                self._log(
                    f"--- {'interrupt requested' if asked else f'time limit of {self.job.time_limit:g} s reached'}: stopping the solver, keeping its best solution ---"
                )
                self.process.signal_app(signal.SIGUSR1)
            if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE:
                return self._stop(EndReason.TIME_LIMIT_KILL)
            over = self._over_limit(usage)
            if over:
                return self._stop(over)
        return EndReason.EXITED

    def _sample(self) -> launcher.Usage:
        """What the sandbox uses now; the attempt's peak memory and CPU seconds take it in."""
        usage = self.process.usage()
        self.peak_memory_mb = max(self.peak_memory_mb, usage.memory_mb)
        self.cpu_seconds = max(self.cpu_seconds, usage.cpu_seconds)
        return usage

    def _usage(self) -> AttemptUsage:
        return {"cpu_seconds": self.cpu_seconds, "peak_memory_mb": self.peak_memory_mb}

    def _over_limit(self, usage: launcher.Usage) -> EndReason | None:
        """``PROCESSES`` or ``MEMORY`` when the sandbox as a whole (``usage``) is over the job's limits."""
        limit = settings.PRO_SANDBOX_MAX_PROCESSES
        if usage.processes >= limit or self.process.processes_exhausted():
            self._log(f"--- the solve tried to run more than {limit} processes at once: stopped ---")
            return EndReason.PROCESSES
        if usage.memory_mb > self.job.memory_limit_mb:
            self._log(
                f"--- the solve uses {usage.memory_mb:.0f} MB in {usage.processes} processes, over its memory limit of {self.job.memory_limit_mb} MB: stopped ---"
            )
            return EndReason.MEMORY
        return None

    def _stop(self, reason: EndReason) -> EndReason:
        self._sample()
        self.process.stop()
        return reason

    # ------------------------------------------------------------ the end
    def _outcome(self) -> dict[str, Any]:
        try:
            return json.loads(workfiles.read_bytes(self.workdir, "outcome.json", OUTCOME_BYTES) or b"{}")
        except (OSError, ValueError):
            return {}

    def _record(self, ended: EndReason) -> None:
        for reader in self.readers:  # the last lines of log and progress, written just before the end
            reader.join(timeout=2)
        self._flush_log()
        self._flush_progress()
        job = self.job
        if ended == EndReason.EXITED:
            self._record_exit()
        elif ended == EndReason.LOST:
            logger.warning(
                "Job %s attempt %s is no longer ours; its solve was stopped and its end discarded", job.pk, job.attempt
            )
        elif ended == EndReason.SHUTDOWN:
            self._log("--- the node is shutting down: the job goes back to the queue ---")
            self._flush_log()
            jobs.job_release(job=job, reason="The node running the job shut down", **self._usage())
        else:
            jobs.job_finish(job=job, **self._stopped_end(ended), **self._usage())

    def _stopped_end(self, ended: EndReason) -> dict[str, str]:
        """The end state and message of a job this worker stopped: cancelled, or over one of its limits."""
        job = self.job
        if ended == EndReason.CANCELLED:
            return {"state": JobState.CANCELLED, "error": "Cancelled while running; the solve was stopped."}
        errors = {
            EndReason.MEMORY: f"The job exceeded its memory limit of {job.memory_limit_mb} MB and was stopped.",
            EndReason.PROCESSES: f"The job tried to run more than {settings.PRO_SANDBOX_MAX_PROCESSES} processes at once and was stopped.",
            EndReason.TIME_LIMIT_KILL: f"The job exceeded its time limit of {job.time_limit:g} s and did not stop within {INTERRUPT_GRACE:g} s of being interrupted.",
        }
        return {"state": JobState.FAILED, "error": errors[ended]}

    def _record_exit(self) -> None:
        job, code, outcome = self.job, self.process.returncode, self._outcome()
        try:
            result = workfiles.read_bytes(self.workdir, "result.case", settings.PRO_MAX_CASE_BYTES)
        except OSError as exc:
            jobs.job_finish(
                job=job, state=JobState.FAILED, error=f"The job's result cannot be used: {exc}", **self._usage()
            )
            return
        if code == 0 and result is not None:
            status = outcome.get("status") or ""
            if self.stop_reason is None and outcome.get("interrupted"):
                # The solve process stopped itself at its time limit, before this worker's tick.
                self.stop_reason = StopReason.TIME_LIMIT
                self._log(
                    f"--- time limit of {job.time_limit:g} s reached: the solver stopped and kept its best solution ---"
                )
                self._flush_log()
            if self.stop_reason == StopReason.TIME_LIMIT:
                status = f"{status} (time limit of {job.time_limit:g} s reached)".strip()
            elif self.stop_reason == StopReason.INTERRUPTED:
                status = f"{status} (interrupted)".strip()
            jobs.job_finish(
                job=job, state=JobState.SUCCEEDED, solver_status=status, result_blob=result, **self._usage()
            )
            return
        if code == 3 or (code != 0 and self.process.memory_exhausted()):
            error = (
                f"The job ran out of memory: it reached its memory limit of {job.memory_limit_mb} MB and was stopped."
            )
        elif code is not None and code < 0:
            error = outcome.get("error") or f"The solve process was killed by signal {signal.Signals(-code).name}."
        else:
            error = outcome.get("error") or f"The solve process exited with code {code}."
        jobs.job_finish(job=job, state=JobState.FAILED, error=error, **self._usage())


class SolveWorker:
    """The node's solve loop: claim jobs up to the node's capacity, one supervisor thread each."""

    def __init__(self, node: str, capacity: int, pool_size: int | None = None):
        self.node = node
        self.capacity = capacity
        self.pool_size = settings.PRO_SOLVE_POOL if pool_size is None else pool_size
        self.pool: SolveRunnerPool | None = None
        self.running: dict[int, tuple[SolveSupervisor, threading.Thread]] = {}
        self.wake: Subscription | None = None
        self.next_due: float | None = None  # the earliest start time of a job queued for later

    def reconcile(self) -> int:
        """Requeue the jobs an earlier run of this node's worker left running (it died); return how many."""
        outcome = jobs.jobs_requeue_from_node(
            node=self.node, reason=f"The worker on node {self.node} stopped while running the job"
        )
        return sum(len(ids) for ids in outcome.values())

    def reap(self) -> None:
        for job_id, (_, thread) in list(self.running.items()):
            if not thread.is_alive():
                del self.running[job_id]

    def step(self) -> Job | None:
        """Reap finished supervisors and start at most one new job; return it."""
        self.reap()
        if len(self.running) >= self.capacity:
            return None
        job = jobs.job_claim_next(node=self.node)
        if job is None:
            return None
        supervisor = SolveSupervisor(job, self.pool)
        thread = threading.Thread(target=self._supervise, args=(supervisor,), name=f"job-{job.pk}", daemon=True)
        self.running[job.pk] = (supervisor, thread)
        thread.start()
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
        launcher.mode()  # refuses to run app code where it cannot be sandboxed
        self.wake = notify.hub().subscribe("jobs")
        launcher.node_work_dir().mkdir(parents=True, exist_ok=True)
        launcher.remove_leftovers(WARM_PREFIX)
        removed = launcher.remove_leftovers("job")
        if removed:
            logger.info("Removed %s working folders left by an earlier worker on %s", removed, self.node)
        requeued = self.reconcile()
        if requeued:
            logger.info("Requeued %s jobs left running by an earlier worker on %s", requeued, self.node)
        if self.pool_size > 0:
            self.pool = SolveRunnerPool(self.pool_size, builtin_python())
            self.pool.start()
        while not stopping.is_set():
            try:
                started = self.step()
            except Exception:
                logger.exception("The solve worker's loop failed; trying again")
                close_old_connections()
                started = None
            if started is None:
                self._idle(stopping)
        self.wake.close()
        self.shutdown()
        connection.close()

    def shutdown(self) -> None:
        """Stop every running solve and put its job back in the queue."""
        for supervisor, _ in self.running.values():
            supervisor.shutdown.set()
        for _, thread in self.running.values():
            thread.join(timeout=launcher.TERMINATE_GRACE + 5)
        self.running.clear()
        if self.pool is not None:
            self.pool.shutdown()
