"""Data sessions: launching, attaching to and stopping a user's live app processes.

The session manager of a node (:mod:`sessions.session_manager`) starts and stops the
processes; these functions change the rows it acts on, each with a conditional update.
Reads of sessions are in :mod:`sessions.selectors`.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.accounts.events import security_event
from apps.accounts.quotas import limits_of
from apps.catalog import selectors as catalog
from apps.catalog.models import VerificationState
from pro_portal.errors import ApplicationError, Conflict
from pro_portal.notify import notify

from . import fair_share
from .locks import owner_lock, seats_lock
from .models import LIVE_SESSION_STATES, DataSession, SessionState

logger = logging.getLogger(__name__)


class TooManySessions(ApplicationError):
    status = 429
    code = "too_many_sessions"

    def __init__(self, message: str, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


def session_launch(*, user: User, app_name: str, version: str = "latest") -> DataSession:
    """Ask for a new data session of an app version the user may use."""
    found = catalog.version_resolve_for_user(user, app_name, version)
    if found.verification_state != VerificationState.VERIFIED:
        raise Conflict(f"Version {found.version} of {app_name!r} is not verified yet.", code="not_verified")
    limit = limits_of(user).sessions
    with transaction.atomic():
        owner_lock(user.pk)  # counted across the cluster: two launches at once do not both pass
        live = DataSession.objects.filter(owner=user, state__in=LIVE_SESSION_STATES)
        if limit is not None and live.count() >= limit:
            raise TooManySessions(
                f"You have {limit} open sessions, your quota: close one to open another.", retry_after=30
            )
        # Per user: one user's burst of launches does not refuse another user's.
        if live.filter(state=SessionState.STARTING).count() >= settings.PRO_SESSIONS_STARTING_LIMIT:
            raise TooManySessions(
                "Several of your sessions are starting right now: try again in a few seconds.", retry_after=5
            )
        _check_seat(user)
        session = DataSession.objects.create(owner=user, app_version=found, secret=secrets.token_urlsafe(32))
        session_changed(session.pk, user.pk, SessionState.STARTING)
    security_event("session.launch", actor=user, target=f"session {session.pk} of {found}")
    logger.info("%s launches session %s of %s", user.username, session.pk, found)
    return session


def _check_seat(user: User) -> None:
    """Refuse a user who holds no seat when every seat is taken (``PRO_SEATS``), under the seats' lock."""
    if not settings.PRO_SEATS or user.is_superuser:
        return
    seats_lock()
    holders = fair_share.seat_holders()
    if user.pk not in holders and len(holders) >= settings.PRO_SEATS:
        raise TooManySessions(
            f"All {settings.PRO_SEATS} seats of the platform are taken: try again when someone closes their "
            "sessions, or ask an admin (they see who holds the seats).",
            retry_after=60,
            code="no_free_seat",
        )


def session_changed(session_id: Any, owner_id: int | None, state: str) -> None:
    """Tell the session managers and the open pages of every node (once the transaction commits)."""
    notify("sessions", id=str(session_id), owner=owner_id, state=state)


def session_stop(*, user: User, session: DataSession, reason: str = "") -> DataSession:
    """Close a session: its node's manager stops the process and removes its folder."""
    if DataSession.objects.filter(pk=session.pk, state__in=LIVE_SESSION_STATES).update(
        state=SessionState.STOPPED, stopped_at=timezone.now(), error_message=reason or f"Closed by {user.username}."
    ):
        session_changed(session.pk, session.owner_id, SessionState.STOPPED)
    session.refresh_from_db()
    return session


def sessions_stop_for_user(*, user: User, reason: str) -> int:
    stopped = DataSession.objects.filter(owner=user, state__in=LIVE_SESSION_STATES).update(
        state=SessionState.STOPPED, stopped_at=timezone.now(), error_message=reason
    )
    if stopped:
        session_changed("", user.pk, SessionState.STOPPED)
    return stopped


def session_restart(*, user: User, session: DataSession) -> DataSession:
    """Start a lost or stopped session again, as a new session of the same version."""
    if session.is_live:
        raise Conflict("The session is still running.", code="session_live")
    version = session.app_version
    return session_launch(user=user, app_name=version.app.name, version=version.version)


# ---------------------------------------------------------------- the manager's side


def session_claim_starting(*, node: str) -> DataSession | None:
    for session_id in (
        DataSession.objects.filter(state=SessionState.STARTING, node="")
        .order_by("created_at")
        .values_list("pk", flat=True)[:5]
    ):
        if DataSession.objects.filter(pk=session_id, state=SessionState.STARTING, node="").update(node=node):
            return DataSession.objects.select_related("owner", "app_version__app", "app_version__runtime").get(
                pk=session_id
            )
    return None


def session_mark_running(*, session: DataSession, host: str, port: int, pid: int) -> bool:
    now = timezone.now()
    running = DataSession.objects.filter(pk=session.pk, state=SessionState.STARTING).update(
        state=SessionState.RUNNING, host=host, port=port, pid=pid, started_at=now, last_active_at=now
    )
    if running:
        session_changed(session.pk, session.owner_id, SessionState.RUNNING)
    return bool(running)


def session_mark_ended(*, session: DataSession, state: str, error: str = "") -> bool:
    ended = DataSession.objects.filter(pk=session.pk, state__in=LIVE_SESSION_STATES).update(
        state=state, stopped_at=timezone.now(), error_message=error[:10000]
    )
    if ended:
        session_changed(session.pk, session.owner_id, state)
    return bool(ended)


def sessions_mark_lost_on_node(*, node: str, reason: str) -> int:
    """The live sessions of a node whose processes are gone: lost, for their users to restart.

    Used by the master for a dead node and by a node's own session manager for what its previous
    run left live.
    """
    count = DataSession.objects.filter(node=node, state__in=LIVE_SESSION_STATES).update(
        state=SessionState.LOST, stopped_at=timezone.now(), error_message=reason
    )
    if count:
        logger.warning("%s data sessions of node %s are lost", count, node)
        session_changed("", None, SessionState.LOST)
    return count


def sessions_fail_unclaimed(*, older_than_seconds: float) -> int:
    """Sessions no node took: no node with the sessions role and free capacity is up."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return DataSession.objects.filter(state=SessionState.STARTING, node="", created_at__lt=cutoff).update(
        state=SessionState.FAILED,
        stopped_at=timezone.now(),
        error_message=f"No node with the sessions role and free capacity took the session within {older_than_seconds:g} s.",
    )


def session_record_usage(*, session: DataSession, memory_mb: float, cpu_seconds: float) -> None:
    """A sample of what the session's sandbox uses: its memory now, and its peak memory and CPU
    seconds so far, each kept as the most seen (CPU time falls when a process of the sandbox exits)."""
    DataSession.objects.filter(pk=session.pk).update(
        memory_mb=memory_mb,
        cpu_seconds=Greatest(Coalesce(F("cpu_seconds"), Value(0.0)), Value(cpu_seconds)),
        peak_memory_mb=Greatest(Coalesce(F("peak_memory_mb"), Value(0.0)), Value(memory_mb)),
    )


def session_attach(*, session: DataSession) -> None:
    DataSession.objects.filter(pk=session.pk).update(connections=F("connections") + 1, last_active_at=timezone.now())


def session_detach(*, session: DataSession) -> None:
    DataSession.objects.filter(pk=session.pk).update(connections=F("connections") - 1, last_active_at=timezone.now())
