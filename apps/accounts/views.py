"""The security event log page: admins filter it and export it as CSV."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date

from pro_portal.errors import Forbidden

from .models import SecurityEvent

PAGE_SIZE = 200


class _Echo:
    def write(self, value: str) -> str:
        return value


def _filtered(request: HttpRequest):
    events = SecurityEvent.objects.all()
    for field in ("kind", "actor", "outcome"):
        if request.GET.get(field):
            events = events.filter(**{field: request.GET[field]})
    if request.GET.get("target"):
        events = events.filter(target__icontains=request.GET["target"])
    since, until = parse_date(request.GET.get("since") or ""), parse_date(request.GET.get("until") or "")
    if since:
        events = events.filter(at__date__gte=since)
    if until:
        events = events.filter(at__date__lte=until)
    return events


@login_required
def security_events(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the security event log.")
    events = _filtered(request)
    if request.GET.get("format") == "csv":
        writer = csv.writer(_Echo())
        rows = (
            writer.writerow([e.at.isoformat(), e.kind, e.actor, e.source, e.target, e.outcome])
            for e in events.iterator()
        )
        header = writer.writerow(["time", "kind", "actor", "source", "target", "outcome"])
        response = StreamingHttpResponse((line for part in ([header], rows) for line in part), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="security-events.csv"'
        return response
    context = {
        "events": events[:PAGE_SIZE],
        "kinds": SecurityEvent.objects.order_by("kind").values_list("kind", flat=True).distinct(),
        "query": request.GET.urlencode(),
        "filters": request.GET,
    }
    return render(request, "portal/security_events.html", context)
