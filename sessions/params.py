"""The portal's form fields and query parameters (strings) as typed arguments of services and selectors.

The API's are parsed by the serializers of :mod:`sessions.serializers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.utils.dateparse import parse_datetime

from pro_portal.errors import ApplicationError

Number = TypeVar("Number", int, float)

STATISTICS_DAYS = 30  # the statistics page's period by default


def number(raw: str | None, kind: Callable[[str], Number], default: Any) -> Number | Any:
    """``raw`` as a number of ``kind``; ``default`` when it is missing or empty."""
    if raw in (None, ""):
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ApplicationError(f"{raw!r} is not a number.") from None


def job_form(form: Mapping[str, str]) -> dict[str, Any]:
    """A version page's solve form as ``job_submit``'s arguments: procedure, priority, time limit, start.

    Raises ``ApplicationError`` (a field that is not a number) or ``ValueError`` (an impossible date).
    """
    return {
        "procedure": form.get("procedure", ""),
        "priority": number(form.get("priority"), int, 0),
        "time_limit": number(form.get("time_limit"), float, None),
        "not_before": parse_datetime(form["start_at"]) if form.get("start_at") else None,
    }


def statistics_query(params: Mapping[str, str]) -> tuple[int, str | None]:
    """The statistics page's period in days (as asked, ``STATISTICS_DAYS`` when not) and app name (or all)."""
    days = int(number(params.get("days"), int, STATISTICS_DAYS) or STATISTICS_DAYS)
    return days, params.get("app") or None
