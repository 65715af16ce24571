"""Webhooks and e-mail when a job changes state: each owner's signing secret and the delivery log.

The job's own choices (its ``webhook_url`` and ``notify_email``) are fields of
:class:`sessions.models.Job`; what belongs to the owner (the secret, the e-mail default) and what
happened to each delivery lives here.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class OwnerSettings(models.Model):
    """One user's webhook secret (encrypted with a key derived from the platform's secret key:
    usable for signing, never stored in the clear) and their e-mail default."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_settings")
    secret_encrypted = models.TextField(blank=True, help_text="AES-GCM, base64; see apps.webhooks.services.")
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    email_job_end = models.BooleanField(
        default=False, help_text="E-mail the user when their jobs end, unless a job says otherwise."
    )

    class Meta:
        verbose_name = "webhook and e-mail settings"
        verbose_name_plural = "webhook and e-mail settings"

    def __str__(self) -> str:
        return f"webhook settings of {self.user}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class Delivery(models.Model):
    """One state change of one job, POSTed (and retried) to the job's webhook URL."""

    job = models.ForeignKey("pro_sessions.Job", on_delete=models.CASCADE, related_name="webhook_deliveries")
    url = models.CharField(max_length=2000)
    event = models.CharField(max_length=40, help_text="job.<state>")
    body = models.TextField(help_text="The JSON sent, the same bytes on every attempt.")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True, help_text="Of the last attempt's answer.")
    error = models.CharField(max_length=500, blank=True, help_text="Why the last attempt failed.")
    response_excerpt = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_try_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_try_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} of job {self.job_id} to {self.url}"
