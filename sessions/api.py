"""The REST API of jobs, cases and data sessions: thin views over the services and selectors."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.openapi import ERROR
from pro_portal.streaming import file_download
from pro_portal.strict import JSON_BODY
from pro_portal.uploads import uploaded_stream

from . import data_sessions, jobs, selectors
from .cases import case_delete, case_load, case_open, case_upload
from .models import Case, CaseKind, JobState
from .serializers import (
    CaseOut,
    CaseQuery,
    CaseUploadQuery,
    JobDetailOut,
    JobIn,
    JobLogOut,
    JobLogQuery,
    JobOut,
    JobQuery,
    SessionIn,
    SessionOut,
    SessionQuery,
    valid_query,
    wants_json,
)
from .ticket_scope import app_in_scope, scope_app, scope_session


class JobListApi(APIView):
    session_ticket_allowed = True
    parser_classes = JSON_BODY

    @extend_schema(
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=JobState.values),
            OpenApiParameter("app", OpenApiTypes.STR),
            OpenApiParameter(
                "limit", OpenApiTypes.INT, description="At most this many, newest first (default 100, at most 1000)."
            ),
            OpenApiParameter("offset", OpenApiTypes.INT, description="Skip this many of the newest first (paging)."),
        ],
        responses=JobOut(many=True),
        description="The jobs the caller sees, newest first; the header X-Total-Count says how many match.",
    )
    def get(self, request):
        query = valid_query(JobQuery, request)
        found = selectors.jobs_in_scope(request.user, scope_app(request.auth), **selectors.job_filters(query))
        page = found[query["offset"] : query["offset"] + query["limit"]]
        return Response(JobOut(page, many=True).data, headers={"X-Total-Count": str(found.count())})

    @extend_schema(request=JobIn, responses={201: JobOut, 404: ERROR, 409: ERROR})
    def post(self, request):
        given = JobIn(data=request.data, context={"user": request.user, "scope": scope_app(request.auth)})
        given.is_valid(raise_exception=True)
        data = given.validated_data
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
            data_session_id=scope_session(request.auth),
            webhook_url=data.get("webhook_url"),
            notify_email=data.get("notify_email"),
        )
        return Response(JobOut(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    session_ticket_allowed = True

    @extend_schema(responses=JobDetailOut)
    def get(self, request, job_id: int):
        job = selectors.job_get_in_scope(request.user, job_id, scope_app(request.auth))
        return Response(JobDetailOut(job).data)


class JobLogApi(APIView):
    session_ticket_allowed = True

    @extend_schema(
        parameters=[JobLogQuery],
        responses=JobLogOut,
        description="A page of a job's log: follow a running job, or page through a finished one, by asking "
        "again from the offset answered until `finished`.",
    )
    def get(self, request, job_id: int):
        job = selectors.job_get_in_scope(request.user, job_id, scope_app(request.auth))
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
        job = selectors.job_get_in_scope(request.user, job_id, scope_app(request.auth))
        return Response(JobOut(jobs.job_interrupt(user=request.user, job=job)).data)


class JobCancelApi(APIView):
    session_ticket_allowed = True

    @extend_schema(request=None, responses={200: JobOut, 409: ERROR})
    def post(self, request, job_id: int):
        job = selectors.job_get_in_scope(request.user, job_id, scope_app(request.auth))
        return Response(JobOut(jobs.job_cancel(user=request.user, job=job)).data)


FORMAT = OpenApiParameter(
    "format", OpenApiTypes.STR, enum=["case", "json"], description="json: the identifiers as JSON."
)


def case_response(case: Case, as_json: bool) -> HttpResponse:
    if as_json:
        return Response({"case": str(case.id), "app": case.app.name, "identifiers": case_load(case).to_json()})
    return file_download(case_open(case), case.size, f"{case.app.name}-{case.id}.case")


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
        job = selectors.job_get_in_scope(request.user, job_id, scope_app(request.auth))
        return case_response(selectors.job_result_case(job), wants_json(request))


CASE_RESPONSES = {
    (200, "application/octet-stream"): OpenApiTypes.BINARY,
    (200, "application/json"): OpenApiTypes.OBJECT,
}


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
        found = selectors.cases_in_scope(
            request.user, scope_app(request.auth), app=query.get("app"), kind=query.get("kind")
        )
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
        case = selectors.case_get_in_scope(request.user, case_id, scope_app(request.auth))
        return case_response(case, wants_json(request))

    @extend_schema(responses={204: None})
    def delete(self, request, case_id: str):
        case_delete(case=selectors.case_get_in_scope(request.user, case_id, scope_app(request.auth)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses=SessionOut(many=True))
    def get(self, request):
        query = valid_query(SessionQuery, request)
        found = selectors.sessions_for_user(request.user, live=query["live"])
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
        return Response(SessionOut(selectors.session_get_for_user(request.user, session_id)).data)


class SessionStopApi(APIView):
    @extend_schema(request=None, responses=SessionOut)
    def post(self, request, session_id: str):
        session = selectors.session_get_for_user(request.user, session_id)
        return Response(SessionOut(data_sessions.session_stop(user=request.user, session=session)).data)


class SessionRestartApi(APIView):
    @extend_schema(request=None, responses={201: SessionOut, 409: ERROR, 429: ERROR})
    def post(self, request, session_id: str):
        session = selectors.session_get_for_user(request.user, session_id)
        return Response(
            SessionOut(data_sessions.session_restart(user=request.user, session=session)).data,
            status=status.HTTP_201_CREATED,
        )
