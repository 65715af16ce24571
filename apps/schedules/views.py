"""The portal's Schedules page: the user's schedules, their last runs, and a form to make one."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.catalog.selectors import apps_for_user, version_resolve_for_user
from pro_portal.errors import ApplicationError, NotFound

from . import selectors, services
from .models import Missed, Overlap


def _spec(form: Any) -> services.Spec:
    """The create form as a spec; a malformed field raises ApplicationError."""
    timing = form.get("timing", "interval")
    interval = None
    if timing == "interval":
        try:
            interval = int(form.get("interval_seconds", ""))
        except ValueError:
            raise ApplicationError("The interval is a whole number of seconds.") from None
    values_text = form.get("input_values", "").strip()
    values = None
    if values_text:
        try:
            values = json.loads(values_text)
        except ValueError as exc:
            raise ApplicationError(f"The input values are not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ApplicationError('The input values are a JSON object: {"name": value, ...}.')
    return services.Spec(
        app=form.get("app", ""),
        procedure=form.get("procedure", ""),
        version=form.get("version", "").strip() or "latest",
        name=form.get("name", "")[:200],
        cron=form.get("cron", "").strip() if timing == "cron" else "",
        timezone=form.get("timezone", "").strip() or "UTC",
        interval_seconds=interval,
        input_values=values,
        input_case=form.get("input_case", "").strip() or None,
        overlap=form.get("overlap", Overlap.SKIP),
        missed=form.get("missed", Missed.ONCE),
    )


def _solve_procedures(user: Any) -> list[tuple[str, list[str]]]:
    found = []
    for app in apps_for_user(user).order_by("name"):
        try:
            version = version_resolve_for_user(user, app.name, "latest")
        except ApplicationError:
            continue
        names = [
            p["name"] for p in version.manifest.get("interface", {}).get("procedures", []) if p.get("kind") == "solve"
        ]
        if names:
            found.append((app.name, names))
    return found


@login_required
def schedules_page(request: HttpRequest) -> HttpResponse:
    error, status = "", 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "create":
            try:
                schedule = services.schedule_create(user=request.user, spec=_spec(request.POST), request=request)
            except NotFound as exc:
                error, status = exc.message, 400
            except ApplicationError as exc:
                error, status = exc.message, exc.status
            else:
                messages.success(request, f"Schedule {schedule.pk} created: {schedule.when}.")
                return redirect("portal:schedules")
        else:
            schedule = selectors.schedule_get_for_user(request.user, request.POST.get("id", ""))
            if action == "delete":
                services.schedule_delete(user=request.user, schedule=schedule, request=request)
                messages.success(request, f"Schedule {schedule.pk} deleted.")
            elif action in ("pause", "resume"):
                services.schedule_update(user=request.user, schedule=schedule, changes={"paused": action == "pause"})
                messages.success(request, f"Schedule {schedule.pk} {'paused' if action == 'pause' else 'resumed'}.")
            else:
                raise ApplicationError("Unknown action.")
            return redirect("portal:schedules")
    schedules = list(selectors.schedules_for_user(request.user))
    last = selectors.last_runs(schedules)
    rows = [(schedule, last.get(schedule.pk)) for schedule in schedules]
    context = {
        "rows": rows,
        "show_owner": request.user.is_superuser,
        "procedures": _solve_procedures(request.user),
        "error": error,
        "form": request.POST if error else {},
        "overlaps": Overlap.choices,
        "misseds": Missed.choices,
    }
    return render(request, "portal/schedules.html", context, status=status)
