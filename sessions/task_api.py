"""Tasks: other systems run an app's solve procedure like a web service.

    POST /api/v1/apps/{app}/tasks/{procedure}?wait=30
    {"input": {"demand": [["Chicago", 320]]}}

queues the solve as a job of the caller. With ``wait`` (seconds, up to ``PRO_TASK_MAX_WAIT``) the
answer comes once the job has ended, with its outputs (200); a job still going at the end of the
wait, or a call without ``wait``, is answered 202 with the job's URLs to follow. While it waits,
the answer holds no request thread (:class:`pro_portal.handler.LaterResponse`): the wait is on
the event loop, woken by the job's notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal import notify
from pro_portal.errors import ApplicationError
from pro_portal.later import LaterResponse
from pro_portal.openapi import ERROR
from pro_portal.strict import JSON_BODY, StrictSerializer

from . import jobs, selectors
from .cases import case_load
from .models import Job, JobState
from .serializers import JobIn, JobOut, valid_query
from .ticket_scope import scope_app

ENDED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
SAFETY_POLL_SECONDS = 1.0
SYNC_POLL_SECONDS = 0.1  # besides the notifications: a missed one delays the answer by this much at most


class TaskIn(StrictSerializer):
    """A task's body: what a job request says besides the app and procedure, which are in the path."""

    input = JobIn._declared_fields["input"]
    version = JobIn._declared_fields["version"]
    priority = JobIn._declared_fields["priority"]
    time_limit = JobIn._declared_fields["time_limit"]
    memory_limit_mb = JobIn._declared_fields["memory_limit_mb"]
    webhook_url = JobIn._declared_fields["webhook_url"]
    notify_email = JobIn._declared_fields["notify_email"]


class TaskQuery(serializers.Serializer):
    wait = serializers.FloatField(required=False, default=0.0, min_value=0.0)

    def validate_wait(self, value: float) -> float:
        if value > settings.PRO_TASK_MAX_WAIT:
            raise serializers.ValidationError(f"At most {settings.PRO_TASK_MAX_WAIT:g} seconds.")
        return value


class TaskOut(serializers.Serializer):
    job = JobOut()
    state = serializers.CharField()
    outputs = serializers.DictField(required=False, help_text="The output identifiers, once the job succeeded.")
    error = serializers.CharField(required=False)
    url = serializers.CharField(help_text="The job in the API, to follow it.")
    log_url = serializers.CharField()
    result_url = serializers.CharField()


class TaskRunApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(
        operation_id="task_run",
        request=TaskIn,
        parameters=[
            OpenApiParameter(
                "wait",
                OpenApiTypes.NUMBER,
                description="Seconds to wait for the job to end (at most PRO_TASK_MAX_WAIT): 200 with its outputs "
                "when it ended within them, else 202.",
            )
        ],
        responses={200: TaskOut, 202: TaskOut, 400: ERROR, 404: ERROR, 409: ERROR, 429: ERROR},
        description="Run an app's solve procedure as a job of the caller (a task); each published app's own "
        "task operations, with its typed input and outputs, follow below.",
    )
    def post(self, request, app: str, procedure: str):
        wait = valid_query(TaskQuery, request)["wait"]
        TaskIn(data=request.data).is_valid(raise_exception=True)  # no field a task does not take
        context = {"user": request.user, "scope": scope_app(request.auth)}
        given = JobIn(data={**request.data, "app": app, "procedure": procedure}, context=context)
        given.is_valid(raise_exception=True)  # the input's types, as for any job
        data = given.validated_data
        job = jobs.job_submit(
            user=request.user,
            app_name=app,
            procedure=procedure,
            version=data.get("version"),
            input_values=data.get("input"),
            priority=data["priority"],
            time_limit=data.get("time_limit"),
            memory_limit_mb=data.get("memory_limit_mb"),
            webhook_url=data.get("webhook_url"),
            notify_email=data.get("notify_email"),
        )
        if wait <= 0:
            return Response(task_answer(job), status=202, headers={"Location": job_url(job)})
        if getattr(request._request, "pro_may_answer_later", False):
            return LaterResponse(lambda: answer_when_ended(job.pk, wait), Location=job_url(job))
        # A server without the pooled handler (the test client, a WSGI server): wait on this thread.
        deadline = time.monotonic() + wait
        while job.state not in ENDED and time.monotonic() < deadline:
            time.sleep(min(SYNC_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            job.refresh_from_db()
        status = 200 if job.state in ENDED else 202
        return Response(task_answer(job), status=status, headers={"Location": job_url(job)})


def job_url(job: Job) -> str:
    return f"/api/v1/jobs/{job.pk}"


def task_answer(job: Job) -> dict[str, Any]:
    """The task's state: the job, and once it succeeded its outputs."""
    body: dict[str, Any] = {
        "job": JobOut(job).data,
        "state": job.state,
        "url": job_url(job),
        "log_url": f"{job_url(job)}/log",
        "result_url": f"{job_url(job)}/result?format=json",
    }
    if job.state == JobState.SUCCEEDED and job.result_case_id:
        declared = job.app_version.manifest.get("interface", {}).get("identifiers", [])
        outputs = {i["name"] for i in declared if i.get("kind") == "output"}
        values = case_load(selectors.job_result_case(job)).to_json()
        body["outputs"] = {name: value for name, value in values.items() if name in outputs}
    elif job.state in (JobState.FAILED, JobState.CANCELLED):
        body["error"] = job.error_message or job.state
    return body


async def answer_when_ended(job_id: int, wait: float) -> tuple[int, bytes]:
    """(status, JSON body) once the job has ended, or at the end of ``wait`` seconds."""
    await wait_for_end(job_id, wait)
    job, body = await sync_to_async(_answer, thread_sensitive=False)(job_id)
    return (200 if job.state in ENDED else 202), json.dumps(body).encode()


def _answer(job_id: int) -> tuple[Job, dict[str, Any]]:
    try:
        job = Job.objects.select_related("app_version__app", "owner", "result_case").get(pk=job_id)
        return job, task_answer(job)
    finally:
        close_old_connections()


async def wait_for_end(job_id: int, wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    changes: asyncio.Queue = asyncio.Queue()
    subscription = await asyncio.to_thread(notify.async_subscription, "jobs", loop, changes)
    try:
        while await sync_to_async(_state_of, thread_sensitive=False)(job_id) not in ENDED:
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):  # no word in time: look at the row again
                await asyncio.wait_for(_change_of(changes, job_id), timeout=min(left, SAFETY_POLL_SECONDS))
    finally:
        subscription.close()


async def _change_of(changes: asyncio.Queue, job_id: int) -> None:
    while True:
        _, payload = await changes.get()
        if payload.get("id") == job_id:
            return


def _state_of(job_id: int) -> str:
    try:
        state = Job.objects.filter(pk=job_id).values_list("state", flat=True).first()
    finally:
        close_old_connections()
    if state is None:
        raise ApplicationError(f"Job {job_id} is gone.", code="not_found", status=404)
    return state
