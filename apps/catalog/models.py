from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sessions.runtime.manifest import version_key


class Runtime(models.Model):
    """A named, versioned base environment apps run on: ``py311-highs@1.2``.

    The built-in runtime is the platform's own interpreter. Every other runtime is a signed
    ``.proruntime`` file in storage (:mod:`sessions.runtime.runtime_file`): a Python version and
    the packages of a lock file, checked by every node against its trusted keys before first use.
    """

    key = models.CharField(max_length=64, unique=True, help_text="name@version, e.g. py311-highs@1.2.")
    name = models.SlugField(max_length=48, db_index=True, default="", help_text="The family, e.g. py311-highs.")
    version = models.CharField(max_length=32, default="")
    python = models.CharField(max_length=8, default="3.11", help_text="The Python version, e.g. 3.11.")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    interpreter = models.CharField(
        max_length=500, blank=True, help_text="Built-in runtime only: the platform's own Python executable."
    )
    is_builtin = models.BooleanField(default=False)
    lock = models.TextField(blank=True, help_text="The lock file (with hashes) it was built from.")
    packages = models.JSONField(default=dict, blank=True, help_text="Package name to version.")
    file_path = models.CharField(max_length=500, blank=True, help_text="Storage path of the signed file.")
    file_sha256 = models.CharField(max_length=64, blank=True)
    file_size = models.BigIntegerField(default=0)
    signer = models.CharField(max_length=32, blank=True, help_text="Id of the key that signed it.")
    deprecated_at = models.DateTimeField(
        null=True, blank=True, help_text="Deprecated: new publishes may not choose it; its app versions still run."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-created_at"]

    def __str__(self) -> str:
        return self.key

    @property
    def is_deprecated(self) -> bool:
        return self.deprecated_at is not None


class EnvironmentState(models.TextChoices):
    PENDING = "pending"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class Environment(models.Model):
    """An app's packages installed on top of a runtime; shared by every app version with the same needs.

    Its key is the hash of the runtime and the sorted requirements. Built once (in a sandbox),
    stored as an archive, and unpacked into each node's cache on first use, checked by hash.
    """

    key = models.CharField(max_length=64, unique=True)
    runtime = models.ForeignKey(Runtime, on_delete=models.PROTECT, related_name="environments")
    requirements = models.JSONField(default=list, help_text="The exact pins apps asked for, sorted.")
    state = models.CharField(max_length=16, choices=EnvironmentState.choices, default=EnvironmentState.PENDING)
    build_log = models.TextField(blank=True, help_text="The installer's output of the last build.")
    packages = models.JSONField(default=dict, blank=True, help_text="What the build installed: name to version.")
    preload = models.JSONField(
        default=list, blank=True, help_text="Modules its apps import from it: warm interpreters import them ahead."
    )
    archive_path = models.CharField(max_length=500, blank=True)
    archive_sha256 = models.CharField(max_length=64, blank=True)
    archive_size = models.BigIntegerField(default=0)
    installed_size = models.BigIntegerField(default=0, help_text="Bytes on a node's disk once unpacked.")
    created_at = models.DateTimeField(default=timezone.now)
    build_started_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.runtime.key} + {', '.join(self.requirements)}"


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
    runtime_requested = models.CharField(
        max_length=64, blank=True, help_text="What the manifest asked for, e.g. py311-highs@1 (the newest 1.x)."
    )
    environment = models.ForeignKey(
        "Environment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="app_versions",
        help_text="The packages of its requirements, when it has any.",
    )
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
