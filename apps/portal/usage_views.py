"""The admins' usage page: what jobs and data sessions used per user, group or app (:mod:`sessions.usage`)."""

from __future__ import annotations

import csv
import io
from datetime import date

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pro_portal.errors import ApplicationError, Forbidden
from sessions.usage import COLUMNS, By, Period, usage_period, usage_report

CSV_HEADER = ["name", *COLUMNS]


def _day(raw: str | None, what: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApplicationError(f"The {what} day {raw!r} is not a date (YYYY-MM-DD).", code="bad_period") from None


def _query(request: HttpRequest) -> tuple[By, Period]:
    try:
        by = By(request.GET.get("by") or By.USER)
    except ValueError:
        raise ApplicationError(f"Usage is shown by {', '.join(By)}, not {request.GET.get('by')!r}.") from None
    return by, usage_period(_day(request.GET.get("since"), "first"), _day(request.GET.get("until"), "last"))


def _csv(by: By, period: Period, rows: list[dict]) -> HttpResponse:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([by.value if name == "name" else name for name in CSV_HEADER])
    for row in rows:
        writer.writerow(
            [row["name"] if row["name"] is not None else "", *(row[c] if row[c] is not None else "" for c in COLUMNS)]
        )
    response = HttpResponse(text.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="usage-by-{by}-{period.since}-{period.until}.csv"'
    return response


@login_required
@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    """The usage report: a table grouped as asked, charts beside it, ``?format=csv`` for the same rows as CSV."""
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the usage of the platform.")
    by, period = _query(request)
    rows = usage_report(by=by, period=period)
    if request.GET.get("format") == "csv":
        return _csv(by, period, rows)
    query = request.GET.copy()
    query["format"] = "csv"
    context = {
        "by": by.value,
        "groupings": [b.value for b in By],
        "period": period,
        "rows": rows,
        "csv_query": query.urlencode(),
        "chart": [
            {"name": row["name"] if row["name"] is not None else "(no group)", **{c: row[c] for c in COLUMNS}}
            for row in rows
        ],
    }
    return render(request, "portal/usage.html", context)
