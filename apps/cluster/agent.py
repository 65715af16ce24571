"""The node agent's loop: heartbeat, take part in the master election, and do the master's duties."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from apps.catalog.environments import cache_sweep
from apps.schedules.ticker import ticker_start

from .election import Candidate
from .failover import master_tick
from .models import Node
from .services import node_heartbeat, node_register, node_stop

logger = logging.getLogger(__name__)

CACHE_SWEEP_SECONDS = 3600.0


class NodeAgent:
    def __init__(self, node: Node):
        self.node = node
        self.candidate = Candidate(node=node.name)
        self.last_heartbeat = time.monotonic()
        self.last_sweep = 0.0

    def sweep_caches(self) -> None:
        """Hourly: remove the runtimes and environments this machine has not used for a while."""
        if time.monotonic() - self.last_sweep < CACHE_SWEEP_SECONDS:
            return
        self.last_sweep = time.monotonic()
        try:
            removed = cache_sweep()
        except OSError as exc:
            logger.warning("Node %s: the environment cache sweep failed: %s", self.node.name, exc)
            return
        if removed:
            logger.info("Node %s removed unused environments: %s", self.node.name, ", ".join(removed))

    def tick(self) -> dict | None:
        """One half interval: heartbeat when due, campaign, and act if master; what the master changed."""
        if time.monotonic() - self.last_heartbeat >= settings.PRO_HEARTBEAT_SECONDS:
            self.last_heartbeat = time.monotonic()
            node_heartbeat(node=self.node)
        self.sweep_caches()
        if not self.candidate.campaign():
            return None
        changed = self.candidate.act(master_tick, master=self.node.name)
        if changed and (changed["dead"] or changed["recovered"] or changed["expired_leases"]):
            logger.warning("Master %s: %s", self.node.name, changed)
        return changed

    def run(self, stopping: threading.Event) -> None:
        every = settings.PRO_HEARTBEAT_SECONDS / 2
        ticker = ticker_start(stopping, self.node.name)  # fires due schedules; every node's tries
        while not stopping.wait(every):
            try:
                self.tick()
            except DatabaseError as exc:
                logger.warning("Node %s: the admin database failed (%s); trying again", self.node.name, exc)
                close_old_connections()
                connection.close()
        try:
            if ticker is not None:
                ticker.join(timeout=5)
            self.candidate.resign()
            node_stop(node=self.node)
        finally:
            connection.close()


def agent_start() -> NodeAgent:
    agent = NodeAgent(node_register())
    node_heartbeat(node=agent.node)
    agent.candidate.campaign()
    return agent
