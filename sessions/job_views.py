"""Portal pages of solve jobs: the live list, one job's live log and progress, statistics."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pro_portal.errors import ApplicationError, Forbidden, NotFound

from . import jobs, params, selectors
from .statistics import job_statistics


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/jobs_list.html", {"show_owner": request.user.is_superuser})


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    return render(request, "portal/job_detail.html", {"job": selectors.job_get_for_user(request.user, job_id)})


@login_required
@require_POST
def job_action(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get_for_user(request.user, job_id)
    try:
        if request.POST.get("action") == "interrupt":
            jobs.job_interrupt(user=request.user, job=job)
            messages.success(request, f"Asked job {job.pk} to stop and keep its best solution.")
        else:
            jobs.job_cancel(user=request.user, job=job)
            messages.success(request, f"Job {job.pk} is cancelled.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("portal:job", job_id=job.pk)


@login_required
@require_POST
def job_submit(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """Run a solve of a version on its initial data, from the version page."""
    try:
        job = jobs.job_submit(user=request.user, app_name=name, version=version, **params.job_form(request.POST))
    except (NotFound, Forbidden):
        raise  # a version one cannot see: the 404 page, not a hint on its page
    except (ApplicationError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return redirect("portal:version", name=name, version=version)
    messages.success(request, f"Job {job.pk} is queued.")
    return redirect("portal:job", job_id=job.pk)


@login_required
def job_statistics_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the statistics of the platform.")
    days, app = params.statistics_query(request.GET)
    context = {
        "rows": job_statistics(days=days, app_name=app),
        "days": days,
        "app": app,
        "apps": selectors.app_names_for_user(request.user),
    }
    return render(request, "portal/statistics.html", context)
