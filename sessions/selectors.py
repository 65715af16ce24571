"""Reads of jobs, cases and data sessions, always through the caller's access rights.

A data session's ticket is scoped to ``{"session": ..., "app": ...}`` (see
:mod:`sessions.ticket_scope`); the ``*_in_scope`` reads narrow what such a ticket sees to the
scope's app (``scope``, ``None`` for a full credential), so that a list shows only that app's
objects and an id of another app's object is answered as unknown (404), as another user's is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from apps.catalog.selectors import apps_for_user
from pro_portal.errors import NotFound
from pro_portal.prepared import PreparedQuery

from .models import LIVE_SESSION_STATES, Case, DataSession, Job, JobState, SessionState

# ---------------------------------------------------------------- jobs


# What the job views read of a job and its relations (jobs_for_user).
JOB_COLUMNS = (
    *(field.name for field in Job._meta.concrete_fields),
    "owner__username",
    "app_version__version",
    "app_version__app__name",
    "app_version__app__title",
)


def jobs_for_user(user: User) -> QuerySet[Job]:
    """A user's own jobs (an admin's: everyone's), newest first.

    A job's page and every script polling it read this: of the owner, the app version and the
    app only what the job views show is read (not the manifest, not the user's password hash),
    which makes the query a fraction of the work to build, send and read.
    """
    jobs = Job.objects.select_related("owner", "app_version__app").only(*JOB_COLUMNS)
    return jobs if user.is_superuser else jobs.filter(owner=user)


# One job as a user sees it: what every poll of a job's page, log or result asks, compiled once.
_JOB_OF_USER: PreparedQuery[Job] = PreparedQuery(
    lambda admin, job_id, owner_id: (
        Job.objects.select_related("owner", "app_version__app")
        .only(*JOB_COLUMNS)
        .filter(pk=job_id, **({} if admin else {"owner_id": owner_id}))
    ),
    "job_id",
    "owner_id",
)
BIGINT = 2**63


def job_get_for_user(user: User, job_id: Any) -> Job:
    try:
        number = int(job_id)
    except (ValueError, TypeError):
        number = BIGINT
    found = _JOB_OF_USER.fetch(user.is_superuser, job_id=number, owner_id=user.pk) if abs(number) < BIGINT else []
    if not found:
        raise NotFound(f"There is no job {job_id} you have access to.")
    return found[0]


JOB_FILTERS = ("state", "app", "owner", "since", "until", "q")


def job_filters(query: Mapping[str, Any]) -> dict[str, Any]:
    """The filters of :func:`jobs_in_scope` given in a (validated) query."""
    return {name: query[name] for name in JOB_FILTERS if query.get(name) not in (None, "")}


def jobs_in_scope(
    user: User,
    scope: str | None,
    *,
    state: str | None = None,
    app: str | None = None,
    owner: str | None = None,
    since: date | None = None,
    until: date | None = None,
    q: str | None = None,
) -> QuerySet[Job]:
    """The jobs the user sees, only the scope's app's when ``scope`` is given, filtered as asked.

    ``since`` and ``until`` are days (both included) of the submission; ``q`` is a job's number
    or part of its app's name or procedure.
    """
    found = jobs_for_user(user)
    if scope is not None:
        found = found.filter(app_version__app__name=scope)
    if state:
        found = found.filter(state=state)
    if app:
        found = found.filter(app_version__app__name=app)
    if owner:
        found = found.filter(owner__username=owner)
    if since:
        found = found.filter(created_at__date__gte=since)
    if until:
        found = found.filter(created_at__date__lte=until)
    if q:
        text = Q(app_version__app__name__icontains=q) | Q(procedure__icontains=q)
        number = q.lstrip("#")
        found = found.filter(text | Q(pk=int(number)) if number.isdigit() and len(number) < 16 else text)
    return found


def job_get_in_scope(user: User, job_id: Any, scope: str | None) -> Job:
    """A job the user sees, which must be of the scope's app when ``scope`` is given (else: not found)."""
    job = job_get_for_user(user, job_id)
    if scope is not None and job.app_version.app.name != scope:
        raise NotFound(f"There is no job {job_id} you have access to.")
    return job


def job_session_link(job: Job, user: User) -> str | None:
    """The page of the data session that submitted ``job``, while it is live and the viewer's own."""
    session = job.data_session
    if session is None or session.owner_id != user.pk or not session.is_live:
        return None
    return reverse("portal:session", args=[session.pk])


def job_result_case(job: Job) -> Case:
    """The case a job produced; not found while (or when) it has none."""
    if job.result_case is None:
        raise NotFound(f"Job {job.pk} has no result ({job.state}).")
    return job.result_case


REMOTE_EXECUTORS = ("slurm", "kubernetes")


def job_requests(*, job: Job) -> dict[str, Any]:
    """What users asked of a running job since it started: interrupt and cancel times."""
    row = Job.objects.filter(pk=job.pk).values("interrupt_requested_at", "cancel_requested_at", "state").first()
    return dict(row) if row else {}


def jobs_running_on(*, node: str, executor: str | None = None) -> QuerySet[Job]:
    """The jobs a node holds as running (those it runs with ``executor``, when given)."""
    found = Job.objects.filter(state=JobState.RUNNING, node=node)
    if executor is not None:
        found = found.filter(executor=executor)
    return found.select_related("app_version__app", "owner")


def jobs_running_locally_on(*, node: str) -> QuerySet[Job]:
    """The jobs a node runs in its own sandboxes: those at an engine live on without it (their lease tells)."""
    return jobs_running_on(node=node).exclude(executor__in=REMOTE_EXECUTORS)


def jobs_with_expired_lease(*, now: datetime | None = None) -> list[Job]:
    """Running jobs whose worker stopped renewing their lease a whole lease period ago."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS)
    return list(
        Job.objects.filter(state=JobState.RUNNING, lease_expires_at__lt=cutoff).select_related(
            "app_version__app", "owner"
        )
    )


def app_names_for_user(user: User) -> QuerySet:
    """The names of the apps a user may see, in order (the statistics page's choice of app)."""
    return apps_for_user(user).order_by("name").values_list("name", flat=True)


# ---------------------------------------------------------------- cases


def cases_for_user(user: User, *, app_name: str | None = None, kind: str | None = None) -> QuerySet[Case]:
    """A user's own cases (an admin's: everyone's), newest first."""
    cases = Case.objects.select_related("app", "app_version", "owner")
    if not user.is_superuser:
        cases = cases.filter(owner=user)
    if app_name:
        cases = cases.filter(app__name=app_name)
    if kind:
        cases = cases.filter(kind=kind)
    return cases


def case_get_for_user(user: User, case_id: Any) -> Case:
    """A case its owner (or an admin) may see."""
    cases = Case.objects.select_related("app")
    if not user.is_superuser:
        cases = cases.filter(owner=user)
    try:
        return cases.get(pk=case_id)
    except (Case.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound(f"There is no case {case_id} you have access to.") from None


def cases_in_scope(user: User, scope: str | None, *, app: str | None = None, kind: str | None = None) -> QuerySet[Case]:
    """The cases the user sees: the scope's app's when ``scope`` is given (none for an empty one), else ``app``'s."""
    if scope is None:
        return cases_for_user(user, app_name=app, kind=kind)
    return cases_for_user(user, kind=kind).filter(app__name=scope)


def case_get_in_scope(user: User, case_id: Any, scope: str | None) -> Case:
    """A case the user sees, which must be of the scope's app when ``scope`` is given (else: not found)."""
    case = case_get_for_user(user, case_id)
    if scope is not None and case.app.name != scope:
        raise NotFound(f"There is no case {case_id} you have access to.")
    return case


# ---------------------------------------------------------------- data sessions


def sessions_for_user(user: User, *, live: bool = False) -> QuerySet[DataSession]:
    """A user's own sessions (an admin's: everyone's), newest first; ``live``: only those starting or running."""
    found = DataSession.objects.select_related("owner", "app_version__app")
    if not user.is_superuser:
        found = found.filter(owner=user)
    return found.filter(state__in=LIVE_SESSION_STATES) if live else found


def session_get_for_user(user: User, session_id: Any) -> DataSession:
    """A session its owner (or an admin) may see; another user's id is simply not found."""
    try:
        return sessions_for_user(user).get(pk=session_id)
    except (DataSession.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound(f"There is no session {session_id} you have access to.") from None


def session_owned(user: User, session_id: Any) -> DataSession | None:
    """The session if ``user`` owns it, admins included: only its owner reaches a session's process."""
    return DataSession.objects.filter(pk=session_id, owner=user).first()


def session_resumable(user: User, app_name: str) -> DataSession | None:
    """The user's live session of an app, if there is one, to offer instead of a new one."""
    return (
        DataSession.objects.filter(owner=user, app_version__app__name=app_name, state__in=LIVE_SESSION_STATES)
        .select_related("app_version__app")
        .first()
    )


def live_sessions_by_app(user: User) -> dict[int, DataSession]:
    """The user's live sessions, one per app (the newest), for the catalogue's Resume links."""
    found: dict[int, DataSession] = {}
    for session in (
        DataSession.objects.filter(owner=user, state__in=LIVE_SESSION_STATES)
        .select_related("app_version")
        .order_by("created_at")
    ):
        found[session.app_version.app_id] = session
    return found


def session_states(session_ids: Iterable[Any]) -> dict[Any, str]:
    """The state of each of these sessions, by id (those that no longer exist are left out)."""
    return dict(DataSession.objects.filter(pk__in=list(session_ids)).values_list("pk", "state"))


def sessions_idle(*, node: str) -> list[DataSession]:
    """Running sessions of a node with no tab connected and no running job, past their idle timeout.

    The timeout is the app version's ``session_idle_timeout`` (manifest) or ``PRO_SESSION_IDLE_SECONDS``.
    """
    now = timezone.now()
    candidates = DataSession.objects.filter(node=node, state=SessionState.RUNNING, connections__lte=0)
    idle = []
    for session in candidates.select_related("owner", "app_version"):
        timeout = session.app_version.manifest.get("session_idle_timeout") or settings.PRO_SESSION_IDLE_SECONDS
        if session.last_active_at > now - timedelta(seconds=timeout):
            continue
        busy = Job.objects.filter(
            owner=session.owner,
            app_version=session.app_version,
            state__in=[JobState.QUEUED, JobState.RUNNING],
            created_at__gte=session.created_at,
        ).exists()
        if not busy:
            idle.append(session)
    return idle
