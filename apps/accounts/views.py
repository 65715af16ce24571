"""Account pages: the user's own account and API keys; the security event log for admins."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from pro_portal.errors import ApplicationError, Forbidden

from .api_keys import api_key_create, api_key_revoke
from .selectors import api_keys_of, date_given, security_events_filtered
from .two_factor import two_factor_enabled


@dataclass(frozen=True)
class AccountCard:
    """A card another app adds to the account page (apps above this one in the layers register
    theirs at ``ready()``): its template, the POST actions it handles, and its template's context.
    ``handle(request, action)`` returns context for this response only (say, a secret shown once)."""

    template: str
    actions: tuple[str, ...]
    handle: Callable[[HttpRequest, str], dict[str, Any]]
    context: Callable[[HttpRequest], dict[str, Any]]


ACCOUNT_CARDS: list[AccountCard] = []


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def security_events_csv(request: HttpRequest) -> HttpResponse:
    """Every security event the filters match, streamed as CSV (the security page's export)."""
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the security event log.")
    events = security_events_filtered(request.GET)
    writer = csv.writer(_Echo())
    rows = (
        writer.writerow([e.at.isoformat(), e.kind, e.actor, e.source, e.target, e.outcome]) for e in events.iterator()
    )
    header = writer.writerow(["time", "kind", "actor", "source", "target", "outcome"])
    response = StreamingHttpResponse((line for part in ([header], rows) for line in part), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="security-events.csv"'
    return response


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own account: change the password, create and revoke API keys."""
    password_form = PasswordChangeForm(request.user)
    created_key = None
    shown: dict[str, dict[str, Any]] = {}
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "password":
        password_form = PasswordChangeForm(request.user, request.POST)
        if password_form.is_valid():
            password_form.save()  # the tickets and keys issued before are revoked (signals)
            update_session_auth_hash(request, password_form.user)
            messages.success(request, "Your password is changed; the API tickets and keys issued before are revoked.")
            return redirect("portal:account")
    elif action == "create-key":
        try:
            expires = date_given(request.POST.get("expires", ""))
            expires_at = timezone.make_aware(datetime.combine(expires, time.max)) if expires else None
            # Shown in this response only, never stored in a message or a cookie.
            created_key, _ = api_key_create(
                user=request.user, name=request.POST.get("name", ""), expires_at=expires_at, request=request
            )
        except ApplicationError as error:
            messages.error(request, error.message)
    elif any(action in card.actions for card in ACCOUNT_CARDS):
        for card in ACCOUNT_CARDS:
            if action in card.actions:
                try:
                    shown[card.template] = card.handle(request, action)
                except ApplicationError as error:
                    messages.error(request, error.message)
    elif action == "revoke-key":
        key_id = request.POST.get("key", "")
        if key_id.isdigit():
            key = api_key_revoke(user=request.user, key_id=int(key_id), request=request)
            messages.success(request, f"The key {key.name} is revoked.")
        return redirect("portal:account")
    context = {
        "password_form": password_form,
        "keys": api_keys_of(request.user),
        "created_key": created_key,
        "two_factor_on": two_factor_enabled(request.user),
        "cards": [(c.template, {**c.context(request), **shown.get(c.template, {})}) for c in ACCOUNT_CARDS],
    }
    return render(request, "portal/account.html", context)
