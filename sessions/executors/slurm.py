"""The Slurm executor: each attempt one batch job, submitted, watched and cancelled with Slurm's commands.

The batch job never requeues (``--no-requeue``): the platform counts attempts itself. Its
environment is only what its script exports (``--export=NIL``), the attempt's ticket among it,
so the ticket is in no command line; Slurm keeps the script readable to root and the job's user
only. Its time and memory limits are set above the job's (:mod:`sessions.dispatch`) so that the
runner interrupts the solver and keeps its incumbent before Slurm kills anything.
"""

from __future__ import annotations

import getpass
import math
import os
import shlex
import subprocess
from collections.abc import Sequence

from django.conf import settings

from . import EngineJob, EngineState, ExecutorError, Submission

COMMAND_TIMEOUT = 30
# What Slurm's commands say when the controller cannot be asked (not when it refuses a job).
UNREACHABLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Zero Bytes were transmitted",
    "Slurm backup controller in standby mode",
)
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED", "RESIZING"}
RUNNING = {"RUNNING", "CONFIGURING", "SIGNALING", "STAGE_OUT"}


class SlurmExecutor:
    kind = "slurm"

    def __init__(self, *, conf: str = "", options: str = "", workdir: str = "", chdir: str = ""):
        self.environ = {**os.environ, **({"SLURM_CONF": conf} if conf else {})}
        self.options = shlex.split(options)
        self.workdir = workdir
        self.chdir = chdir or str(settings.BASE_DIR)

    @classmethod
    def from_settings(cls) -> SlurmExecutor:
        return cls(
            conf=settings.PRO_SLURM_CONF, options=settings.PRO_SLURM_OPTIONS, workdir=settings.PRO_SLURM_WORK_DIR
        )

    def _run(self, command: Sequence[str], stdin: str | None = None) -> str:
        try:
            done = subprocess.run(
                list(command),
                input=stdin,
                capture_output=True,
                text=True,
                env=self.environ,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExecutorError(f"{command[0]} could not run: {exc}", unreachable=True) from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[:500]
            raise ExecutorError(f"{command[0]} failed: {said}", unreachable=any(text in said for text in UNREACHABLE))
        return done.stdout

    def script(self, submission: Submission) -> str:
        environment = {**submission.environment, "PRO_EXECUTOR": self.kind}
        if self.workdir:
            environment["PRO_RUNNER_WORK_DIR"] = self.workdir
        exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(environment.items()))
        return (
            f"#!/bin/sh\nexport PATH=/usr/local/bin:/usr/bin:/bin\n{exports}\nexec {shlex.join(submission.command)}\n"
        )

    def submit(self, submission: Submission) -> str:
        command = [
            "sbatch",
            "--parsable",
            "--no-requeue",
            "--export=NIL",
            f"--job-name={submission.name}",
            f"--time={max(1, math.ceil(submission.time_limit_seconds / 60))}",
            f"--mem={submission.memory_mb}M",
            "--ntasks=1",
            f"--chdir={self.chdir}",
            "--output=/dev/null",
            *([f"--partition={submission.queue}"] if submission.queue else []),
            *self.options,
        ]
        answer = self._run(command, stdin=self.script(submission)).strip()
        external_id = answer.split(";", 1)[0]
        if not external_id.isdigit():
            raise ExecutorError(f"sbatch answered {answer!r}, not a job id")
        return external_id

    def states(self, ids: list[str]) -> dict[str, EngineJob]:
        if not ids:
            return {}
        listing = self._run(
            ["squeue", "--noheader", "--states=all", f"--user={getpass.getuser()}", "--format=%i|%T|%r"]
        )
        known: dict[str, EngineJob] = {}
        for line in listing.splitlines():
            job_id, _, rest = line.strip().partition("|")
            state, _, reason = rest.partition("|")
            known[job_id] = _engine_job(state, reason)
        return {job_id: known.get(job_id, EngineJob(EngineState.MISSING)) for job_id in ids}

    def cancel(self, external_id: str) -> None:
        self._run(["scancel", external_id])


def _engine_job(state: str, reason: str) -> EngineJob:
    state = state.strip().upper()
    reason = reason.strip()
    if state in PENDING:
        return EngineJob(EngineState.PENDING, f"{state} ({reason})" if reason and reason != "None" else state)
    if state in RUNNING:
        return EngineJob(EngineState.RUNNING, state)
    return EngineJob(EngineState.ENDED, state)
