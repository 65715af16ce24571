"""What the API of jobs, cases and data sessions takes (bodies, query parameters) and gives."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from apps.catalog.selectors import version_resolve_for_user
from pro_portal.errors import ApplicationError
from pro_portal.output import OutputSerializer
from pro_portal.strict import StrictSerializer
from sessions.runtime.manifest import InputTypeError, check_input_types

from .fair_share import wait_reason
from .jobs import LOG_PAGE_BYTES
from .models import Case, CaseKind, DataSession, Job, JobState
from .ticket_scope import app_in_scope
from .usage import By


def valid_query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The query parameters, checked like a body (DRF's text fields refuse NUL, which PostgreSQL cannot hold)."""
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


def wants_json(request: Request) -> bool:
    """``?format=json``: a case as its identifiers in JSON instead of the case file."""
    return request.query_params.get("format") == "json"


class LenientLimit(serializers.Field):
    """A count of rows to answer: kept within ``[1, highest]``; what is not a whole number is the default."""

    def __init__(self, *, highest: int, **kwargs: Any):
        self.highest = highest
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        try:
            return min(self.highest, max(1, int(data)))
        except (TypeError, ValueError):
            return self.default

    def to_representation(self, value: int) -> int:
        return value


class Flag(serializers.Field):
    """True when given with any value but the empty one."""

    def to_internal_value(self, data: Any) -> bool:
        return bool(data)

    def to_representation(self, value: bool) -> bool:
        return value


# ---------------------------------------------------------------- jobs


class JobIn(StrictSerializer):
    """A job to submit; ``context`` holds the submitting ``user`` and the ``scope`` of their credential."""

    app = serializers.SlugField(max_length=64)
    version = serializers.CharField(max_length=64, required=False, help_text="Default: the version tagged latest.")
    procedure = serializers.CharField(max_length=100)
    input = serializers.DictField(
        required=False,
        help_text="Identifier values in the JSON types the app declares (a number, an integer, true or false, "
        "text; a set as a list of element names; a table as [key, ..., value] rows); identifiers not given keep "
        "their defaults.",
    )
    input_case = serializers.UUIDField(required=False)
    priority = serializers.IntegerField(default=0, min_value=-100, max_value=100)
    time_limit = serializers.FloatField(required=False, min_value=0.1, max_value=7 * 24 * 3600)
    memory_limit_mb = serializers.IntegerField(required=False, min_value=64, max_value=1024 * 1024)
    start_at = serializers.DateTimeField(required=False, help_text="Do not start before this time.")
    webhook_url = serializers.CharField(
        max_length=2000,
        required=False,
        help_text="Each state change of the job is POSTed here as JSON, signed with your webhook secret "
        "(X-Pro-Signature); http or https, not the platform's own network.",
    )
    notify_email = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="E-mail me when it ends (default: my setting)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The input's values against the types the app version declares, before anything is queued."""
        app_in_scope(attrs["app"], self.context["scope"])
        if attrs.get("input"):
            version = version_resolve_for_user(self.context["user"], attrs["app"], attrs.get("version") or "latest")
            try:
                check_input_types(version.manifest.get("interface", {}), attrs["input"])
            except InputTypeError as exc:
                raise ApplicationError(
                    f"The input is not valid: {exc}",
                    code="bad_input",
                    detail={"input": {exc.identifier: [exc.problem]}},
                ) from None
        return attrs


class JobOut(OutputSerializer):
    app = serializers.CharField(source="app_version.app.name")
    version = serializers.CharField(source="app_version.version")
    owner = serializers.CharField(source="owner.username")
    input_case = serializers.UUIDField(source="input_case_id", allow_null=True)
    result_case = serializers.UUIDField(source="result_case_id", allow_null=True)
    queue_seconds = serializers.SerializerMethodField()
    run_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "app",
            "version",
            "owner",
            "procedure",
            "state",
            "priority",
            "attempt",
            "max_attempts",
            "node",
            "executor",
            "external_id",
            "created_at",
            "not_before",
            "started_at",
            "finished_at",
            "queue_seconds",
            "run_seconds",
            "cpu_seconds",
            "peak_memory_mb",
            "time_limit",
            "memory_limit_mb",
            "progress",
            "progress_points",
            "solver_status",
            "error_message",
            "interrupt_requested_at",
            "cancel_requested_at",
            "input_case",
            "result_case",
            "webhook_url",
            "notify_email",
        ]

    def get_queue_seconds(self, job: Job) -> float | None:
        return round((job.started_at - job.created_at).total_seconds(), 3) if job.started_at else None

    def get_run_seconds(self, job: Job) -> float | None:
        if not job.started_at or not job.finished_at:
            return None
        return round((job.finished_at - job.started_at).total_seconds(), 3)


class JobQuery(serializers.Serializer):
    state = serializers.ChoiceField(choices=JobState.choices, required=False, allow_blank=True)
    app = serializers.CharField(required=False, allow_blank=True)
    owner = serializers.CharField(required=False, allow_blank=True, help_text="An admin's filter: this user's jobs.")
    since = serializers.DateField(required=False, help_text="Submitted on this day or later.")
    until = serializers.DateField(required=False, help_text="Submitted on this day or earlier.")
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="The job's number, or part of its app or procedure."
    )
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10**9, default=0)
    limit = LenientLimit(highest=1000, default=100, required=False)


