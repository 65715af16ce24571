from django.db import models
from django.utils import timezone


class NodeState(models.TextChoices):
    UP = "up", "Up"
    STOPPED = "stopped", "Stopped"
    DEAD = "dead", "Dead"


class Node(models.Model):
    """One server of the platform, as its node agent last reported it."""

    name = models.CharField(max_length=200, unique=True)
    address = models.CharField(max_length=200, blank=True)
    roles = models.JSONField(default=list)
    version = models.CharField(max_length=40, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.UP)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
