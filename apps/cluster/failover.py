"""What the master does every tick: declare silent nodes dead and put their work back in the queue.

A node is dead when it has missed two heartbeats (``DEAD_AFTER`` intervals, with a quarter
interval of slack for a busy database). Its running jobs go back to the queue, where their next
claim counts the next attempt, or fail when they have had their attempts; its data sessions are
marked lost, for their users to restart on another node. Jobs whose worker stopped renewing
their lease on a node that still heartbeats are requeued the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from sessions import data_sessions, jobs
from sessions import selectors as sessions_selectors
from sessions.models import LIVE_SESSION_STATES, DataSession, Job, JobState

from .models import Node, NodeState
from .services import node_changed

logger = logging.getLogger(__name__)

DEAD_AFTER = 2.25  # heartbeat intervals
UNCLAIMED_SESSION_SECONDS = 60.0


def nodes_declare_dead(*, master: str, now: datetime | None = None) -> list[str]:
    """Mark dead the nodes that are up but silent; return their names."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=DEAD_AFTER * settings.PRO_HEARTBEAT_SECONDS)
    dead = []
    for name in Node.objects.filter(state=NodeState.UP, last_heartbeat__lt=cutoff).values_list("name", flat=True):
        if Node.objects.filter(name=name, state=NodeState.UP, last_heartbeat__lt=cutoff).update(
            state=NodeState.DEAD, declared_dead_at=now, declared_dead_by=master
        ):
            logger.warning("Node %s missed two heartbeats: declared dead by master %s", name, master)
            node_changed(name, NodeState.DEAD)
            dead.append(name)
    return dead


def _nodes_gone_with_work() -> dict[str, str]:
    """Nodes that are not up but still hold running jobs or live sessions, with their state.

    Not only those declared dead just now: a job claimed by a node at the moment it died, or a
    node stopped without handing its work back, is not left running. Work on a node that has no
    row yet (its agent has not registered it) is not touched.
    """
    gone = dict(Node.objects.exclude(state=NodeState.UP).values_list("name", "state"))
    holding = set(Job.objects.filter(state=JobState.RUNNING, node__in=list(gone)).values_list("node", flat=True)) | set(
        DataSession.objects.filter(state__in=LIVE_SESSION_STATES, node__in=list(gone)).values_list("node", flat=True)
    )
    return {name: gone[name] for name in holding}


def node_work_recover(*, name: str, state: str, master: str) -> dict:
    """Requeue the jobs and mark lost the sessions of a node that is dead or stopped."""
    if state == NodeState.DEAD:
        reason = f"node {name} stopped answering (declared dead by master {master})"
    else:
        reason = f"node {name} stopped without handing the work back"
    requeued = jobs.jobs_requeue_from_node(node=name, reason=reason[0].upper() + reason[1:])
    lost = data_sessions.sessions_mark_lost_on_node(
        node=name, reason=f"The session was lost: {reason}. Restart it to continue on another node."
    )
    return {"jobs": requeued, "sessions_lost": lost}


def master_tick(*, master: str) -> dict:
    """One round of the master's duties; what it changed, for its log and the tests."""
    dead = nodes_declare_dead(master=master)
    recovered = {
        name: node_work_recover(name=name, state=state, master=master)
        for name, state in _nodes_gone_with_work().items()
    }
    expired = []
    for job in sessions_selectors.jobs_with_expired_lease():
        try:
            with transaction.atomic():  # a job whose row is locked waits for the next round
                expired.append((job.pk, jobs.job_requeue_expired(job=job)))
        except OperationalError as exc:
            logger.warning("Job %s is locked (%s); it is requeued later", job.pk, exc)
    unclaimed = data_sessions.sessions_fail_unclaimed(
        older_than_seconds=max(UNCLAIMED_SESSION_SECONDS, 2 * settings.PRO_HEARTBEAT_SECONDS)
    )
    return {"dead": dead, "recovered": recovered, "expired_leases": expired, "unclaimed_sessions": unclaimed}
