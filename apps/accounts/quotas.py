"""Quotas: what a user may use at once and ask for, from their own quota, their groups' and the defaults.

Per limit, the user's own quota where it sets it; else the most generous of the quotas of their
groups that set it; else the platform's default (``PRO_QUOTA_*``; ``None`` is no limit). Admins
have none. The limits on use (running solves, queued jobs, open sessions) are counted across the
whole cluster by the services that enforce them (:mod:`sessions.jobs`, :mod:`sessions.data_sessions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from .models import Quota

LIMITS = ("running_jobs", "queued_jobs", "sessions", "max_priority", "max_time_limit", "max_memory_mb")


@dataclass(frozen=True)
class Limits:
    """A user's effective limits; ``None``: no limit."""

    running_jobs: int | None = None
    queued_jobs: int | None = None
    sessions: int | None = None
    max_priority: int | None = None
    max_time_limit: float | None = None
    max_memory_mb: int | None = None


UNLIMITED = Limits()


def default_limits() -> Limits:
    defaults: dict[str, Any] = {name: settings.PRO_QUOTA_DEFAULTS.get(name) for name in LIMITS}
    return Limits(**{**defaults, "sessions": settings.PRO_SESSIONS_PER_USER})


def _merge(own: Quota | None, groups: list[Quota]) -> Limits:
    defaults = default_limits()
    merged: dict[str, Any] = {}
    for field in fields(Limits):
        name = field.name
        if own is not None and getattr(own, name) is not None:
            merged[name] = getattr(own, name)
            continue
        given = [getattr(quota, name) for quota in groups if getattr(quota, name) is not None]
        merged[name] = max(given) if given else getattr(defaults, name)
    return Limits(**merged)


def limits_of(user: User) -> Limits:
    """``user``'s effective limits (two queries)."""
    if user.is_superuser:
        return UNLIMITED
    own = Quota.objects.filter(user=user).first()
    groups = list(Quota.objects.filter(group__user=user))
    return _merge(own, groups)


def limits_of_users(user_ids: Iterable[int]) -> dict[int, Limits]:
    """The effective limits of several users at once (four queries, whatever their number)."""
    ids = set(user_ids)
    if not ids:
        return {}
    admins = set(User.objects.filter(pk__in=ids, is_superuser=True).values_list("pk", flat=True))
    own = {quota.user_id: quota for quota in Quota.objects.filter(user_id__in=ids)}
    memberships = list(User.groups.through.objects.filter(user_id__in=ids).values_list("user_id", "group_id"))
    by_group = {quota.group_id: quota for quota in Quota.objects.filter(group_id__in={g for _, g in memberships})}
    groups: dict[int, list[Quota]] = {}
    for uid, gid in memberships:
        if gid in by_group:
            groups.setdefault(uid, []).append(by_group[gid])
    return {uid: UNLIMITED if uid in admins else _merge(own.get(uid), groups.get(uid, [])) for uid in ids}
