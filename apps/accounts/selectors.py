"""Reads of accounts: a user's API keys and the security event log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from django.contrib.auth.models import User
from django.db.models import QuerySet

from pro_portal.errors import ApplicationError

from .models import ApiKey, SecurityEvent

# The security event log's filters that match a field exactly.
EXACT_EVENT_FILTERS = ("kind", "actor", "outcome")


def api_keys_of(user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user)


def security_events_filtered(filters: Mapping[str, str]) -> QuerySet[SecurityEvent]:
    """The events that match ``filters`` (a page's query): kind, actor and outcome exactly, words of
    the target, and a first and last day (``since``, ``until``, ``YYYY-MM-DD``); empty ones are ignored."""
    events = SecurityEvent.objects.all()
    for field in EXACT_EVENT_FILTERS:
        if filters.get(field):
            events = events.filter(**{field: filters[field]})
    if filters.get("target"):
        events = events.filter(target__icontains=filters["target"])
    since, until = date_given(filters.get("since") or ""), date_given(filters.get("until") or "")
    if since:
        events = events.filter(at__date__gte=since)
    if until:
        events = events.filter(at__date__lte=until)
    return events


def security_event_kinds() -> QuerySet[SecurityEvent, str]:
    """Every kind of event the log holds, in order (for the page's filter)."""
    return SecurityEvent.objects.order_by("kind").values_list("kind", flat=True).distinct()


def date_given(raw: str) -> date | None:
    """A ``YYYY-MM-DD`` date from a form or query; None when none is given, a clear error when it is no date."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApplicationError(f"{raw!r} is not a date (YYYY-MM-DD).", code="invalid") from None
