"""Usage accounting: what jobs and data sessions used, per user, per group or per app, over a period.

Each job records the CPU seconds and peak memory of its sandbox (summed, and the most of, over its
attempts; see ``sessions.supervisor``); its wall time is from its (last) start to its end. Each data
session keeps its peak memory and CPU seconds as its session manager samples them; its wall time is
from its start to its stop, or to now while it runs.

Which rows count in a period (``since`` to ``until``, whole days of the platform's time zone, both
included):

- a job by its end: it finished (succeeded, failed or was cancelled) in the period after it
  started; a job cancelled before it started used nothing and does not count;
- a data session by its end too: it stopped (closed, idle, lost) in the period after it started,
  all its hours counting there; a session still running counts in a period that reaches now, with
  its hours so far.

So a report of a past period does not change, and the reports of periods one after the other add
up. By group, a user in several groups counts in each group's row (the rows then add up to more
than the total), and users in no group make a row of their own (``name`` None).

Every total is computed by the database: one aggregate query for the jobs, one for the sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import User
from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.catalog.models import App
from pro_portal.errors import ApplicationError

from .models import DataSession, Job

USAGE_DAYS = 30  # the period by default: the last 30 days, today included
MAX_DAYS = 3660  # the longest period asked at once


class By(StrEnum):
    """What the rows of a report are."""

    USER = "user"
    GROUP = "group"
    APP = "app"


# The field a row is named by, seen from a job or a data session (both have an owner and an app version).
KEYS = {By.USER: "owner__username", By.GROUP: "owner__groups__name", By.APP: "app_version__app__name"}

COLUMNS = (
    "jobs",
    "job_hours",
    "job_cpu_hours",
    "peak_memory_mb",
    "sessions",
    "session_hours",
    "session_cpu_hours",
)


@dataclass(frozen=True)
class Period:
    """Whole days, both included, in the platform's time zone."""

    since: date
    until: date

    @property
    def start(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.since, time.min))

    @property
    def end(self) -> datetime:
        """The first moment after the period."""
        return timezone.make_aware(datetime.combine(self.until + timedelta(days=1), time.min))


def usage_period(since: date | None = None, until: date | None = None) -> Period:
    """The period asked: ``USAGE_DAYS`` up to ``until`` (default today) when ``since`` is not given."""
    until = until or timezone.localdate()
    since = since or until - timedelta(days=USAGE_DAYS - 1)
    if since > until:
        raise ApplicationError(f"The period starts ({since}) after it ends ({until}).", code="bad_period")
    if (until - since).days >= MAX_DAYS:
        raise ApplicationError(f"The period is longer than {MAX_DAYS} days.", code="bad_period")
    return Period(since, until)


def _hours(duration: timedelta | None) -> float:
    return round(duration.total_seconds() / 3600, 6) if duration else 0.0


def _cpu_hours(seconds: float | None) -> float:
    return round(seconds / 3600, 6) if seconds else 0.0


def _jobs_in(period: Period) -> QuerySet[Job]:
    return Job.objects.filter(finished_at__gte=period.start, finished_at__lt=period.end, started_at__isnull=False)


def _sessions_in(period: Period, now: datetime) -> QuerySet[DataSession]:
    ended = Q(stopped_at__gte=period.start, stopped_at__lt=period.end)
    if period.start <= now < period.end:
        ended |= Q(stopped_at__isnull=True)
    return DataSession.objects.filter(ended, started_at__isnull=False)


def _job_totals(jobs: QuerySet[Job], key: str) -> dict[Any, dict[str, Any]]:
    wall = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    rows = (
        jobs.order_by()
        .values(key)
        .annotate(count=Count("pk"), wall=Sum(wall), cpu=Sum("cpu_seconds"), peak=Max("peak_memory_mb"))
    )
    return {row[key]: row for row in rows}


def _session_totals(sessions: QuerySet[DataSession], key: str, now: datetime) -> dict[Any, dict[str, Any]]:
    stopped = Coalesce(F("stopped_at"), Value(now, output_field=DateTimeField()))
    wall = ExpressionWrapper(stopped - F("started_at"), output_field=DurationField())
    rows = (
        sessions.order_by()
        .values(key)
        .annotate(count=Count("pk"), wall=Sum(wall), cpu=Sum("cpu_seconds"), peak=Max("peak_memory_mb"))
    )
    return {row[key]: row for row in rows}


def _by_name(name: str | None) -> tuple[bool, str, str]:
    """Rows by name whatever its case, the users in no group (None) last."""
    return name is None, (name or "").casefold(), name or ""


def _peak(*values: float | None) -> float | None:
    known = [value for value in values if value is not None]
    return round(max(known), 1) if known else None


def usage_report(
    *,
    by: By | str,
    period: Period,
    owner: User | None = None,
    app: App | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per user, group or app (``by``): jobs, their wall and CPU hours, the most memory one job or
    session used at once, sessions, their wall and CPU hours; only ``owner``'s and ``app``'s when given.

    Rows are ordered by name, whatever its case (users in no group last); ``name`` is None for users
    in no group. Every user is in the group Everyone, so by group it has a row of its own.
    """
    key = KEYS[By(by)]
    now = now or timezone.now()
    jobs, sessions = _jobs_in(period), _sessions_in(period, now)
    if owner is not None:
        jobs, sessions = jobs.filter(owner=owner), sessions.filter(owner=owner)
    if app is not None:
        jobs, sessions = jobs.filter(app_version__app=app), sessions.filter(app_version__app=app)
    job_rows, session_rows = _job_totals(jobs, key), _session_totals(sessions, key, now)
    empty: dict[str, Any] = {"count": 0, "wall": None, "cpu": None, "peak": None}
    report = []
    for name in sorted(job_rows.keys() | session_rows.keys(), key=_by_name):
        job, session = job_rows.get(name, empty), session_rows.get(name, empty)
        report.append(
            {
                "name": name,
                "jobs": job["count"],
                "job_hours": _hours(job["wall"]),
                "job_cpu_hours": _cpu_hours(job["cpu"]),
                "peak_memory_mb": _peak(job["peak"], session["peak"]),
                "sessions": session["count"],
                "session_hours": _hours(session["wall"]),
                "session_cpu_hours": _cpu_hours(session["cpu"]),
            }
        )
    return report


def app_usage(app: App, *, days: int = USAGE_DAYS) -> dict[str, Any]:
    """The app's totals over the last ``days`` (today included), for its page."""
    period = usage_period(timezone.localdate() - timedelta(days=days - 1))
    rows = usage_report(by=By.APP, period=period, app=app)
    totals = rows[0] if rows else {"name": app.name, **dict.fromkeys(COLUMNS, 0), "peak_memory_mb": None}
    return {"period": period, **totals}
