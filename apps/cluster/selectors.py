"""Reads of the cluster: who the master is, and each node with the work it runs now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from sessions.models import LIVE_SESSION_STATES, DataSession, Job, JobState

from .models import MASTER_LEASE, MasterLease, Node, NodeState

# How many of a node's running jobs the overview names (the count is always complete).
RUNNING_JOB_IDS = 10


def database_answers() -> bool:
    """Whether the admin database answers a query (an error if it does not)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True


def master_lease(now: datetime | None = None) -> MasterLease | None:
    """The master lease while it is held and not expired; ``None`` when there is no master."""
    now = now or timezone.now()
    return MasterLease.objects.filter(name=MASTER_LEASE, expires_at__gt=now).exclude(holder="").first()


def master_name(now: datetime | None = None) -> str | None:
    """The name of the master node, if its lease has not expired."""
    lease = master_lease(now)
    return lease.holder if lease else None


@dataclass
class NodeOverview:
    """One node as the nodes page shows it."""

    node: Node
    is_master: bool
    heartbeat_age: float  # seconds since its last heartbeat
    heartbeat_late: bool  # up, but silent for longer than the master tolerates
    running_jobs: int = 0
    live_sessions: int = 0
    running_job_ids: list[int] = field(default_factory=list)


def cluster_overview(now: datetime | None = None, master: str | None = None) -> list[NodeOverview]:
    """Every node, its heartbeat, and the jobs and data sessions on it, in a fixed number of queries.

    ``master`` is the master's name if the caller already looked it up (else it is read here).
    """
    now = now or timezone.now()
    if master is None:
        master = master_name(now)
    jobs_by_node: dict[str, tuple[int, list[int]]] = {}
    # The first running jobs of every node, each row also carrying its node's running count.
    ranked = (
        Job.objects.filter(state=JobState.RUNNING)
        .exclude(node="")
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("node")], order_by=F("id").asc()),
            on_node=Window(Count("id"), partition_by=[F("node")]),
        )
        .filter(rank__lte=RUNNING_JOB_IDS)
        .order_by("node", "id")
        .values_list("node", "id", "on_node")
    )
    for node_name, job_id, on_node in ranked:
        jobs_by_node.setdefault(node_name, (on_node, []))[1].append(job_id)
    sessions_by_node = dict(
        DataSession.objects.filter(state__in=LIVE_SESSION_STATES)
        .exclude(node="")
        .values("node")
        .annotate(n=Count("id"))
        .values_list("node", "n")
    )
    late_after = 2 * settings.PRO_HEARTBEAT_SECONDS
    overview = []
    for node in Node.objects.all():
        age = max(0.0, (now - node.last_heartbeat).total_seconds())
        running, job_ids = jobs_by_node.get(node.name, (0, []))
        overview.append(
            NodeOverview(
                node=node,
                is_master=node.name == master,
                heartbeat_age=age,
                heartbeat_late=node.state == NodeState.UP and age > late_after,
                running_jobs=running,
                live_sessions=sessions_by_node.get(node.name, 0),
                running_job_ids=job_ids,
            )
        )
    return overview
