"""The watch of one attempt of a job: its solve sandbox, from start to recorded end. No models here.

A solve worker runs it beside the platform (:mod:`sessions.supervisor`), and so does the remote
runner inside a Slurm or Kubernetes job (:mod:`sessions.remote_runner`): what differs between the
two is only how the attempt talks to the job, its :class:`AttemptChannel` (service calls on a
node, the attempt API from an engine's node). Both see the same sandbox and make the same log,
progress, interrupt, cancel, limits and end, so a user sees no difference.

The watch streams the log and progress, renews the job's lease (from this process, so a solver
that holds its CPU cannot starve it), asks the solver to stop on interrupt or at the time limit,
kills the whole sandbox on cancel or when a limit (memory, processes) is exceeded, and records the
result. Timeouts, all in seconds:

- ``PRO_JOB_LEASE_SECONDS``: how long a claim holds without renewal (renewed every third of it);
- ``INTERRUPT_GRACE``: after an interrupt at the time limit, how long the solver may take to
  return its incumbent before it is killed;
- ``launcher.TERMINATE_GRACE``: between SIGTERM and SIGKILL of a sandbox (a cancel ends within
  it plus one watch tick, well under 5 seconds).

It also measures what the sandbox uses (``SandboxedProcess.usage``: every process of its PID
namespace, its memory from its cgroup where there is one): right after the start, at every tick,
and once more when the solve ends or just before the watch stops it. The job keeps the most
memory seen at once and the CPU seconds (the most seen: the count falls when a process of the
sandbox exits). A solve shorter than a tick is measured at its start and at its end; once its
processes are gone ``/proc`` tells nothing more, so what it used between is not seen.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import signal
import subprocess
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypedDict

from django.conf import settings

from . import launcher
from .launcher import workfiles
from .network import NetworkGrant
from .runtime.connections import masked

logger = logging.getLogger(__name__)

WATCH_TICK = 0.2
FLUSH_EVERY = 0.5
INTERRUPT_GRACE = 30.0
LOG_BUFFER_BYTES = 4 * 1024 * 1024  # what the watch holds of a job's log between two flushes
LOG_CHUNK_BYTES = 64 * 1024  # the longest line read at once; a longer one arrives in pieces
OUTCOME_BYTES = 1024 * 1024  # what the solve process may say about its end

# The end states of a job (sessions.models.JobState's values, which this module cannot import).
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"


class EndReason(StrEnum):
    """Why the watch of a solve process ended: it exited, or the watch stopped it."""

    EXITED = "exited"  # by itself: its exit code and outcome say how it went
    LOST = "lost"  # the attempt is no longer the job's (requeued or cancelled meanwhile)
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


class FileRefused(Exception):
    """A storage file the app asked for cannot be given to it; the message says why."""


@dataclass(frozen=True)
class AttemptInfo:
    """What the watch needs to know of the job it runs one attempt of."""

    job_id: int
    attempt: int
    procedure: str
    time_limit: float
    memory_limit_mb: int
    log_size: int  # where the job's log ends when the attempt starts


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as its channel records it."""

    state: str
    error: str
    solver_status: str
    result: bytes | None
    usage: AttemptUsage
    log_offset: int  # where ``log`` starts in the job's log
    log: str  # the end of the attempt's log, not appended yet


class AttemptChannel(Protocol):
    """How an attempt reports to its job and hears what users ask of it.

    Every write is fenced by the attempt: once the job is no longer this attempt's (requeued,
    cancelled), a write changes nothing and ``renew_lease`` says False.
    """

    def append_log(self, offset: int, text: str) -> int: ...

    def report_progress(self, progress: dict[str, Any], points: list[dict[str, Any]]) -> None: ...

    def renew_lease(self) -> bool: ...

    def requests(self) -> dict[str, bool]:
        """What users asked of the attempt: ``{"cancel": …, "interrupt": …}``."""
        ...

    def open_file(self, path: str) -> tuple[str, AbstractContextManager[BinaryIO]]:
        """(normalized path, readable stream) of a storage file the job's owner may read; raises FileRefused."""
        ...

    def finish(self, end: AttemptEnd) -> None: ...

    def release(self, *, reason: str, usage: AttemptUsage) -> None: ...


