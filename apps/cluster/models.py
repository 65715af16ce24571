from django.db import models
from django.utils import timezone


class NodeState(models.TextChoices):
    UP = "up", "Up"
    STOPPED = "stopped", "Stopped"
    DEAD = "dead", "Dead"


class NodeRole(models.TextChoices):
    """What a node does (``PRO_NODE_ROLES``); a node with none runs its agent and task workers only."""

    WEB = "web", "Web"
    SESSIONS = "sessions", "Data sessions"
    SOLVES = "solves", "Solves"


# The name of the one lease row whose holder is the master.
MASTER_LEASE = "master"


class Node(models.Model):
    """One server of the platform, as its node agent last reported it."""

    name = models.CharField(max_length=200, unique=True)
    address = models.CharField(
        max_length=200, blank=True, help_text="Where the other nodes reach this node's data session processes."
    )
    roles = models.JSONField(default=list)
    max_solves = models.PositiveIntegerField(default=0, help_text="Concurrent solves it runs (its solves role).")
    max_sessions = models.PositiveIntegerField(default=0, help_text="Data sessions it hosts (its sessions role).")
    version = models.CharField(max_length=40, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.UP)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)
    declared_dead_at = models.DateTimeField(null=True, blank=True)
    declared_dead_by = models.CharField(max_length=200, blank=True, help_text="The master that declared it dead.")
    restarts = models.PositiveIntegerField(
        default=0, help_text="Children of run_platform that died and were started again on this node."
    )
    last_restart_at = models.DateTimeField(null=True, blank=True)
    last_restart_child = models.CharField(max_length=40, blank=True, help_text="e.g. web, workers, solves.")
    last_restart_reason = models.CharField(max_length=200, blank=True, help_text="How the child ended.")
    sandbox = models.CharField(
        max_length=32, blank=True, help_text="How it runs app code: bubblewrap, off (unconfined) or unavailable."
    )
    sandbox_hard_limits = models.BooleanField(
        default=False, help_text="Whether its sandboxes get cgroup limits on processes and memory."
    )
    sandbox_detail = models.TextField(blank=True, help_text="Why app code cannot be sandboxed there, if it cannot.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MasterLease(models.Model):
    """The one row whose holder is the master, for as long as it renews the lease in time.

    ``term`` grows by one with every new holder: a master's actions check the term they were
    elected in, so that an old master back from a stall cannot act on a newer master's cluster.
    """

    name = models.CharField(max_length=40, primary_key=True, default=MASTER_LEASE)
    holder = models.CharField(max_length=200, blank=True)
    term = models.PositiveBigIntegerField(default=0)
    acquired_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or 'nobody'} (term {self.term})"
