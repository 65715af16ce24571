"""``GET /metrics`` for admins and for a scraper holding ``PRO_METRICS_TOKEN`` (apps.cluster.metrics)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, permissions
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from apps.accounts.authentication import TicketScope

from .metrics import render

SCRAPER = "metrics-token"


class MetricsTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <PRO_METRICS_TOKEN>``: a scraper, which may read the metrics only."""

    def authenticate(self, request):
        token = settings.PRO_METRICS_TOKEN
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        bearer = len(header) == 2 and header[0].lower() == "bearer"
        if token and bearer and hmac.compare_digest(header[1].encode(), token.encode()):
            return AnonymousUser(), SCRAPER
        return None  # the platform's own credentials are tried next

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="metrics"'  # so that no credentials is 401, not 403


class AdminOrScraper(permissions.BasePermission):
    message = "The metrics are for admins and for the scraper holding PRO_METRICS_TOKEN."

    def has_permission(self, request, view) -> bool:
        return request.auth == SCRAPER or bool(request.user and request.user.is_superuser)


class MetricsApi(APIView):
    authentication_classes = [MetricsTokenAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    permission_classes = [AdminOrScraper, TicketScope]  # not with a data session's ticket, an admin's included

    @extend_schema(exclude=True)
    def get(self, request):
        body, content_type = render()
        return HttpResponse(body, content_type=content_type)
