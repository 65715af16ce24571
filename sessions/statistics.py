"""Queue and run times of jobs, per app and per day: when does the platform need more capacity?"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.utils import timezone

from .models import Job

MAX_DAYS = 366


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def job_statistics(*, days: int = 30, app_name: str | None = None) -> list[dict[str, Any]]:
    """Per app and day (of submission): jobs, and median and 95th percentile of queue and run time.

    Over the last ``days``, kept within 1 and ``MAX_DAYS``.
    """
    since = timezone.now() - timedelta(days=max(1, min(days, MAX_DAYS)))
    rows = Job.objects.filter(created_at__gte=since, started_at__isnull=False)
    if app_name:
        rows = rows.filter(app_version__app__name=app_name)
    groups: dict[tuple[str, Any], dict[str, list[float]]] = defaultdict(lambda: {"queue": [], "run": []})
    for app, created, started, finished in rows.values_list(
        "app_version__app__name", "created_at", "started_at", "finished_at"
    ).iterator():
        group = groups[(app, timezone.localdate(created))]
        group["queue"].append((started - created).total_seconds())
        if finished is not None:
            group["run"].append((finished - started).total_seconds())
    result = []
    for (app, day), times in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0]), reverse=True):
        entry: dict[str, Any] = {"app": app, "day": day, "jobs": len(times["queue"])}
        for kind in ("queue", "run"):
            values = times[kind]
            entry[f"{kind}_median"] = statistics.median(values) if values else None
            entry[f"{kind}_p95"] = _percentile(values, 0.95) if values else None
        result.append(entry)
    return result
