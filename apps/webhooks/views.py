"""The account page's "Webhooks and e-mail" card (registered with apps.accounts.views at ready())."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest

from apps.accounts.views import AccountCard

from .services import email_default_set, secret_rotate, settings_summary


def _handle(request: HttpRequest, action: str) -> dict[str, Any]:
    if action == "webhook-rotate":
        # Shown in this response only, never stored in a message or a cookie.
        secret, _ = secret_rotate(user=request.user, request=request)  # type: ignore[arg-type]
        return {"new_secret": secret}
    on = request.POST.get("email_job_end") == "on"
    email_default_set(user=request.user, on=on)  # type: ignore[arg-type]
    messages.success(request, "You get an e-mail when your jobs end." if on else "No e-mail when your jobs end.")
    return {}


def _context(request: HttpRequest) -> dict[str, Any]:
    return {**settings_summary(request.user), "email": request.user.email}  # type: ignore[arg-type]


CARD = AccountCard(
    template="webhooks/account_card.html",
    actions=("webhook-rotate", "email-job-end"),
    handle=_handle,
    context=_context,
)
