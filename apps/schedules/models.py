"""Schedules: recurring runs of an app's solve procedure, and the history of their runs."""

from django.conf import settings
from django.db import models
from django.utils.timezone import now


class Overlap(models.TextChoices):
    SKIP = "skip", "Skip the slot"
    QUEUE = "queue", "Wait for the previous run"


class Missed(models.TextChoices):
    ONCE = "once", "Run once for the latest missed slot"
    SKIP = "skip", "Skip the missed slots"


class Schedule(models.Model):
    """A procedure run at every slot of a cron expression (in a time zone) or of an interval, as its owner."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200, blank=True)
    app = models.ForeignKey("catalog.App", on_delete=models.CASCADE, related_name="schedules")
    procedure = models.CharField(max_length=100)
    version = models.CharField(
        max_length=64, default="latest", help_text="The app version its runs use: latest (at each run) or a fixed one."
    )
    cron = models.CharField(max_length=200, blank=True, help_text="Five fields; empty for an interval schedule.")
    timezone = models.CharField(max_length=64, default="UTC", help_text="The time zone of the cron expression.")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    anchor_at = models.DateTimeField(default=now, help_text="An interval's slots are this plus multiples.")
    input_values = models.JSONField(null=True, blank=True)
    input_case = models.UUIDField(null=True, blank=True, help_text="A case of the app, read at every run.")
    overlap = models.CharField(max_length=8, choices=Overlap.choices, default=Overlap.SKIP)
    missed = models.CharField(max_length=8, choices=Missed.choices, default=Missed.ONCE)
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=500, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True, help_text="The next slot; none: paused.")
    refusals_in_a_row = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name or f"{self.app_id}:{self.procedure} ({self.when})"

    @property
    def when(self) -> str:
        if self.cron:
            return f"cron {self.cron} ({self.timezone})"
        return f"every {self.interval_seconds} s"


class RunState(models.TextChoices):
    SUBMITTING = "submitting", "Submitting"
    SUBMITTED = "submitted", "Submitted"
    WAITING = "waiting", "Waiting for the previous run"
    SKIPPED = "skipped", "Skipped: the previous run was still going"
    MISSED = "missed", "Missed"
    REFUSED = "refused", "Refused"


class ScheduleRun(models.Model):
    """One slot of a schedule: what became of it. One row per slot, whichever node got there first."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    slot_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=RunState.choices)
    job = models.ForeignKey("pro_sessions.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.TextField(blank=True)
    node = models.CharField(max_length=200, blank=True, help_text="The node that fired the slot.")
    created_at = models.DateTimeField(default=now)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-slot_at"]
        constraints = [models.UniqueConstraint(fields=["schedule", "slot_at"], name="schedule_run_one_per_slot")]
        indexes = [models.Index(fields=["state"], name="schedule_run_state")]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.slot_at:%Y-%m-%d %H:%M:%S}: {self.state}"
