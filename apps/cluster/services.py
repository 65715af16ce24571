"""Nodes: registration and heartbeats in the admin database."""

from __future__ import annotations

import os
import socket

from django.conf import settings
from django.utils import timezone

from .models import Node, NodeState

PLATFORM_VERSION = "0.1.0"


def node_register(*, name: str | None = None, address: str = "") -> Node:
    """Record this node as up (again), with its roles and the process that speaks for it."""
    now = timezone.now()
    node, _ = Node.objects.update_or_create(
        name=name or settings.PRO_NODE_NAME,
        defaults={
            "address": address or socket.gethostname(),
            "roles": list(settings.PRO_NODE_ROLES),
            "version": PLATFORM_VERSION,
            "pid": os.getpid(),
            "state": NodeState.UP,
            "started_at": now,
            "last_heartbeat": now,
        },
    )
    return node


def node_heartbeat(*, node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now(), state=NodeState.UP)


def node_stop(*, node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(state=NodeState.STOPPED, last_heartbeat=timezone.now())
