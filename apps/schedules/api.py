"""``/api/v1/schedules``: recurring runs of an app's solve procedure (docs/schedules.md)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.openapi import ERROR
from pro_portal.strict import JSON_BODY
from sessions.serializers import valid_query

from . import selectors, services
from .serializers import RunOut, RunQuery, ScheduleIn, ScheduleOut, SchedulePatch, spec_fields


class ScheduleListApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(
        responses=ScheduleOut(many=True), description="The caller's schedules (an admin's: everyone's), oldest first."
    )
    def get(self, request):
        return Response(ScheduleOut(selectors.schedules_for_user(request.user), many=True).data)

    @extend_schema(request=ScheduleIn, responses={201: ScheduleOut, 400: ERROR, 404: ERROR, 409: ERROR})
    def post(self, request):
        body = ScheduleIn(data=request.data)
        body.is_valid(raise_exception=True)
        spec = services.Spec(**spec_fields(body.validated_data))
        schedule = services.schedule_create(user=request.user, spec=spec, request=request)
        return Response(ScheduleOut(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses={200: ScheduleOut, 404: ERROR})
    def get(self, request, schedule_id: int):
        return Response(ScheduleOut(selectors.schedule_get_for_user(request.user, schedule_id)).data)

    @extend_schema(request=SchedulePatch, responses={200: ScheduleOut, 400: ERROR, 404: ERROR})
    def patch(self, request, schedule_id: int):
        schedule = selectors.schedule_get_for_user(request.user, schedule_id)
        body = SchedulePatch(data=request.data)
        body.is_valid(raise_exception=True)
        schedule = services.schedule_update(
            user=request.user, schedule=schedule, changes=spec_fields(body.validated_data)
        )
        return Response(ScheduleOut(schedule).data)

    @extend_schema(responses={204: None, 404: ERROR})
    def delete(self, request, schedule_id: int):
        schedule = selectors.schedule_get_for_user(request.user, schedule_id)
        services.schedule_delete(user=request.user, schedule=schedule, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScheduleRunListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=RunQuery().fields["state"].choices),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many (default 100, at most 1000)."),
            OpenApiParameter("offset", OpenApiTypes.INT, description="Skip this many of the latest first (paging)."),
        ],
        responses={200: RunOut(many=True), 404: ERROR},
        description="The schedule's runs, the latest slot first; the header X-Total-Count says how many match.",
    )
    def get(self, request, schedule_id: int):
        schedule = selectors.schedule_get_for_user(request.user, schedule_id)
        query = valid_query(RunQuery, request)
        runs = selectors.schedule_runs(schedule)
        if query.get("state"):
            runs = runs.filter(state=query["state"])
        page = runs[query["offset"] : query["offset"] + query["limit"]]
        return Response(RunOut(page, many=True).data, headers={"X-Total-Count": str(runs.count())})