class JobLogOut(serializers.Serializer):
    text = serializers.CharField(
        help_text="The log from the offset asked for, whole characters; where bytes were dropped (the log is "
        "capped at PRO_JOB_LOG_MAX_BYTES), one line saying how many stands for them."
    )
    offset = serializers.IntegerField(
        help_text="Ask for the log from here for the next page, or to follow it; it never goes backwards."
    )
    size = serializers.IntegerField(help_text="Where the log ends as far as it is written (dropped bytes included).")
    dropped = serializers.IntegerField(help_text="Bytes dropped from the middle of the log so far.")
    finished = serializers.BooleanField(help_text="The job has ended and this page reaches the end of its log.")


class JobLogQuery(serializers.Serializer):
    offset = serializers.IntegerField(
        default=0, min_value=0, max_value=2**62, help_text="Byte offset in the log to read from (default 0)."
    )
    limit = serializers.IntegerField(
        default=LOG_PAGE_BYTES,
        min_value=1,
        max_value=LOG_PAGE_BYTES,
        help_text=f"At most this many bytes of log (default and most {LOG_PAGE_BYTES}).",
    )


# ---------------------------------------------------------------- cases


class CaseOut(OutputSerializer):
    app = serializers.CharField(source="app.name")
    version = serializers.CharField(source="app_version.version", default=None, allow_null=True)
    owner = serializers.CharField(source="owner.username")

    class Meta:
        model = Case
        fields = ["id", "name", "kind", "app", "version", "owner", "size", "created_at"]


class CaseQuery(serializers.Serializer):
    app = serializers.CharField(required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=CaseKind.choices, required=False, allow_blank=True)


class CaseUploadQuery(serializers.Serializer):
    app = serializers.CharField()
    name = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=[CaseKind.SAVED, CaseKind.INPUT], default=CaseKind.SAVED)


# ---------------------------------------------------------------- data sessions


class SessionIn(StrictSerializer):
    app = serializers.SlugField(max_length=64)
    version = serializers.CharField(max_length=64, required=False, default="latest")


class SessionQuery(serializers.Serializer):
    live = Flag(required=False, default=False)


class SessionOut(OutputSerializer):
    app = serializers.CharField(source="app_version.app.name")
    version = serializers.CharField(source="app_version.version")
    owner = serializers.CharField(source="owner.username")
    url = serializers.SerializerMethodField()
    websocket = serializers.SerializerMethodField()

    class Meta:
        model = DataSession
        fields = [
            "id",
            "app",
            "version",
            "owner",
            "state",
            "node",
            "connections",
            "created_at",
            "started_at",
            "last_active_at",
            "stopped_at",
            "error_message",
            "memory_mb",
            "peak_memory_mb",
            "cpu_seconds",
            "url",
            "websocket",
        ]

    def get_url(self, session: DataSession) -> str:
        return f"/sessions/{session.pk}/"

    def get_websocket(self, session: DataSession) -> str:
        return f"/ws/sessions/{session.pk}/"


class JobDetailOut(JobOut):
    """One job, with why it waits while it is queued."""

    waiting_for = serializers.SerializerMethodField(
        help_text="While queued: why it has not started (its start time, a quota, the seats, a free slot)."
    )

    class Meta(JobOut.Meta):
        fields = [*JobOut.Meta.fields, "waiting_for"]

    def get_waiting_for(self, job: Job) -> str:
        return wait_reason(job)


# ---------------------------------------------------------------- usage


class UsageQuery(serializers.Serializer):
    by = serializers.ChoiceField(
        choices=[by.value for by in By],
        default=By.APP.value,
        help_text="One row per user, per group (a user in several groups counts in each) or per app; "
        "a user who is not an admin may only ask by app.",
    )
    since = serializers.DateField(
        required=False, help_text="The first day of the period (default: 29 days before until)."
    )
    until = serializers.DateField(required=False, help_text="The last day of the period, included (default: today).")


class UsageRowOut(serializers.Serializer):
    name = serializers.CharField(
        allow_null=True, help_text="The user, group or app of the row; null: the users in no group."
    )
    jobs = serializers.IntegerField(help_text="Jobs that finished in the period after they started.")
    job_hours = serializers.FloatField(help_text="Their wall-clock hours, start to end.")
    job_cpu_hours = serializers.FloatField(help_text="CPU hours of their sandboxes, over all their attempts.")
    peak_memory_mb = serializers.FloatField(
        allow_null=True, help_text="The most memory one of the jobs or sessions used at once (MB)."
    )
    sessions = serializers.IntegerField(
        help_text="Data sessions that stopped in the period after they started, and those still running "
        "when the period reaches today."
    )
    session_hours = serializers.FloatField(help_text="Their wall-clock hours, start to stop (or now).")
    session_cpu_hours = serializers.FloatField(help_text="CPU hours of their sandboxes.")


class UsageOut(serializers.Serializer):
    by = serializers.CharField()
    since = serializers.DateField()
    until = serializers.DateField()
    rows = UsageRowOut(many=True)
