from django.conf import settings
from django.core.files.storage import default_storage
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.errors import NotFound
from pro_portal.openapi import ERROR
from pro_portal.streaming import file_download
from pro_portal.uploads import uploaded_stream

from . import data_sessions, jobs
from .cases import case_delete, case_load, case_upload, cases_for_user
from .models import LIVE_SESSION_STATES, Case, CaseKind, DataSession, Job, JobState
from .ticket_scope import app_in_scope, case_get_in_scope, job_get_in_scope, jobs_in_scope, scope_app


class JobIn(serializers.Serializer):
    app = serializers.SlugField(max_length=64)
    version = serializers.CharField(max_length=64, required=False, help_text="Default: the version tagged latest.")
    procedure = serializers.CharField(max_length=100)
    input = serializers.DictField(
        required=False, help_text="Identifier values; identifiers not given keep their defaults."
    )
    input_case = serializers.UUIDField(required=False)
    priority = serializers.IntegerField(default=0, min_value=-100, max_value=100)
    time_limit = serializers.FloatField(required=False, min_value=0.1, max_value=7 * 24 * 3600)
    memory_limit_mb = serializers.IntegerField(required=False, min_value=64, max_value=1024 * 1024)
    start_at = serializers.DateTimeField(required=False, help_text="Do not start before this time.")


class JobOut(serializers.ModelSerializer):
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
            "created_at",
            "not_before",
            "started_at",
            "finished_at",
            "queue_seconds",
            "run_seconds",
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
        ]

    def get_queue_seconds(self, job: Job) -> float | None:
        return round((job.started_at - job.created_at).total_seconds(), 3) if job.started_at else None

    def get_run_seconds(self, job: Job) -> float | None:
        if not job.started_at or not job.finished_at:
            return None
        return round((job.finished_at - job.started_at).total_seconds(), 3)


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
        default=jobs.LOG_PAGE_BYTES,
        min_value=1,
        max_value=jobs.LOG_PAGE_BYTES,
        help_text=f"At most this many bytes of log (default and most {jobs.LOG_PAGE_BYTES}).",
    )


def valid_query(serializer_class: type[serializers.Serializer], request) -> dict:
    """The query parameters, checked like a body (DRF's text fields refuse NUL, which PostgreSQL cannot hold)."""
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class JobQuery(serializers.Serializer):
    state = serializers.ChoiceField(choices=JobState.choices, required=False, allow_blank=True)
    app = serializers.CharField(required=False, allow_blank=True)


