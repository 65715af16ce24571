"""The security event log: who did what, from where, to what, and how it ended."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .models import SecurityEvent, SecurityOutcome

logger = logging.getLogger("security")


def client_address(request) -> str:
    if request is None:
        return ""
    meta = getattr(request, "META", None) or getattr(getattr(request, "_request", None), "META", {})
    return meta.get("REMOTE_ADDR", "")[:64]


def security_event(
    kind: str,
    *,
    request=None,
    actor: Any = None,
    target: str = "",
    outcome: str = SecurityOutcome.SUCCESS,
    source: str | None = None,
    **detail: Any,
) -> None:
    """Record an event; a failure to record is logged, never raised into the action it describes."""
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user.username if user is not None and user.is_authenticated else ""
    elif actor is not None and not isinstance(actor, str):
        actor = getattr(actor, "username", str(actor))
    actor = actor or ""
    try:
        SecurityEvent.objects.create(
            kind=kind,
            actor=(actor or "")[:150],
            source=(source if source is not None else client_address(request))[:64],
            target=str(target)[:300],
            outcome=outcome,
            detail=detail,
        )
    except Exception:
        logger.exception("Could not record the security event %s", kind)
    logger.info("%s actor=%s target=%s outcome=%s", kind, actor, target, outcome)


def security_events_remove_expired(*, now=None) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=settings.PRO_SECURITY_EVENT_RETENTION_DAYS)
    deleted, _ = SecurityEvent.objects.filter(at__lt=cutoff).delete()  # a queryset delete: retention only
    return deleted
