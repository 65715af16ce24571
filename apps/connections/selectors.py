from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from pro_portal.errors import Forbidden, NotFound
from pro_portal.prepared import PreparedQuery

from .models import Connection


def connections_for_admin(user: User) -> QuerySet[Connection]:
    if not user.is_superuser:
        raise Forbidden("Only admins see the platform's connections.")
    return Connection.objects.prefetch_related("grants__app").order_by("name")


def connection_get_for_admin(user: User, name: str) -> Connection:
    found = connections_for_admin(user).filter(name=name).first()
    if found is None:
        raise NotFound(f"There is no connection named {name!r}.")
    return found


def connection_names_of_app(app_id: int) -> list[str]:
    """What an app is granted, for its managers' page (names only: never a place or a secret)."""
    return list(Connection.objects.filter(grants__app_id=app_id).order_by("name").values_list("name", flat=True))


# Asked at every job's and data session's start, mostly to find none: compiled once.
_GRANTED: PreparedQuery[Connection] = PreparedQuery(
    lambda variant, app_id: Connection.objects.filter(grants__app_id=app_id).order_by("name"), "app_id"
)


def connections_granted_to(app_id: int) -> list[Connection]:
    """The connections an app is granted, by name."""
    return _GRANTED.fetch(None, app_id=app_id)
