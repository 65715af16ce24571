"""Reads of accounts: a user's API keys and the security event log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from pro_portal.errors import ApplicationError

from .models import ApiKey, SecurityEvent

# The security event log's filters that match a field exactly.
EXACT_EVENT_FILTERS = ("kind", "actor", "outcome")
# Rows per page of the security event log; the chart spans this many days unless the filters say.
SECURITY_EVENTS_PER_PAGE = 100
SECURITY_CHART_DAYS = 30
SECURITY_CHART_MAX_DAYS = 366


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


def security_events_page(events: QuerySet[SecurityEvent], number: str | int | None) -> Page:
    """One page of ``events``, the newest first; a page number out of range or no number gives the
    nearest page (the first or the last), so that a stale link still shows rows."""
    return Paginator(events, SECURITY_EVENTS_PER_PAGE).get_page(number)


def security_events_per_day(events: QuerySet[SecurityEvent], filters: Mapping[str, str]) -> dict:
    """How many of ``events`` each day had, per outcome, for the page's chart: every day of the
    filters' period (``since``, ``until``; the last ``SECURITY_CHART_DAYS`` days when not given,
    at most ``SECURITY_CHART_MAX_DAYS``), days without events counted as 0."""
    until = date_given(filters.get("until") or "") or timezone.localdate()
    since = date_given(filters.get("since") or "") or until - timedelta(days=SECURITY_CHART_DAYS - 1)
    since = max(since, until - timedelta(days=SECURITY_CHART_MAX_DAYS - 1))
    days = [since + timedelta(days=n) for n in range(max(0, (until - since).days + 1))]
    counts: dict[str, dict[date, int]] = {}
    rows = (
        events.filter(at__date__gte=since, at__date__lte=until)
        .annotate(day=TruncDate("at"))
        .order_by()  # no ordering of the model's in the GROUP BY
        .values_list("day", "outcome")
        .annotate(n=Count("id"))
    )
    for day, outcome, n in rows:
        counts.setdefault(outcome, {})[day] = n
    return {
        "days": [day.isoformat() for day in days],
        "outcomes": {outcome: [per_day.get(day, 0) for day in days] for outcome, per_day in sorted(counts.items())},
    }


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
