"""Named connections to an application database or a company web service, granted to apps.

An admin defines a connection once (its address, user and secret); apps granted it get it in
their sandbox by name (``pro_sdk.connection("warehouse")``), with a network grant for just its
host and port. The secret and any headers are sealed at rest (:mod:`pro_portal.sealing`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ConnectionKind(models.TextChoices):
    MYSQL = "mysql", "MySQL / MariaDB"
    POSTGRESQL = "postgresql", "PostgreSQL"
    SQLALCHEMY = "sqlalchemy", "Another database (SQLAlchemy URL)"
    SERVICE = "service", "Web service"


class Connection(models.Model):
    name = models.SlugField(max_length=64, unique=True, help_text="What app code asks for, e.g. warehouse.")
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=ConnectionKind.choices)
    url = models.CharField(
        max_length=2000,
        help_text="Where it is, without its secret: mysql://planner@db:3306/plans, or a service's base URL.",
    )
    host = models.CharField(max_length=253, help_text="From the URL: what the sandbox's network grant opens.")
    port = models.PositiveIntegerField()
    secret_sealed = models.TextField(blank=True, help_text="The password or token, sealed.")
    headers_sealed = models.TextField(blank=True, help_text="A web service's extra headers (JSON), sealed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    apps = models.ManyToManyField("catalog.App", through="ConnectionGrant", related_name="connections", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ConnectionGrant(models.Model):
    """An app's right to a connection: its sandboxes get it from their next start on."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="grants")
    app = models.ForeignKey("catalog.App", on_delete=models.CASCADE, related_name="connection_grants")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "app"], name="one_grant_per_connection_and_app")]
        ordering = ["connection__name", "app__name"]

    def __str__(self) -> str:
        return f"{self.connection.name} → {self.app.name}"
