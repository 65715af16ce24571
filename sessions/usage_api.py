"""``GET /api/v1/usage``: the usage report (:mod:`sessions.usage`) for admins, and each user's own by app."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.errors import Forbidden

from .serializers import UsageOut, UsageQuery, valid_query
from .usage import By, usage_period, usage_report


class UsageApi(APIView):
    @extend_schema(
        parameters=[UsageQuery],
        responses=UsageOut,
        description="Jobs, their wall and CPU hours, peak memory, data sessions and their hours, per user, group "
        "or app over a period of whole days (default: the last 30, today included). Jobs count in the period "
        "they finished in, sessions in the period they stopped in (a running one in a period that reaches "
        "today, with its hours so far). Admins see every row; any other user only their own usage, by app.",
    )
    def get(self, request):
        query = valid_query(UsageQuery, request)
        by = By(query["by"])
        admin = request.user.is_superuser
        if not admin and by != By.APP:
            raise Forbidden(f"Only admins see usage by {by}; ask by app for your own.")
        period = usage_period(query.get("since"), query.get("until"))
        rows = usage_report(by=by, period=period, owner=None if admin else request.user)
        return Response(UsageOut({"by": by.value, "since": period.since, "until": period.until, "rows": rows}).data)
