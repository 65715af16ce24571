"""Account pages: the user's own account and API keys; the security event log for admins."""

from __future__ import annotations

import csv
from datetime import datetime, time

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date

from pro_portal.errors import ApplicationError, Forbidden

from .api_keys import api_key_create, api_key_revoke, api_keys_of
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


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own account: change the password, create and revoke API keys."""
    password_form = PasswordChangeForm(request.user)
    created_key = None
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "password":
        password_form = PasswordChangeForm(request.user, request.POST)
        if password_form.is_valid():
            password_form.save()  # the tickets and keys issued before are revoked (signals)
            update_session_auth_hash(request, password_form.user)
            messages.success(request, "Your password is changed; the API tickets and keys issued before are revoked.")
            return redirect("portal:account")
    elif action == "create-key":
        expires = parse_date(request.POST.get("expires", "")) if request.POST.get("expires") else None
        expires_at = timezone.make_aware(datetime.combine(expires, time.max)) if expires else None
        try:
            # Shown in this response only, never stored in a message or a cookie.
            created_key, _ = api_key_create(
                user=request.user, name=request.POST.get("name", ""), expires_at=expires_at, request=request
            )
        except ApplicationError as error:
            messages.error(request, error.message)
    elif action == "revoke-key":
        key_id = request.POST.get("key", "")
        if key_id.isdigit():
            key = api_key_revoke(user=request.user, key_id=int(key_id), request=request)
            messages.success(request, f"The key {key.name} is revoked.")
        return redirect("portal:account")
    context = {"password_form": password_form, "keys": api_keys_of(request.user), "created_key": created_key}
    return render(request, "portal/account.html", context)
