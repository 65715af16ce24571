"""Queue and run times of jobs, per app and per day: when does the platform need more capacity?"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator
from datetime import date, timedelta
from typing import Any

from django.utils import timezone

from .models import Job

MAX_DAYS = 366


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _started_jobs(days: int, app_name: str | None) -> Iterator[tuple[str, date, float, float | None]]:
    """(app, day of submission, queue seconds, run seconds or None) of the jobs started over the last ``days``."""
    since = timezone.now() - timedelta(days=max(1, min(days, MAX_DAYS)))
    rows = Job.objects.filter(created_at__gte=since, started_at__isnull=False)
    if app_name:
        rows = rows.filter(app_version__app__name=app_name)
    for app, created, started, finished in rows.values_list(
        "app_version__app__name", "created_at", "started_at", "finished_at"
    ).iterator():
        run = (finished - started).total_seconds() if finished is not None else None
        yield app, timezone.localdate(created), (started - created).total_seconds(), run


def _summaries(days: int, app_name: str | None, key: Callable[[str, date], Hashable]) -> dict[Any, dict[str, Any]]:
    """Jobs, and median and 95th percentile of queue and run time, per ``key(app, day)``."""
    groups: dict[Any, dict[str, list[float]]] = defaultdict(lambda: {"queue": [], "run": []})
    for app, day, queue, run in _started_jobs(days, app_name):
        group = groups[key(app, day)]
        group["queue"].append(queue)
        if run is not None:
            group["run"].append(run)
    summaries = {}
    for group_key, times in groups.items():
        entry: dict[str, Any] = {"jobs": len(times["queue"])}
        for kind in ("queue", "run"):
            values = times[kind]
            entry[f"{kind}_median"] = statistics.median(values) if values else None
            entry[f"{kind}_p95"] = _percentile(values, 0.95) if values else None
        summaries[group_key] = entry
    return summaries


def job_statistics(*, days: int = 30, app_name: str | None = None) -> list[dict[str, Any]]:
    """Per app and day (of submission): jobs, and median and 95th percentile of queue and run time.

    Over the last ``days``, kept within 1 and ``MAX_DAYS``; the newest day first.
    """
    summaries = _summaries(days, app_name, lambda app, day: (app, day))
    ordered = sorted(summaries.items(), key=lambda item: (item[0][1], item[0][0]), reverse=True)
    return [{"app": app, "day": day, **entry} for (app, day), entry in ordered]


def job_statistics_by_day(*, days: int = 30, app_name: str | None = None) -> list[dict[str, Any]]:
    """The same over all the apps asked for together, per day, the oldest day first (for a chart).

    Percentiles are taken over the day's jobs themselves, not averaged from the apps' own.
    """
    summaries = _summaries(days, app_name, lambda app, day: day)
    return [{"day": day, **summaries[day]} for day in sorted(summaries)]
