from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class CaseKind(models.TextChoices):
    INPUT = "input", "Job input"
    RESULT = "result", "Job result"
    SAVED = "saved", "Saved by a user"


class Case(models.Model):
    """A snapshot of an app's data; its bytes (the case format) live in storage."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cases")
    app = models.ForeignKey("catalog.App", on_delete=models.CASCADE, related_name="cases")
    app_version = models.ForeignKey(
        "catalog.AppVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=CaseKind.choices, default=CaseKind.SAVED)
    storage_path = models.CharField(max_length=500)
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or f"{self.kind} case {self.id}"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Job(models.Model):
    """A solve session: one solve procedure of one app version on one input case.

    The row is the queue: workers claim the best queued job with a conditional update, so a
    job runs at most once per attempt whoever else tries. ``attempt`` counts claims; the lease
    is renewed by the supervising worker while the solve process runs.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    app_version = models.ForeignKey("catalog.AppVersion", on_delete=models.PROTECT, related_name="jobs")
    procedure = models.CharField(max_length=100)
    priority = models.IntegerField(default=0, help_text="Higher runs first; equal priorities run first in, first out.")
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    node = models.CharField(max_length=200, blank=True)
    executor = models.CharField(
        max_length=16, blank=True, help_text="Where the current attempt runs: local, slurm or kubernetes."
    )
    external_id = models.CharField(
        max_length=200, blank=True, help_text="The engine's id of the current attempt (a Slurm job id, a Job's name)."
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    not_before = models.DateTimeField(default=timezone.now, help_text="The job is not started before this time.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    time_limit = models.FloatField(help_text="Seconds of wall-clock time before the solve is interrupted.")
    memory_limit_mb = models.PositiveIntegerField()
    input_case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    result_case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    data_session = models.ForeignKey(
        "DataSession",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        help_text="The data session whose Solve submitted the job, if one did.",
    )
    progress = models.JSONField(default=dict, blank=True)
    progress_points = models.JSONField(default=list, blank=True)
    solver_status = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    interrupt_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    log_path = models.CharField(max_length=500, blank=True)
    log_size = models.BigIntegerField(
        default=0, help_text="Bytes the job has logged, dropped ones included: where its log ends."
    )
    log_dropped_at = models.BigIntegerField(
        default=0, help_text="Where the bytes dropped from a log over its cap begin: the end of the head kept."
    )
    log_dropped = models.BigIntegerField(default=0, help_text="Bytes dropped from the middle of a log over its cap.")
    cpu_seconds = models.FloatField(
        null=True, blank=True, help_text="CPU time of the job's sandbox, summed over its attempts; None until one ends."
    )
    peak_memory_mb = models.FloatField(
        null=True, blank=True, help_text="The most memory the job's sandbox used at once, over its attempts."
    )
    webhook_url = models.CharField(
        max_length=2000, blank=True, help_text="Each state change is POSTed here, signed (apps.webhooks)."
    )
    notify_email = models.BooleanField(default=False, help_text="E-mail the owner when the job ends.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "-priority", "created_at"], name="job_queue_order"),
            # Fair share: when each user's last solve started (sessions.fair_share).
            models.Index(fields=["owner", "-started_at"], name="job_owner_last_start"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.procedure} of {self.app_version})"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES


class JobLogChunk(models.Model):
    """The log of a running job, in pieces; it moves to storage when the job ends."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_chunks")
    attempt = models.PositiveIntegerField()
    offset = models.BigIntegerField(help_text="Byte offset of this piece in the job's log.")
    text = models.TextField()

    class Meta:
        ordering = ["offset"]
        indexes = [models.Index(fields=["job", "offset"], name="job_log_offset")]

    def __str__(self) -> str:
        return f"log of job {self.job_id} at {self.offset}"


class SessionState(models.TextChoices):
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    LOST = "lost", "Lost"
    FAILED = "failed", "Failed to start"


LIVE_SESSION_STATES = (SessionState.STARTING, SessionState.RUNNING)


class DataSession(models.Model):
    """One user's live process of one app version, reached only through the websocket proxy."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_sessions")
    app_version = models.ForeignKey("catalog.AppVersion", on_delete=models.PROTECT, related_name="data_sessions")
    state = models.CharField(max_length=16, choices=SessionState.choices, default=SessionState.STARTING, db_index=True)
    node = models.CharField(max_length=200, blank=True)
    host = models.CharField(max_length=200, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    secret = models.CharField(
        max_length=100, help_text="What the proxy shows the session process; never sent to a browser."
    )
    pid = models.IntegerField(null=True, blank=True)
    connections = models.IntegerField(default=0, help_text="Browser tabs connected through the proxy now.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    last_active_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    memory_mb = models.FloatField(null=True, blank=True)
    cpu_seconds = models.FloatField(null=True, blank=True)  # the sandbox's CPU time so far (kept as the most seen)
    peak_memory_mb = models.FloatField(
        null=True, blank=True, help_text="The most memory the session's sandbox used at once."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"session {self.id} of {self.app_version} for {self.owner}"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_SESSION_STATES
