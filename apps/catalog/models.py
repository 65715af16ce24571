from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sessions.runtime.manifest import version_key


class Runtime(models.Model):
    """An execution environment that runs apps: a Python interpreter with the SDK and solvers."""

    key = models.SlugField(max_length=64, unique=True, help_text="What a manifest's 'runtime' field names.")
    title = models.CharField(max_length=200)
    interpreter = models.CharField(max_length=500, help_text="The Python executable on every node.")
    description = models.TextField(blank=True)
    is_builtin = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class App(models.Model):
    """A published optimization app; its versions hold the encrypted packages."""

    name = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=64, default="General", db_index=True)
    icon_path = models.CharField(max_length=500, blank=True, help_text="Storage path of the icon, if any.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_apps"
    )
    latest_version = models.ForeignKey(
        "AppVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version tagged 'latest'.",
    )
    network_outbound = models.BooleanField(
        default=False,
        help_text="Admins only: its sandboxes may reach other hosts through an HTTP proxy (never this node's own "
        "addresses or the platform's services).",
    )
    network_targets = models.JSONField(
        default=list,
        blank=True,
        help_text='Admins only: "host:port" services its sandboxes may reach, e.g. "db.example.com:3306" or '
        '"127.0.0.1:3306" for a service of the node itself.',
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category", "title"]

    def __str__(self) -> str:
        return self.name


class VerificationState(models.TextChoices):
    PENDING = "pending", "Waiting for verification"
    RUNNING = "running", "Being verified"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed verification"


class AppVersion(models.Model):
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64)
    runtime = models.ForeignKey(Runtime, on_delete=models.PROTECT, related_name="app_versions")
    manifest = models.JSONField(help_text="The validated manifest, with the app's declared interface.")
    package_path = models.CharField(max_length=500, help_text="Storage path of the encrypted package.")
    package_size = models.BigIntegerField()
    package_sha256 = models.CharField(max_length=64)
    icon_path = models.CharField(max_length=500, blank=True)
    is_hidden = models.BooleanField(default=False, help_text="Hidden from users; queued work still runs.")
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(default=timezone.now)
    verification_state = models.CharField(
        max_length=16, choices=VerificationState.choices, default=VerificationState.PENDING
    )
    verification_error = models.TextField(blank=True, help_text="What the verification run reported, verbatim.")
    verified_at = models.DateTimeField(null=True, blank=True)
    becomes_latest = models.BooleanField(default=False, help_text="Takes the latest tag once verified.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "version"], name="unique_app_version")]
        ordering = ["app__name", "-published_at"]

    def __str__(self) -> str:
        return f"{self.app.name} {self.version}"

    @property
    def sort_key(self) -> tuple:
        return version_key(self.version)

    @property
    def is_latest(self) -> bool:
        return self.app.latest_version_id == self.pk


class AccessLevel(models.TextChoices):
    VIEWER = "viewer", "Viewer (sees and runs the app)"
    COLLABORATOR = "collaborator", "Collaborator (also manages it)"


# The access of admins and of the app's owner: not a level one grants, so not an AccessLevel.
MANAGER_ACCESS = "manager"


class AppGrant(models.Model):
    """Access to an app for one user or one group; it covers every version of the app."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="app_grants"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="app_grants")
    level = models.CharField(max_length=16, choices=AccessLevel.choices, default=AccessLevel.VIEWER)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False)),
                name="grant_to_user_or_group",
            ),
            models.UniqueConstraint(fields=["app", "user"], condition=Q(user__isnull=False), name="one_grant_per_user"),
            models.UniqueConstraint(
                fields=["app", "group"], condition=Q(group__isnull=False), name="one_grant_per_group"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grantee_label} → {self.app.name} ({self.level})"

    @property
    def grantee_label(self) -> str:
        return f"user {self.user.username}" if self.user_id else f"group {self.group.name}"