class AttemptWatch:
    """Watches one started solve sandbox (``process``) until its end is recorded through ``channel``."""

    def __init__(self, info: AttemptInfo, channel: AttemptChannel, workdir: Path, secrets: tuple[str, ...] = ()):
        self.info = info
        self.channel = channel
        self.workdir = workdir
        self.secrets = secrets  # an app's connection secrets, masked in its log
        self.process: launcher.SandboxedProcess | None = None
        self.log_lines: list[str] = []
        self.lock = threading.Lock()
        self.progress: dict[str, Any] = {}
        self.points: list[dict[str, Any]] = []
        self.progress_dirty = False
        self.log_offset = info.log_size
        self.started = time.monotonic()
        self.stop_reason: StopReason | None = None
        self.shutdown = threading.Event()
        self.readers: list[threading.Thread] = []
        self.buffered = self.dropped = 0
        self.head_lines: list[str] = []  # the start of the log, which the job's log keeps whole
        self.head_left = max(0, settings.PRO_JOB_LOG_MAX_BYTES // 2 - info.log_size)
        self.peak_memory_mb = 0.0  # what this attempt's sandbox used, as sampled (see ``sample``)
        self.cpu_seconds = 0.0

    def start_readers(self, control_read: int) -> None:
        self.readers = [
            threading.Thread(target=self._read_log, daemon=True),
            threading.Thread(target=self._read_control, args=(control_read,), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.sample()

    def fail(self, error: str) -> None:
        """Record the attempt as failed by what ran it (not by the app), stopping what is left of it."""
        if self.process is not None and self.process.poll() is None:
            self.sample()
            self.process.stop()
        self.finish(state=FAILED, error=error)

    # ------------------------------------------------------------ channels
    def log(self, line: str, partial: bool = False) -> None:
        """Buffer a log line; past ``LOG_BUFFER_BYTES`` the oldest buffered lines after the log's head are dropped."""
        text = line if partial or line.endswith("\n") else line + "\n"
        text = masked(text, self.secrets)
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
        assert self.process is not None
        stdout = self.process.stdout
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads
        for raw in iter(lambda: stdout.readline(LOG_CHUNK_BYTES), b""):
            self.log(decoder.decode(raw), partial=not raw.endswith(b"\n"))

    def _read_control(self, fd: int) -> None:
        try:
            with open(fd, encoding="utf-8", errors="replace") as control:
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
            self.readers_done()

    def readers_done(self) -> None:
        """Called when the control channel closes (the supervisor closes its database connection here)."""

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
        assert self.process is not None
        try:
            path, opened = self.channel.open_file(str(message.get("path", "")))
            with opened as handle:  # never through a link or FIFO the app left in its folder
                workfiles.write_from(self.workdir, f"files/{path}", handle)
            answer = {"ok": True, "local": f"{launcher.work_path(self.workdir)}/files/{path}"}
        except FileRefused as exc:
            answer = {"ok": False, "error": str(exc)}
        except OSError as exc:
            answer = {"ok": False, "error": f"cannot read {message.get('path')!r}: {exc}"}
        try:
            self.process.stdin.write((json.dumps(answer) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    # ------------------------------------------------------------ watching
    def _take_log(self) -> str:
        """The log buffered since the last flush, taken out of the buffer."""
        with self.lock:
            head, text = "".join(self.head_lines), "".join(self.log_lines)
            self.head_lines, self.log_lines, self.buffered = [], [], 0
            if self.dropped:
                text = f"--- {self.dropped} bytes of log dropped: the app printed faster than they could be kept ---\n{text}"
                self.dropped = 0
            return head + text

    def flush_log(self) -> None:
        text = self._take_log()
        if text:
            self.log_offset = self.channel.append_log(self.log_offset, text)

    def _flush_progress(self) -> None:
        with self.lock:
            if not self.progress_dirty:
                return
            progress, points, self.progress_dirty = dict(self.progress), list(self.points), False
        self.channel.report_progress(progress, points)

    def watch(self) -> EndReason:
        """Watch the solve process until it ends; return why it ended if the watch ended it."""
        assert self.process is not None
        last_flush = last_lease = 0.0
        interrupted_at: float | None = None
        lease_every = settings.PRO_JOB_LEASE_SECONDS / 3
        while True:
            try:
                self.process.wait(timeout=WATCH_TICK)  # returns the moment the solve ends
                self.sample()  # what is left of it: a process that outlived the solve's own
                break
            except subprocess.TimeoutExpired:
                pass
            usage = self.sample()
            now = time.monotonic()
            if self.shutdown.is_set():
                return self._stop(EndReason.SHUTDOWN)
            if now - last_lease >= lease_every:
                last_lease = now
                if not self.channel.renew_lease():
                    return self._stop(EndReason.LOST)
            if now - last_flush < FLUSH_EVERY:
                continue
            last_flush = now
            self.flush_log()
            self._flush_progress()
            asked = self.channel.requests()
            if asked.get("lost"):
                return self._stop(EndReason.LOST)
            if asked.get("cancel"):
                return self._stop(EndReason.CANCELLED)
            if interrupted_at is None and (asked.get("interrupt") or now - self.started >= self.info.time_limit):
                interrupted_at = now
                self._interrupt(by_user=bool(asked.get("interrupt")))
            if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE:
                return self._stop(EndReason.TIME_LIMIT_KILL)
            over = self._over_limit(usage)
            if over:
                return self._stop(over)
        return EndReason.EXITED

    def _interrupt(self, *, by_user: bool) -> None:
        assert self.process is not None
        self.stop_reason = StopReason.INTERRUPTED if by_user else StopReason.TIME_LIMIT
        self.log(
            f"--- {'interrupt requested' if by_user else f'time limit of {self.info.time_limit:g} s reached'}: stopping the solver, keeping its best solution ---"
        )
        self.process.signal_app(signal.SIGUSR1)

    def sample(self) -> launcher.Usage:
        """What the sandbox uses now; the attempt's peak memory and CPU seconds take it in."""
        assert self.process is not None
        usage = self.process.usage()
        self.peak_memory_mb = max(self.peak_memory_mb, usage.memory_mb)
        self.cpu_seconds = max(self.cpu_seconds, usage.cpu_seconds)
        return usage

    def usage(self) -> AttemptUsage:
        return {"cpu_seconds": self.cpu_seconds, "peak_memory_mb": self.peak_memory_mb}

    def _over_limit(self, usage: launcher.Usage) -> EndReason | None:
        """``PROCESSES`` or ``MEMORY`` when the sandbox as a whole (``usage``) is over the job's limits."""
        assert self.process is not None
        limit = settings.PRO_SANDBOX_MAX_PROCESSES
        if usage.processes >= limit or self.process.processes_exhausted():
            self.log(f"--- the solve tried to run more than {limit} processes at once: stopped ---")
            return EndReason.PROCESSES
        if usage.memory_mb > self.info.memory_limit_mb:
            self.log(
                f"--- the solve uses {usage.memory_mb:.0f} MB in {usage.processes} processes, over its memory limit of {self.info.memory_limit_mb} MB: stopped ---"
            )
            return EndReason.MEMORY
        return None

    def _stop(self, reason: EndReason) -> EndReason:
        assert self.process is not None
        self.sample()
        self.process.stop()
        return reason

    # ------------------------------------------------------------ the end
    def _outcome(self) -> dict[str, Any]:
        try:
            return json.loads(workfiles.read_bytes(self.workdir, "outcome.json", OUTCOME_BYTES) or b"{}")
        except (OSError, ValueError):
            return {}

    def record(self, ended: EndReason) -> None:
        for reader in self.readers:  # the last lines of log and progress, written just before the end
            reader.join(timeout=2)
        self._flush_progress()
        info = self.info
        if ended == EndReason.EXITED:
            self._record_exit()
        elif ended == EndReason.LOST:
            logger.warning(
                "Job %s attempt %s is no longer ours; its solve was stopped and its end discarded",
                info.job_id,
                info.attempt,
            )
        elif ended == EndReason.SHUTDOWN:
            self.log("--- the node is shutting down: the job goes back to the queue ---")
            self.flush_log()
            self.channel.release(reason="The node running the job shut down", usage=self.usage())
        else:
            end = self._stopped_end(ended)
            self.finish(state=end["state"], error=end["error"])

    def finish(self, *, state: str, error: str, solver_status: str = "", result: bytes | None = None) -> None:
        """Record the attempt's end; the log still buffered goes with it (for a short job, its whole log)."""
        offset, text = self.log_offset, self._take_log()
        self.channel.finish(AttemptEnd(state, error, solver_status, result, self.usage(), offset, text))

    def _stopped_end(self, ended: EndReason) -> dict[str, str]:
        """The end state and message of a job the watch stopped: cancelled, or over one of its limits."""
        info = self.info
        if ended == EndReason.CANCELLED:
            return {"state": CANCELLED, "error": "Cancelled while running; the solve was stopped."}
        errors = {
            EndReason.MEMORY: f"The job exceeded its memory limit of {info.memory_limit_mb} MB and was stopped.",
            EndReason.PROCESSES: f"The job tried to run more than {settings.PRO_SANDBOX_MAX_PROCESSES} processes at once and was stopped.",
            EndReason.TIME_LIMIT_KILL: f"The job exceeded its time limit of {info.time_limit:g} s and did not stop within {INTERRUPT_GRACE:g} s of being interrupted.",
        }
        return {"state": FAILED, "error": errors[ended]}

    def _record_exit(self) -> None:
        assert self.process is not None
        info, code, outcome = self.info, self.process.returncode, self._outcome()
        try:
            result = workfiles.read_bytes(self.workdir, "result.case", settings.PRO_MAX_CASE_BYTES)
        except OSError as exc:
            self.finish(state=FAILED, error=f"The job's result cannot be used: {exc}")
            return
        if code == 0 and result is not None:
            self.finish(state=SUCCEEDED, error="", solver_status=self._status(outcome), result=result)
            return
        if code == 3 or (code != 0 and self.process.memory_exhausted()):
            error = (
                f"The job ran out of memory: it reached its memory limit of {info.memory_limit_mb} MB and was stopped."
            )
        elif code is not None and code < 0:
            error = outcome.get("error") or f"The solve process was killed by signal {signal.Signals(-code).name}."
        else:
            error = outcome.get("error") or f"The solve process exited with code {code}."
        self.finish(state=FAILED, error=error)

    def _status(self, outcome: dict[str, Any]) -> str:
        """The solver's status, saying whether the time limit or a user's interrupt stopped it."""
        status = outcome.get("status") or ""
        if self.stop_reason is None and outcome.get("interrupted"):
            # The solve process stopped itself at its time limit, before the watch's tick.
            self.stop_reason = StopReason.TIME_LIMIT
            self.log(
                f"--- time limit of {self.info.time_limit:g} s reached: the solver stopped and kept its best solution ---"
            )
        if self.stop_reason == StopReason.TIME_LIMIT:
            return f"{status} (time limit of {self.info.time_limit:g} s reached)".strip()
        if self.stop_reason == StopReason.INTERRUPTED:
            return f"{status} (interrupted)".strip()
        return status


def launch_solve(
    workdir: Path,
    *,
    interpreter: str,
    site_dirs: tuple[Path, ...],
    memory_limit_mb: int,
    grant: NetworkGrant,
    connections: dict[str, dict[str, Any]],
) -> tuple[launcher.SandboxedProcess, int]:
    """Start a filled working folder's solve sandbox; return it and the read end of its control channel."""
    control_read, control_write = os.pipe()
    spec = launcher.LaunchSpec(
        name=workdir.name,
        interpreter=interpreter,
        site_dirs=site_dirs,
        module="sessions.runtime.solve_runner",
        args=[launcher.work_path(workdir)],
        workdir=workdir,
        env={"PRO_CONTROL_FD": str(control_write)},
        memory_limit_mb=memory_limit_mb,
        network=grant,
        connections=connections,
        pass_fds=(control_write,),
        stdin=True,
    )
    try:
        process = launcher.launch(spec)
    except BaseException:
        os.close(control_read)
        raise
    finally:
        os.close(control_write)
    return process, control_read
