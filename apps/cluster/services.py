"""Nodes: registration, heartbeats and restarts of their processes in the admin database."""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from pro_portal.notify import notify
from sessions import launcher
from sessions.runtime.version import __version__ as PLATFORM_VERSION  # noqa: N812 - the version of every node

from .models import Node, NodeRole, NodeState

logger = logging.getLogger(__name__)


def node_register(*, name: str | None = None, address: str = "") -> Node:
    """Record this node as up (again), with its roles, its capacity and the process that speaks for it."""
    now = timezone.now()
    roles = list(settings.PRO_NODE_ROLES)
    sandbox = launcher.describe()
    if sandbox["sandbox"] != "bubblewrap":
        logger.warning(
            "Node %s: app code is NOT sandboxed (%s). %s",
            name or settings.PRO_NODE_NAME,
            sandbox["sandbox"],
            sandbox["detail"],
        )
    node, _ = Node.objects.update_or_create(
        name=name or settings.PRO_NODE_NAME,
        defaults={
            "address": address or settings.PRO_NODE_ADDRESS,
            "roles": roles,
            "max_solves": settings.PRO_MAX_SOLVES if NodeRole.SOLVES in roles else 0,
            "max_sessions": settings.PRO_MAX_SESSIONS if NodeRole.SESSIONS in roles else 0,
            "version": PLATFORM_VERSION,
            "pid": os.getpid(),
            "state": NodeState.UP,
            "started_at": now,
            "last_heartbeat": now,
            "declared_dead_at": None,
            "declared_dead_by": "",
            "sandbox": sandbox["sandbox"],
            "sandbox_hard_limits": sandbox["hard_limits"],
            "sandbox_detail": sandbox["detail"],
        },
    )
    node_changed(node.name, NodeState.UP)
    return node


def node_changed(name: str, state: str, **detail: object) -> None:
    """Tell the open nodes pages of every node (heartbeats that change nothing are not told)."""
    notify("nodes", id=name, state=state, **detail)


def node_heartbeat(*, node: Node) -> bool:
    """Tell the cluster this node is alive; True when it had been declared dead meanwhile.

    A node back from the dead is up again for new work; what it ran was requeued when it was
    declared dead, and its workers discard the late ends of that work (the job rows say so).
    """
    now = timezone.now()
    came_back = Node.objects.filter(pk=node.pk, state=NodeState.DEAD).update(
        state=NodeState.UP, last_heartbeat=now, declared_dead_at=None, declared_dead_by=""
    )
    if came_back:
        logger.warning("Node %s is back after being declared dead; its earlier work was requeued", node.name)
        node_changed(node.name, NodeState.UP)
    elif not Node.objects.filter(pk=node.pk).update(last_heartbeat=now, state=NodeState.UP):
        node_register(name=node.name, address=node.address)  # its row was removed by an admin
    return bool(came_back)


def node_stop(*, node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(state=NodeState.STOPPED, last_heartbeat=timezone.now())
    node_changed(node.name, NodeState.STOPPED)


def node_child_restarted(*, child: str, reason: str, name: str | None = None) -> None:
    """Count a restart of one of the node's processes (``run_platform``'s children) on its row.

    The row is created if the agent has not registered the node yet; the agent then brings it up.
    """
    name = name or settings.PRO_NODE_NAME
    fields = {"last_restart_at": timezone.now(), "last_restart_child": child, "last_restart_reason": reason[:200]}
    if not Node.objects.filter(name=name).update(restarts=F("restarts") + 1, **fields):
        _, created = Node.objects.get_or_create(
            name=name, defaults={"state": NodeState.STOPPED, "restarts": 1, **fields}
        )
        if not created:  # registered meanwhile
            Node.objects.filter(name=name).update(restarts=F("restarts") + 1, **fields)
