"""Reading schedules: whose a user sees, and their runs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from pro_portal.errors import NotFound

from .models import Schedule, ScheduleRun


def schedules_for_user(user: User) -> QuerySet[Schedule]:
    """The user's own schedules; an admin's list holds everyone's."""
    found = Schedule.objects.select_related("owner", "app").order_by("pk")
    return found if user.is_superuser else found.filter(owner=user)


def schedule_get_for_user(user: User, schedule_id: Any) -> Schedule:
    """One schedule its owner (or an admin) may see; any other: not found."""
    try:
        return schedules_for_user(user).get(pk=int(schedule_id))
    except (Schedule.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"There is no schedule {schedule_id} you have access to.") from None


def schedule_runs(schedule: Schedule) -> QuerySet[ScheduleRun]:
    """Its runs, the latest slot first."""
    return ScheduleRun.objects.filter(schedule=schedule).select_related("job").order_by("-slot_at")


def last_runs(schedules: list[Schedule]) -> dict[int, ScheduleRun]:
    """Each schedule's latest run (for lists), in one query per schedule at most."""
    return {s.pk: run for s in schedules if (run := schedule_runs(s).first()) is not None}
