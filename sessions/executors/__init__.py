"""Where a solve node runs the attempts it claims: its own sandboxes, or an engine's jobs.

``local`` runs them on the node (:mod:`sessions.supervisor`). ``slurm`` and ``kubernetes`` make
each attempt exactly one job of the engine (:mod:`sessions.dispatch` submits, watches and cancels
them) in which :mod:`sessions.remote_runner` runs the same sandbox. The platform stays the source
of truth: it counts attempts itself (the engine never retries or requeues on its own), and an
attempt its engine lost is requeued by the platform as a new attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class EngineState(StrEnum):
    PENDING = "pending"  # waiting in the engine's queue (its reason says why)
    RUNNING = "running"
    ENDED = "ended"  # over, for whatever reason (its detail says which)
    MISSING = "missing"  # the engine does not know the job (any more)


@dataclass(frozen=True)
class Submission:
    """One attempt as an engine's job: what to run, with what, where, within which limits."""

    name: str  # unique per attempt: pro-job-<id>-<attempt>
    command: list[str]
    environment: dict[str, str]  # the runner's (the attempt's ticket among them: never on a command line)
    queue: str  # a Slurm partition, a Kubernetes namespace ("": the executor's default)
    time_limit_seconds: int  # the engine's limit: above the platform's, so the runner interrupts first
    memory_mb: int  # likewise above the job's limit
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineJob:
    state: EngineState
    detail: str = ""  # the engine's own words: "PENDING (Resources)", "NODE_FAIL", "Evicted"


class ExecutorError(Exception):
    """The engine refused or could not be reached; the message says why.

    ``unreachable``: the engine could not be asked (down, overloaded, or this node's credentials
    refused): nothing is wrong with the job, which waits in the queue without losing an attempt.
    Otherwise the engine refused this job (a request it cannot satisfy): the attempt counts.
    """

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


class Executor(Protocol):
    kind: str

    def submit(self, submission: Submission) -> str:
        """Submit; return the engine's id of the job."""
        ...

    def states(self, ids: list[str]) -> dict[str, EngineJob]:
        """The engine's state of each of ``ids`` (MISSING for one it does not know)."""
        ...

    def cancel(self, external_id: str) -> None: ...


def executor_for(kind: str) -> Executor | None:
    """The executor of ``PRO_EXECUTOR``; None for ``local``."""
    if kind == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor.from_settings()
    if kind == "kubernetes":
        from .kubernetes import KubernetesExecutor

        return KubernetesExecutor.from_settings()
    return None
