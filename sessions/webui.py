"""Portal pages of data sessions: opening an app, the WebUI page, the list of sessions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.catalog import selectors as catalog
from pro_portal.errors import ApplicationError

from . import data_sessions as service
from . import selectors


@login_required
def launch(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """The stable link to an app: offers to resume a live session, else opens a new one."""
    found = catalog.version_resolve_for_user(request.user, name, version)
    if request.method == "POST":
        try:
            session = service.session_launch(user=request.user, app_name=name, version=version)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect("portal:sessions")
        return redirect("portal:session", session_id=session.pk)
    resumable = None if request.GET.get("new") else selectors.session_resumable(request.user, name)
    return render(request, "portal/open.html", {"app": found.app, "version": found, "resumable": resumable})


@login_required
def session_page(request: HttpRequest, session_id: str) -> HttpResponse:
    session = selectors.session_get_for_user(request.user, session_id)
    if session.owner_id != request.user.pk:
        messages.error(request, "Only its owner can open a session; you can stop it from this list.")
        return redirect("portal:sessions")
    return render(request, "portal/session.html", {"session": session, "app": session.app_version.app})


@login_required
def session_list(request: HttpRequest) -> HttpResponse:
    sessions = selectors.sessions_for_user(request.user)[:200]
    return render(request, "portal/sessions.html", {"sessions": sessions, "show_owner": request.user.is_superuser})


@login_required
@require_POST
def session_action(request: HttpRequest, session_id: str) -> HttpResponse:
    session = selectors.session_get_for_user(request.user, session_id)
    try:
        if request.POST.get("action") == "restart":
            new = service.session_restart(user=request.user, session=session)
            return redirect("portal:session", session_id=new.pk)
        service.session_stop(user=request.user, session=session)
        messages.success(request, f"Closed the session of {session.app_version.app.title}.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("portal:sessions")