class JobListApi(APIView):
    session_ticket_allowed = True
    parser_classes = [JSONParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=JobState.values),
            OpenApiParameter("app", OpenApiTypes.STR),
            OpenApiParameter(
                "limit", OpenApiTypes.INT, description="At most this many, newest first (default 100, at most 1000)."
            ),
        ],
        responses=JobOut(many=True),
    )
    def get(self, request):
        query = valid_query(JobQuery, request)
        found = jobs_in_scope(request.user, scope_app(request.auth))
        if query.get("state"):
            found = found.filter(state=query["state"])
        if query.get("app"):
            found = found.filter(app_version__app__name=query["app"])
        try:
            limit = min(1000, max(1, int(request.query_params.get("limit", 100))))
        except ValueError:
            limit = 100
        return Response(JobOut(found[:limit], many=True).data)

    @extend_schema(request=JobIn, responses={201: JobOut, 404: ERROR, 409: ERROR})
    def post(self, request):
        given = JobIn(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        app_in_scope(data["app"], scope_app(request.auth))
        job = jobs.job_submit(
            user=request.user,
            app_name=data["app"],
            version=data.get("version"),
            procedure=data["procedure"],
            input_values=data.get("input"),
            input_case_id=data.get("input_case"),
            priority=data["priority"],
            time_limit=data.get("time_limit"),
            memory_limit_mb=data.get("memory_limit_mb"),
            not_before=data.get("start_at"),
        )
        return Response(JobOut(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    session_ticket_allowed = True

    @extend_schema(responses=JobOut)
    def get(self, request, job_id: int):
        return Response(JobOut(job_get_in_scope(request.user, job_id, scope_app(request.auth))).data)


class JobLogApi(APIView):
    session_ticket_allowed = True

    @extend_schema(
        parameters=[JobLogQuery],
        responses=JobLogOut,
        description="A page of a job's log: follow a running job, or page through a finished one, by asking "
        "again from the offset answered until `finished`.",
    )
    def get(self, request, job_id: int):
        job = job_get_in_scope(request.user, job_id, scope_app(request.auth))
        query = valid_query(JobLogQuery, request)
        page = jobs.job_log_page(job, query["offset"], query["limit"])
        return Response(
            {
                "text": page.text,
                "offset": page.offset,
                "size": page.size,
                "dropped": job.log_dropped,
                "finished": page.finished,
            }
        )


class JobInterruptApi(APIView):
    session_ticket_allowed = True

    @extend_schema(request=None, responses={200: JobOut, 409: ERROR})
    def post(self, request, job_id: int):
        job = jobs.job_interrupt(user=request.user, job=job_get_in_scope(request.user, job_id, scope_app(request.auth)))
        return Response(JobOut(job).data)


class JobCancelApi(APIView):
    session_ticket_allowed = True

    @extend_schema(request=None, responses={200: JobOut, 409: ERROR})
    def post(self, request, job_id: int):
        job = jobs.job_cancel(user=request.user, job=job_get_in_scope(request.user, job_id, scope_app(request.auth)))
        return Response(JobOut(job).data)


FORMAT = OpenApiParameter(
    "format", OpenApiTypes.STR, enum=["case", "json"], description="json: the identifiers as JSON."
)


def case_response(case: Case, as_json: bool) -> HttpResponse:
    if as_json:
        return Response({"case": str(case.id), "app": case.app.name, "identifiers": case_load(case).to_json()})
    handle = default_storage.open(case.storage_path, "rb")
    return file_download(handle, case.size, f"{case.app.name}-{case.id}.case")


class JobResultApi(APIView):
    session_ticket_allowed = True

    @extend_schema(
        parameters=[FORMAT],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
    )
    def get(self, request, job_id: int):
        job = job_get_in_scope(request.user, job_id, scope_app(request.auth))
        if job.result_case is None:
            raise NotFound(f"Job {job.pk} has no result ({job.state}).")
        return case_response(job.result_case, request.query_params.get("format") == "json")


CASE_RESPONSES = {
    (200, "application/octet-stream"): OpenApiTypes.BINARY,
    (200, "application/json"): OpenApiTypes.OBJECT,
}


class CaseOut(serializers.ModelSerializer):
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


class CaseListApi(APIView):
    session_ticket_allowed = True
    parser_classes = []

    @extend_schema(
        parameters=[
            OpenApiParameter("app", OpenApiTypes.STR),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=CaseKind.values),
        ],
        responses=CaseOut(many=True),
    )
    def get(self, request):
        query = valid_query(CaseQuery, request)
        scoped = scope_app(request.auth)
        app_name = scoped if scoped is not None else query.get("app")
        found = cases_for_user(request.user, app_name=app_name, kind=query.get("kind"))
        return Response(CaseOut(found[:500], many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("app", OpenApiTypes.STR, required=True),
            OpenApiParameter("name", OpenApiTypes.STR),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=[CaseKind.SAVED, CaseKind.INPUT]),
        ],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: CaseOut, 404: ERROR, 413: ERROR},
        description="Store a case file (the binary case format) of an app you may use.",
    )
    def post(self, request):
        query = valid_query(CaseUploadQuery, request)
        app_in_scope(query["app"], scope_app(request.auth))
        stream = uploaded_stream(request._request, "case", settings.PRO_MAX_CASE_BYTES, "case")
        case = case_upload(
            user=request.user, app_name=query["app"], stream=stream, name=query["name"], kind=query["kind"]
        )
        return Response(CaseOut(case).data, status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    session_ticket_allowed = True

    @extend_schema(parameters=[FORMAT], responses=CASE_RESPONSES)
    def get(self, request, case_id: str):
        case = case_get_in_scope(request.user, case_id, scope_app(request.auth))
        return case_response(case, request.query_params.get("format") == "json")

    @extend_schema(responses={204: None})
    def delete(self, request, case_id: str):
        case_delete(case=case_get_in_scope(request.user, case_id, scope_app(request.auth)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionIn(serializers.Serializer):
    app = serializers.SlugField(max_length=64)
    version = serializers.CharField(max_length=64, required=False, default="latest")


class SessionOut(serializers.ModelSerializer):
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
            "cpu_seconds",
            "url",
            "websocket",
        ]

    def get_url(self, session: DataSession) -> str:
        return f"/sessions/{session.pk}/"

    def get_websocket(self, session: DataSession) -> str:
        return f"/ws/sessions/{session.pk}/"


class SessionListApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=SessionOut(many=True))
    def get(self, request):
        found = data_sessions.sessions_for_user(request.user)
        if request.query_params.get("live"):
            found = found.filter(state__in=LIVE_SESSION_STATES)
        return Response(SessionOut(found[:500], many=True).data)

    @extend_schema(request=SessionIn, responses={201: SessionOut, 404: ERROR, 409: ERROR, 429: ERROR})
    def post(self, request):
        given = SessionIn(data=request.data)
        given.is_valid(raise_exception=True)
        session = data_sessions.session_launch(
            user=request.user, app_name=given.validated_data["app"], version=given.validated_data["version"]
        )
        return Response(SessionOut(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    @extend_schema(responses=SessionOut)
    def get(self, request, session_id: str):
        return Response(SessionOut(data_sessions.session_get_for_user(request.user, session_id)).data)


class SessionStopApi(APIView):
    @extend_schema(request=None, responses=SessionOut)
    def post(self, request, session_id: str):
        session = data_sessions.session_get_for_user(request.user, session_id)
        return Response(SessionOut(data_sessions.session_stop(user=request.user, session=session)).data)


class SessionRestartApi(APIView):
    @extend_schema(request=None, responses={201: SessionOut, 409: ERROR, 429: ERROR})
    def post(self, request, session_id: str):
        session = data_sessions.session_get_for_user(request.user, session_id)
        return Response(
            SessionOut(data_sessions.session_restart(user=request.user, session=session)).data,
            status=status.HTTP_201_CREATED,
        )
