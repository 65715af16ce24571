"""The schedules API's bodies and answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pro_portal.output import OutputSerializer
from pro_portal.strict import StrictSerializer
from sessions.serializers import LenientLimit

from .models import Missed, Overlap, RunState, Schedule, ScheduleRun

INPUT_HELP = "Identifier values, as for a job's input; identifiers not given keep their defaults."


class ScheduleFields(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    version = serializers.CharField(
        max_length=64, required=False, help_text="latest (the default: the newest at each run) or a version to keep."
    )
    cron = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Five fields: minute hour day month weekday."
    )
    timezone = serializers.CharField(max_length=64, required=False, help_text="IANA time zone of the cron expression.")
    interval_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=366 * 86400)
    input = serializers.DictField(required=False, allow_null=True, help_text=INPUT_HELP)
    input_case = serializers.UUIDField(
        required=False, allow_null=True, help_text="A case of the app, read at each run."
    )
    overlap = serializers.ChoiceField(choices=Overlap.choices, required=False)
    missed = serializers.ChoiceField(choices=Missed.choices, required=False)


class ScheduleIn(ScheduleFields):
    """A schedule to create: ``cron`` (with ``timezone``, default UTC) or ``interval_seconds``."""

    app = serializers.SlugField(max_length=64)
    procedure = serializers.CharField(max_length=100)


class SchedulePatch(ScheduleFields):
    """Fields to change; ``paused``: true pauses it, false resumes it."""

    paused = serializers.BooleanField(required=False)


def spec_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A validated body as the service's field names."""
    fields = dict(data)
    if "input" in fields:
        fields["input_values"] = fields.pop("input")
    if fields.get("input_case") is not None:
        fields["input_case"] = str(fields["input_case"])
    return fields


class RunOut(OutputSerializer):
    job_state = serializers.CharField(source="job.state", allow_null=True, default=None)

    class Meta:
        model = ScheduleRun
        fields = ["id", "slot_at", "state", "job", "job_state", "message", "node", "created_at", "submitted_at"]


class ScheduleOut(OutputSerializer):
    app = serializers.CharField(source="app.name")
    owner = serializers.CharField(source="owner.username")
    input = serializers.JSONField(source="input_values", allow_null=True)
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "owner",
            "app",
            "procedure",
            "version",
            "cron",
            "timezone",
            "interval_seconds",
            "input",
            "input_case",
            "overlap",
            "missed",
            "paused",
            "paused_reason",
            "next_run_at",
            "refusals_in_a_row",
            "created_at",
            "last_run",
        ]

    @extend_schema_field(RunOut(allow_null=True))
    def get_last_run(self, schedule: Schedule) -> dict[str, Any] | None:
        run = schedule.runs.select_related("job").order_by("-slot_at").first()
        return None if run is None else RunOut(run).data


class RunQuery(serializers.Serializer):
    state = serializers.ChoiceField(choices=RunState.choices, required=False, allow_blank=True)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10**9, default=0)
    limit = LenientLimit(highest=1000, default=100, required=False)
