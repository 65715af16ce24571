"""The REST API of webhooks: the owner's delivery log, their secret (rotated, shown once) and settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api import KeyManagementAllowed
from apps.accounts.authentication import TicketScope
from pro_portal.errors import NotFound
from pro_portal.openapi import ERROR
from pro_portal.output import OutputSerializer
from pro_portal.strict import JSON_BODY, StrictSerializer
from sessions.models import Job

from .models import Delivery
from .services import email_default_set, secret_rotate, settings_summary


class DeliveryOut(OutputSerializer):
    job = serializers.IntegerField(source="job_id")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "job",
            "url",
            "event",
            "status",
            "attempts",
            "status_code",
            "error",
            "response_excerpt",
            "created_at",
            "last_try_at",
            "delivered_at",
            "next_try_at",
        ]


class DeliveryQuery(StrictSerializer):
    job = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1, help_text="Only this job's.")
    limit = serializers.IntegerField(
        required=False, default=100, min_value=1, max_value=1000, help_text="At most this many (default 100)."
    )


class SecretOut(serializers.Serializer):
    secret = serializers.CharField(help_text="Shown this once: keep it where your receiver checks signatures.")
    rotated_at = serializers.DateTimeField()


class SettingsOut(serializers.Serializer):
    email_job_end = serializers.BooleanField(help_text="E-mail me when my jobs end (a job's notify_email overrides).")
    secret_set = serializers.BooleanField()
    secret_rotated_at = serializers.DateTimeField(allow_null=True)


class SettingsPatch(StrictSerializer):
    email_job_end = serializers.BooleanField()


class DeliveryListApi(APIView):
    """The webhook deliveries of your jobs (an admin's: everyone's), newest first."""

    permission_classes = [IsAuthenticated, TicketScope]

    @extend_schema(parameters=[DeliveryQuery], responses={200: DeliveryOut(many=True), 404: ERROR})
    def get(self, request):
        query = DeliveryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        given = query.validated_data
        found = Delivery.objects.all()
        if not request.user.is_superuser:
            found = found.filter(job__owner=request.user)
        if "job" in given:
            jobs = Job.objects.filter(pk=given["job"])
            if not request.user.is_superuser:
                jobs = jobs.filter(owner=request.user)
            if not jobs.exists():
                raise NotFound(f"There is no job {given['job']} of yours.")
            found = found.filter(job_id=given["job"])
        return Response(DeliveryOut(found[: given["limit"]], many=True).data)


class SecretApi(APIView):
    """Rotate your webhook secret: the new one signs from now on and is shown in this answer only."""

    permission_classes = [IsAuthenticated, TicketScope, KeyManagementAllowed]

    @extend_schema(request=None, responses={201: SecretOut})
    def post(self, request):
        secret, rotated_at = secret_rotate(user=request.user, request=request)
        return Response(SecretOut({"secret": secret, "rotated_at": rotated_at}).data, status=201)


class SettingsApi(APIView):
    """Your webhook and e-mail settings (never the secret)."""

    permission_classes = [IsAuthenticated, TicketScope]
    parser_classes = JSON_BODY

    @extend_schema(responses=SettingsOut)
    def get(self, request):
        return Response(SettingsOut(settings_summary(request.user)).data)

    @extend_schema(request=SettingsPatch, responses=SettingsOut)
    def patch(self, request):
        given = SettingsPatch(data=request.data)
        given.is_valid(raise_exception=True)
        email_default_set(user=request.user, on=given.validated_data["email_job_end"])
        return Response(SettingsOut(settings_summary(request.user)).data)
