"""The queue's order: priority first; within a priority, users in turn; each user's jobs first in, first out.

The rule (fair share by running solves, then round robin): among the users with a runnable job
at the highest priority that has one, the next slot goes to the user with the fewest solves
running across the cluster; between equals, to the user whose last solve started longest ago
(within the last hour; never counts as longest), then to the oldest waiting job. A user with 200
jobs queued waits behind a user with 1 queued as soon as a slot frees, even on a node of one slot
where neither has anything running at that moment: one user's backlog delays another's job by
the solves already running, never by the backlog. Admins still order work by priority, which
comes first.

A user at their running-solves quota, or without a seat while every seat is taken, is passed over
until that changes (:func:`wait_reason` says which to the job's page). What is counted is counted
across the cluster; the claim re-counts under the user's lock (:mod:`sessions.locks`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, QuerySet

from apps.accounts.models import Quota
from apps.accounts.quotas import limits_of_users

from .locks import seats_lock
from .models import LIVE_SESSION_STATES, DataSession, Job, JobState

RECENT = timedelta(hours=1)  # how far back a user's last start counts for their turn


@dataclass(frozen=True)
class Turn:
    """One user's turn at one priority level: the claim takes that user's oldest job there."""

    owner_id: int
    priority: int
    oldest: datetime


def runnable(now: datetime) -> QuerySet[Job]:
    return Job.objects.filter(state=JobState.QUEUED, not_before__lte=now, cancel_requested_at__isnull=True)


def running_per_owner(owner_ids: set[int] | None = None) -> dict[int, int]:
    running = Job.objects.filter(state=JobState.RUNNING)
    if owner_ids is not None:
        running = running.filter(owner_id__in=owner_ids)
    return dict(running.values("owner_id").annotate(n=Count("id")).values_list("owner_id", "n"))


def last_served(owner_ids: set[int], now: datetime) -> dict[int, datetime]:
    """When each user's last solve started, within ``RECENT`` (one query, by job_owner_last_start)."""
    recent = Job.objects.filter(owner_id__in=owner_ids, started_at__gte=now - RECENT)
    return dict(recent.values("owner_id").annotate(last=Max("started_at")).values_list("owner_id", "last"))


def running_limits(owner_ids: set[int]) -> dict[int, int]:
    """The running-solves quota of those of ``owner_ids`` that have one."""
    if not owner_ids or (not Quota.objects.exists() and settings.PRO_QUOTA_DEFAULTS.get("running_jobs") is None):
        return {}  # no quota anywhere: nothing to ask per user
    limits = limits_of_users(owner_ids)
    return {uid: lim.running_jobs for uid, lim in limits.items() if lim.running_jobs is not None}


def seat_holders() -> set[int]:
    """The users who hold a seat: a live data session or a running solve."""
    holders = set(Job.objects.filter(state=JobState.RUNNING).values_list("owner_id", flat=True).distinct())
    return holders | set(
        DataSession.objects.filter(state__in=LIVE_SESSION_STATES).values_list("owner_id", flat=True).distinct()
    )


def seat_holder_names() -> list[str]:
    """Who holds the seats, by name (the nodes page shows them to admins)."""
    from django.contrib.auth.models import User

    return list(User.objects.filter(pk__in=seat_holders()).order_by("username").values_list("username", flat=True))


def turns(now: datetime) -> Iterator[Turn]:
    """Whose turn it is, in order (see the module's docstring); users who must wait are left out
    when there are others to take the turn (the claim's :func:`may_start` has the last word)."""
    heads = [
        Turn(owner, priority, oldest)
        for owner, priority, oldest in runnable(now)
        .values("owner_id", "priority")
        .annotate(oldest=Min("created_at"))
        .values_list("owner_id", "priority", "oldest")
    ]
    if len(heads) <= 1:  # no one to order: :func:`may_start` judges quota and seats under the owner's lock
        yield from heads
        return
    running = running_per_owner()
    served = last_served({turn.owner_id for turn in heads}, now)
    # Only a user with solves running can be at a quota (one of 0 is caught by may_start).
    limits = running_limits({turn.owner_id for turn in heads if running.get(turn.owner_id)})
    holders = seat_holders() if settings.PRO_SEATS else set()
    seats_full = bool(settings.PRO_SEATS) and len(holders) >= settings.PRO_SEATS
    never = now - RECENT
    order = lambda t: (-t.priority, running.get(t.owner_id, 0), served.get(t.owner_id, never), t.oldest)  # noqa: E731
    for turn in sorted(heads, key=order):
        if turn.owner_id in limits and running.get(turn.owner_id, 0) >= limits[turn.owner_id]:
            continue
        if seats_full and turn.owner_id not in holders:
            continue
        yield turn


def may_start(owner_id: int) -> bool:
    """Under the owner's lock: whether one more solve of theirs may start now (quota and seats)."""
    limit = running_limits({owner_id}).get(owner_id)
    if limit is not None and running_per_owner({owner_id}).get(owner_id, 0) >= limit:
        return False
    if settings.PRO_SEATS:
        seats_lock()
        holders = seat_holders()
        return owner_id in holders or len(holders) < settings.PRO_SEATS
    return True


def wait_reason(job: Job) -> str:
    """Why a queued job has not started yet, in words for its page ("" when it is not queued)."""
    if job.state != JobState.QUEUED:
        return ""
    from django.utils import timezone

    if job.not_before > timezone.now():
        return f"It starts at {timezone.localtime(job.not_before):%Y-%m-%d %H:%M}, as asked."
    limit = running_limits({job.owner_id}).get(job.owner_id)
    running = running_per_owner({job.owner_id}).get(job.owner_id, 0) if limit is not None else 0
    if limit is not None and running >= limit:  # the count only under a quota: a queued job's every poll asks this
        return f"{job.owner.username} has {running} solves running, the quota: it starts when one of them ends."
    if settings.PRO_SEATS:
        holders = seat_holders()
        if job.owner_id not in holders and len(holders) >= settings.PRO_SEATS:
            return f"All {settings.PRO_SEATS} seats are taken: it starts when a user's sessions and solves end."
    return "It waits for a free solve slot; users take turns."
