from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .addresses import parse_networks

EVERYONE_GROUP = "Everyone"
PUBLISHERS_GROUP = "Publishers"


class Role(models.TextChoices):
    """The three roles of the platform; admins are superusers, publishers a built-in group."""

    USER = "user", "User"
    PUBLISHER = "publisher", "Publisher"
    ADMIN = "admin", "Admin"


class ApiTicket(models.Model):
    """A short-lived bearer token for the API, stored hashed (only its owner ever sees it)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tickets")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a ticket in lists.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    scope = models.JSONField(
        default=dict,
        blank=True,
        help_text="Empty: the user's full rights. {'session': id, 'app': name}: a data session's own calls only.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class ApiKey(models.Model):
    """A long-lived bearer key for unattended scripts; created and revoked by its owner, shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, as its owner named it.")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a key in lists.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the key does not expire.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    @property
    def scope(self) -> dict:
        """A key carries its owner's full rights, like a personal ticket (see TicketScope)."""
        return {}


class GroupNetworks(models.Model):
    """The address ranges a group's members may come from (IP range filtering per group)."""

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="networks")
    networks = models.TextField(
        help_text="One range per line in CIDR notation (10.0.0.0/8, 2001:db8::/32). "
        "A member of groups with ranges must come from one of them; groups without ranges add no restriction."
    )

    class Meta:
        verbose_name = "group address ranges"
        verbose_name_plural = "group address ranges"

    def __str__(self) -> str:
        return f"address ranges of {self.group}"

    def clean(self) -> None:
        try:
            parse_networks(self.networks.split())
        except ValueError as exc:
            raise ValidationError({"networks": str(exc)}) from None


class Quota(models.Model):
    """What the members of a group, or one user, may use at once and ask for.

    An empty field is not set here: a user's effective limit is their own quota's where it is set,
    else the most generous of their groups' that set it, else the platform's default
    (``PRO_QUOTA_*``). Admins have no limits. See :mod:`apps.accounts.quotas`.
    """

    group = models.OneToOneField("auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="quota")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="quota"
    )
    running_jobs = models.PositiveIntegerField(null=True, blank=True, help_text="Solves running at once, cluster-wide.")
    queued_jobs = models.PositiveIntegerField(null=True, blank=True, help_text="Jobs waiting in the queue at once.")
    sessions = models.PositiveIntegerField(null=True, blank=True, help_text="Data sessions open at once.")
    max_priority = models.IntegerField(null=True, blank=True, help_text="The highest priority a job may be given.")
    max_time_limit = models.FloatField(
        null=True, blank=True, help_text="The longest time limit a job may ask, in seconds."
    )
    max_memory_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="The largest memory limit a job may ask, in MB."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(group__isnull=True, user__isnull=False)
                | models.Q(group__isnull=False, user__isnull=True),
                name="quota_of_a_group_or_a_user",
            )
        ]

    def __str__(self) -> str:
        return f"quota of {self.group or self.user}"


class SecurityOutcome(models.TextChoices):
    """How a security event ended (the field takes any short word; these are the platform's own)."""

    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class SecurityEvent(models.Model):
    """One security-relevant event. Append-only: rows are never changed, only removed by retention."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=64, db_index=True)
    actor = models.CharField(
        max_length=150, blank=True, db_index=True, help_text="User name, kept if the user is deleted."
    )
    source = models.CharField(max_length=64, blank=True, help_text="The client's address.")
    target = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=16, default=SecurityOutcome.SUCCESS, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} {self.actor} {self.outcome}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise PermissionError("security events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("security events are append-only; retention removes old ones")


class SsoIdentity(models.Model):
    """A platform account's identity at an OpenID Connect provider: its issuer and subject.

    Users who log in through the provider are found by this pair, never by a user name or an
    e-mail address (which another account, or another provider's user, may also have).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)
    groups = models.JSONField(default=list, blank=True, help_text="the provider's groups at the last login")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")]
        verbose_name = "single sign-on identity"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
