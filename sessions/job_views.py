"""Portal pages of solve jobs: the list, one job's live log and progress, and submitting from a version page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pro_portal.errors import ApplicationError, Forbidden, NotFound

from . import jobs, params, selectors

JOBS_PAGE_SIZE = 50  # rows per page of the jobs list (static/js/jobs-list.js pages through the API)


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    context = {
        "show_owner": request.user.is_superuser,
        "apps": selectors.app_names_for_user(request.user),
        "page_size": JOBS_PAGE_SIZE,
    }
    return render(request, "portal/jobs_list.html", context)


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get_for_user(request.user, job_id)
    context = {"job": job, "session_link": selectors.job_session_link(job, request.user)}
    return render(request, "portal/job_detail.html", context)


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
