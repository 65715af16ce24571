"""What a data session's ticket reaches: the jobs and cases of its own app, and nothing else.

A data session calls the API with a ticket scoped to ``{"session": ..., "app": ...}``
(``TicketScope`` admits it to the views that allow it and refuses a request that names
another app). ``scope_app`` is the app such a ticket is limited to; the ``*_in_scope``
selectors of :mod:`sessions.selectors` narrow the objects it sees to that app, so that a list
shows only that app's jobs and cases and an id of another app's object is answered as unknown
(404), as another user's object is.
"""

from __future__ import annotations

from typing import Any

from pro_portal.errors import Forbidden


def scope_app(credential: Any) -> str | None:
    """The app a scoped credential is limited to; ``None`` for a full one (a login, a personal ticket, a key).

    A scope that names no app reaches no app's objects (the empty name matches none).
    """
    scope = getattr(credential, "scope", None)
    if not scope:
        return None
    return str(scope.get("app") or "")


def scope_session(credential: Any) -> str | None:
    """The data session a scoped credential belongs to; ``None`` for a full one."""
    scope = getattr(credential, "scope", None)
    return str(scope["session"]) if scope and scope.get("session") else None


def app_in_scope(app_name: str, scoped: str | None) -> None:
    """Refuse naming another app than the scope's (as ``TicketScope`` does, whatever route the name came by)."""
    if scoped is not None and app_name != scoped:
        raise Forbidden("This ticket belongs to a data session and cannot make this call.", code="permission_denied")
