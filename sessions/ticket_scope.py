"""What a data session's ticket reaches: the jobs and cases of its own app, and nothing else.

A data session calls the API with a ticket scoped to ``{"session": ..., "app": ...}``
(``TicketScope`` admits it to the views that allow it and refuses a request that names
another app). These selectors narrow the objects such a ticket sees to the scope's app, so
that a list shows only that app's jobs and cases and an id of another app's object is
answered as unknown (404), as another user's object is.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet

from pro_portal.errors import Forbidden, NotFound

from . import jobs
from .cases import case_get_for_user
from .models import Case, Job


def scope_app(credential: Any) -> str | None:
    """The app a scoped credential is limited to; ``None`` for a full one (a login, a personal ticket, a key).

    A scope that names no app reaches no app's objects (the empty name matches none).
    """
    scope = getattr(credential, "scope", None)
    if not scope:
        return None
    return str(scope.get("app") or "")


def jobs_in_scope(user: AbstractUser, app_name: str | None) -> QuerySet[Job]:
    """The jobs the user sees, only the app's when ``app_name`` is given."""
    found = jobs.jobs_for_user(user)
    return found if app_name is None else found.filter(app_version__app__name=app_name)


def job_get_in_scope(user: AbstractUser, job_id: Any, app_name: str | None) -> Job:
    """A job the user sees, which must be of the app when ``app_name`` is given (else: not found)."""
    job = jobs.job_get_for_user(user, job_id)
    if app_name is not None and job.app_version.app.name != app_name:
        raise NotFound(f"There is no job {job_id} you have access to.")
    return job


def case_get_in_scope(user: AbstractUser, case_id: Any, app_name: str | None) -> Case:
    """A case the user sees, which must be of the app when ``app_name`` is given (else: not found)."""
    case = case_get_for_user(user, case_id)
    if app_name is not None and case.app.name != app_name:
        raise NotFound(f"There is no case {case_id} you have access to.")
    return case


def app_in_scope(app_name: str, scoped: str | None) -> None:
    """Refuse naming another app than the scope's (as ``TicketScope`` does, whatever route the name came by)."""
    if scoped is not None and app_name != scoped:
        raise Forbidden("This ticket belongs to a data session and cannot make this call.", code="permission_denied")
