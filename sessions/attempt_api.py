"""The attempt API: what a remote runner (a Slurm or Kubernetes job) calls with its job-scoped ticket.

Only a ticket scoped to the job and the attempt in the URL reaches these views (``TicketScope``
admits an attempt's ticket nowhere else); see :mod:`sessions.attempts` for the fencing.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.openapi import ERROR
from pro_portal.streaming import file_download
from pro_portal.strict import JSON_BODY, StrictSerializer
from pro_portal.uploads import uploaded_stream

from . import attempts, jobs
from .models import JobState
from .serializers import valid_query

LOG_TEXT_LIMIT = 8 * 1024 * 1024


class AttemptView(APIView):
    """A view of one attempt: only that attempt's own ticket passes."""

    attempt_ticket_allowed = True

    def attempt(self, request, job_id: int, attempt: int):
        return attempts.attempt_for_credential(request.auth, job_id, attempt)


class LogIn(StrictSerializer):
    offset = serializers.IntegerField(min_value=0)
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=LOG_TEXT_LIMIT)


class ProgressIn(StrictSerializer):
    progress = serializers.DictField()
    points = serializers.ListField(child=serializers.DictField(), max_length=5000)


class UsageIn(StrictSerializer):
    cpu_seconds = serializers.FloatField(min_value=0, required=False)
    peak_memory_mb = serializers.FloatField(min_value=0, required=False)


class FinishIn(UsageIn):
    state = serializers.ChoiceField(choices=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
    error = serializers.CharField(allow_blank=True, required=False, max_length=10000, trim_whitespace=False)
    solver_status = serializers.CharField(allow_blank=True, required=False, max_length=200)


class ReleaseIn(UsageIn):
    reason = serializers.CharField(max_length=1000)


class FileQuery(StrictSerializer):
    path = serializers.CharField(max_length=1024)


def _valid(serializer_class, request) -> dict:
    given = serializer_class(data=request.data)
    given.is_valid(raise_exception=True)
    return dict(given.validated_data)


class AttemptBundleApi(AttemptView):
    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY, 409: ERROR})
    def get(self, request, job_id: int, attempt: int):
        bundle = attempts.attempt_bundle(self.attempt(request, job_id, attempt))
        response = HttpResponse(bundle, content_type="application/x-tar")
        response["X-Pro-Sha256"] = hashlib.sha256(bundle).hexdigest()
        return response


class AttemptEnvironmentApi(AttemptView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: ERROR})
    def get(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        return StreamingHttpResponse(attempts.attempt_environment(job), content_type="application/octet-stream")


class AttemptFileApi(AttemptView):
    @extend_schema(parameters=[FileQuery], responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        path, handle = attempts.attempt_file(job, valid_query(FileQuery, request)["path"])
        return file_download(handle, handle.size, path.rsplit("/", 1)[-1])


class AttemptHeartbeatApi(AttemptView):
    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: ERROR})
    def post(self, request, job_id: int, attempt: int):
        return Response(attempts.attempt_requests(self.attempt(request, job_id, attempt)))


class AttemptLogApi(AttemptView):
    parser_classes = JSON_BODY

    @extend_schema(request=LogIn, responses={200: OpenApiTypes.OBJECT, 409: ERROR})
    def post(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        given = _valid(LogIn, request)
        return Response({"offset": jobs.job_append_log(job=job, offset=given["offset"], text=given["text"])})


class AttemptProgressApi(AttemptView):
    parser_classes = JSON_BODY

    @extend_schema(request=ProgressIn, responses={204: None, 409: ERROR})
    def post(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        given = _valid(ProgressIn, request)
        jobs.job_report_progress(job=job, progress=given["progress"], points=given["points"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class AttemptResultApi(AttemptView):
    parser_classes = []

    @extend_schema(request={"application/octet-stream": OpenApiTypes.BINARY}, responses={204: None, 413: ERROR})
    def put(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        stream = uploaded_stream(request._request, "result", settings.PRO_MAX_CASE_BYTES, "result")
        attempts.attempt_result_store(job, stream)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AttemptFinishApi(AttemptView):
    parser_classes = JSON_BODY

    @extend_schema(request=FinishIn, responses={200: OpenApiTypes.OBJECT, 409: ERROR})
    def post(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        return Response({"recorded": attempts.attempt_finish(job, end=_valid(FinishIn, request))})


class AttemptReleaseApi(AttemptView):
    parser_classes = JSON_BODY

    @extend_schema(request=ReleaseIn, responses={200: OpenApiTypes.OBJECT, 409: ERROR})
    def post(self, request, job_id: int, attempt: int):
        job = self.attempt(request, job_id, attempt)
        given = _valid(ReleaseIn, request)
        reason = given.pop("reason")
        return Response({"state": attempts.attempt_release(job, reason=reason, usage=given)})
