"""Schedules: creating and changing them, and the tick that fires their slots (docs/schedules.md).

Every node's agent ticks (:mod:`apps.schedules.ticker`). A slot is fired by whoever moves the
schedule's ``next_run_at`` on from it first, with a conditional update, in the transaction that
also inserts the slot's run row, whose (schedule, slot) is unique: two nodes racing for a slot
make one run, and the loser does nothing. The job is submitted after that transaction commits,
as the schedule's owner, so the owner's access and quotas apply at each run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.events import security_event
from apps.catalog.selectors import version_resolve_for_user
from pro_portal.errors import ApplicationError
from sessions.jobs import job_submit
from sessions.models import JobState
from sessions.runtime.manifest import InputTypeError, check_input_types
from sessions.selectors import case_get_for_user

from .models import Missed, Overlap, RunState, Schedule, ScheduleRun

logger = logging.getLogger(__name__)

STALE_SUBMITTING = timedelta(minutes=5)  # a run left 'submitting' this long: its node stopped mid-submit
MAX_INTERVAL = 366 * 86400
EDITABLE = (
    "name",
    "version",
    "cron",
    "timezone",
    "interval_seconds",
    "input_values",
    "input_case",
    "overlap",
    "missed",
)


# ---------------------------------------------------------------- slots


def _zone(name: str) -> ZoneInfo:
    try:
        if len(name) > 64:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ApplicationError(f"Unknown time zone {name[:64]!r} (use an IANA name, e.g. Europe/Paris).") from None


def cron_check(expression: str) -> None:
    if len(expression) > 200 or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ApplicationError(
            f"{expression[:200]!r} is not a cron expression of five fields (minute hour day month weekday).",
            code="invalid",
        )
    try:
        croniter(expression, timezone.now()).get_next(datetime)
    except Exception:  # croniter's errors for a date that never comes (31 February)
        raise ApplicationError(f"The cron expression {expression!r} never matches a date.", code="invalid") from None


def slot_after(schedule: Schedule, moment: datetime) -> datetime:
    """The schedule's first slot strictly after ``moment`` (UTC)."""
    if schedule.cron:
        local = moment.astimezone(_zone(schedule.timezone))
        found = croniter(schedule.cron, local).get_next(datetime)
        return found.astimezone(UTC)
    step = float(schedule.interval_seconds or 1)
    done = math.floor((moment - schedule.anchor_at).total_seconds() / step) + 1
    return schedule.anchor_at + timedelta(seconds=done * step)


def slot_at_or_before(schedule: Schedule, moment: datetime) -> datetime:
    """The schedule's latest slot at or before ``moment``."""
    if schedule.cron:
        local = (moment + timedelta(microseconds=1)).astimezone(_zone(schedule.timezone))
        return croniter(schedule.cron, local).get_prev(datetime).astimezone(UTC)
    step = float(schedule.interval_seconds or 1)
    done = math.floor((moment - schedule.anchor_at).total_seconds() / step)
    return schedule.anchor_at + timedelta(seconds=done * step)


def slots_between(schedule: Schedule, first: datetime, last: datetime, cap: int = 10_000) -> int:
    """How many slots from ``first`` (a slot) to ``last`` (a slot), both counted (at most ``cap``)."""
    if not schedule.cron:
        return round((last - first).total_seconds() / float(schedule.interval_seconds or 1)) + 1
    count, current = 1, first
    while current < last and count < cap:
        current = slot_after(schedule, current)
        count += 1
    return count


# ---------------------------------------------------------------- creating and changing


@dataclass
class Spec:
    """What a schedule runs and when, as given (checked by :func:`_checked`)."""

    app: str
    procedure: str
    version: str = "latest"
    name: str = ""
    cron: str = ""
    timezone: str = "UTC"
    interval_seconds: int | None = None
    input_values: dict[str, Any] | None = None
    input_case: Any = None
    overlap: str = Overlap.SKIP
    missed: str = Missed.ONCE


def _checked(user: User, spec: Spec) -> Any:
    """Refuse what could never run (ApplicationError); the app the spec names."""
    if bool(spec.cron) == (spec.interval_seconds is not None):
        raise ApplicationError("Give either a cron expression or an interval, not both or neither.")
    if spec.cron:
        cron_check(spec.cron)
    _zone(spec.timezone or "UTC")
    minimum = settings.PRO_SCHEDULE_MIN_INTERVAL_SECONDS
    if spec.interval_seconds is not None and spec.interval_seconds > MAX_INTERVAL:
        raise ApplicationError(f"The interval must be at most {MAX_INTERVAL} s (a year).", code="invalid")
    if len(spec.name) > 200:
        raise ApplicationError("The name is at most 200 characters.", code="invalid")
    if spec.interval_seconds is not None and spec.interval_seconds < minimum:
        raise ApplicationError(f"The interval must be at least {minimum} s on this platform.", code="invalid")
    if spec.overlap not in Overlap.values or spec.missed not in Missed.values:
        raise ApplicationError("overlap is skip or queue; missed is once or skip.")
    if not isinstance(spec.version, str) or not 0 < len(spec.version) <= 64:
        raise ApplicationError("The version is latest or a version of the app.", code="invalid")
    version = version_resolve_for_user(user, spec.app, spec.version)
    procedures = {p["name"]: p for p in version.manifest.get("interface", {}).get("procedures", [])}
    if procedures.get(spec.procedure, {}).get("kind") != "solve":
        names = ", ".join(n for n, p in procedures.items() if p.get("kind") == "solve") or "none"
        raise ApplicationError(
            f"{spec.app!r} has no solve procedure {spec.procedure!r} (it has: {names}).", code="unknown_procedure"
        )
    if spec.input_values is not None and spec.input_case is not None:
        raise ApplicationError("Give the input as values or as a case, not both.")
    if spec.input_case is not None:
        case = case_get_for_user(user, spec.input_case)
        if case.app_id != version.app_id:
            raise ApplicationError(f"Case {case.id} belongs to another app.", code="bad_input")
    if spec.input_values:
        try:
            check_input_types(version.manifest.get("interface", {}), spec.input_values)
        except InputTypeError as exc:
            raise ApplicationError(
                f"The input is not valid: {exc}", code="bad_input", detail={"input": {exc.identifier: [exc.problem]}}
            ) from None
    return version.app


def schedule_create(*, user: User, spec: Spec, request: Any = None, now: datetime | None = None) -> Schedule:
    app = _checked(user, spec)
    now = now or timezone.now()
    schedule = Schedule(
        owner=user,
        app=app,
        name=spec.name,
        procedure=spec.procedure,
        version=spec.version,
        cron=spec.cron,
        timezone=spec.timezone or "UTC",
        interval_seconds=spec.interval_seconds,
        anchor_at=now,
        input_values=spec.input_values,
        input_case=spec.input_case,
        overlap=spec.overlap,
        missed=spec.missed,
        created_at=now,
    )
    schedule.next_run_at = slot_after(schedule, now)
    schedule.save()
    security_event(
        "schedule.create",
        request=request,
        actor=user,
        target=f"schedule {schedule.pk}",
        app=app.name,
        when=schedule.when,
    )
    return schedule


def schedule_update(
    *, user: User, schedule: Schedule, changes: dict[str, Any], now: datetime | None = None
) -> Schedule:
    """Change editable fields and/or pause (``paused``: True) or resume (False) it."""
    now = now or timezone.now()
    timing = {k for k in changes if k in ("cron", "interval_seconds", "timezone")}
    unknown = set(changes) - set(EDITABLE) - {"paused"}
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    fields = {k: v for k, v in changes.items() if k in EDITABLE}
    if fields.get("cron"):
        fields.setdefault("interval_seconds", None)
    if fields.get("interval_seconds") is not None:
        fields.setdefault("cron", "")
    if "input_case" in fields and fields["input_case"] is not None:
        fields.setdefault("input_values", None)
    if fields.get("input_values") is not None:
        fields.setdefault("input_case", None)
    if fields:
        current = {name: getattr(schedule, name) for name in EDITABLE}
        spec = Spec(app=schedule.app.name, procedure=schedule.procedure, **{**current, **fields})
        _checked(schedule.owner, spec)
        for name, value in fields.items():
            setattr(schedule, name, value)
    if timing:
        schedule.anchor_at = now
    if changes.get("paused") is True and not schedule.paused:
        schedule.paused, schedule.paused_reason, schedule.next_run_at = True, f"Paused by {user.username}.", None
    elif changes.get("paused") is False and schedule.paused:
        schedule.paused, schedule.paused_reason, schedule.refusals_in_a_row = False, "", 0
        schedule.next_run_at = slot_after(schedule, now)  # the slots of the pause are not missed
    elif timing and not schedule.paused:
        schedule.next_run_at = slot_after(schedule, now)
    schedule.save()
    return schedule


def schedule_delete(*, user: User, schedule: Schedule, request: Any = None) -> None:
    target, app = f"schedule {schedule.pk}", schedule.app.name
    schedule.delete()
    security_event("schedule.delete", request=request, actor=user, target=target, app=app)


# ---------------------------------------------------------------- the tick


def _busy(schedule_id: int, now: datetime, exclude: int | None = None) -> ScheduleRun | None:
    """The schedule's run that is still going: waiting, being submitted, or its job queued or running."""
    going = ScheduleRun.objects.filter(schedule_id=schedule_id).filter(
        Q(state=RunState.WAITING)
        | Q(state=RunState.SUBMITTING, created_at__gt=now - STALE_SUBMITTING)
        | Q(state=RunState.SUBMITTED, job__state__in=(JobState.QUEUED, JobState.RUNNING))
    )
    if exclude is not None:
        going = going.exclude(pk=exclude)
    return going.select_related("job").order_by("slot_at").first()


def _fire(schedule: Schedule, now: datetime, node: str) -> ScheduleRun | None:
    """Fire the schedule's due slot, unless another node did; the run it made."""
    due = schedule.next_run_at
    assert due is not None
    latest = max(due, slot_at_or_before(schedule, now))
    following = slot_after(schedule, latest)
    late = (now - latest).total_seconds() > min(
        settings.PRO_SCHEDULE_GRACE_SECONDS, (following - latest).total_seconds() / 2
    )
    passed = slots_between(schedule, due, latest) - 1  # slots before the latest, not run
    notes = [f"{passed} earlier slot{'s' if passed != 1 else ''} passed while no node was firing."] if passed else []
    try:
        with transaction.atomic():
            moved = Schedule.objects.filter(pk=schedule.pk, paused=False, next_run_at=due).update(next_run_at=following)
            if not moved:
                return None  # another node fired it, or it was paused or changed meanwhile
            state = RunState.SUBMITTING
            if late and schedule.missed == Missed.SKIP:
                state = RunState.MISSED
                notes.append(f"The slot was {(now - latest).total_seconds():.0f} s late: skipped (missed: skip).")
            elif (going := _busy(schedule.pk, now)) is not None:
                waits = ScheduleRun.objects.filter(schedule_id=schedule.pk, state=RunState.WAITING).exists()
                if schedule.overlap == Overlap.QUEUE and not waits:
                    state = RunState.WAITING
                    notes.append(f"Waits for the run of {going.slot_at:%Y-%m-%d %H:%M:%S} UTC to end (overlap: queue).")
                elif waits:
                    state = RunState.SKIPPED
                    notes.append("Skipped: a run already waits for the previous one to end (overlap: queue).")
                else:
                    state = RunState.SKIPPED
                    what = f"job {going.job_id}" if going.job_id else f"the run of {going.slot_at:%H:%M:%S} UTC"
                    notes.append(f"Skipped: {what} was still {_going_word(going)} (overlap: skip).")
            elif late:
                notes.append(f"Run {(now - latest).total_seconds():.0f} s late (missed: once).")
            run = ScheduleRun.objects.create(
                schedule=schedule, slot_at=latest, state=state, message=" ".join(notes), node=node, created_at=now
            )
    except IntegrityError:
        # The slot has its run already (fired before an edit moved the schedule back onto it):
        # move on rather than trying the same slot again at every tick.
        Schedule.objects.filter(pk=schedule.pk, next_run_at=due).update(next_run_at=following)
        return None
    if run.state == RunState.SUBMITTING:
        _submit(run, schedule)
    return run


def _going_word(run: ScheduleRun) -> str:
    if run.state == RunState.SUBMITTED and run.job is not None:
        return str(run.job.state)
    return str(run.state)


def _submit(run: ScheduleRun, schedule: Schedule) -> None:
    """Submit the run's job as the schedule's owner; a refusal is recorded, and enough in a row pause it."""
    owner = schedule.owner
    try:
        if not owner.is_active:
            raise ApplicationError(f"The account of {owner.username} is disabled.", code="forbidden")
        job = job_submit(
            user=owner,
            app_name=schedule.app.name,
            procedure=schedule.procedure,
            version=schedule.version,
            input_values=schedule.input_values if schedule.input_case is None else None,
            input_case_id=schedule.input_case,
        )
    except ApplicationError as exc:
        _refused(run, schedule, exc.message)
        return
    except Exception as exc:  # a run must not stop the ticker; the history says what happened
        logger.exception("Schedule %s: submitting the run of %s failed", schedule.pk, run.slot_at)
        _refused(run, schedule, f"The platform could not submit it: {exc}")
        return
    ScheduleRun.objects.filter(pk=run.pk).update(state=RunState.SUBMITTED, job=job, submitted_at=timezone.now())
    Schedule.objects.filter(pk=schedule.pk).update(refusals_in_a_row=0)
    run.state, run.job = RunState.SUBMITTED, job


def _refused(run: ScheduleRun, schedule: Schedule, reason: str) -> None:
    message = " ".join(filter(None, [run.message, f"Refused: {reason}"]))
    ScheduleRun.objects.filter(pk=run.pk).update(state=RunState.REFUSED, message=message)
    run.state, run.message = RunState.REFUSED, message
    Schedule.objects.filter(pk=schedule.pk).update(refusals_in_a_row=F("refusals_in_a_row") + 1)
    limit = settings.PRO_SCHEDULE_MAX_REFUSALS
    paused = Schedule.objects.filter(pk=schedule.pk, paused=False, refusals_in_a_row__gte=limit).update(
        paused=True, next_run_at=None, paused_reason=f"Paused after {limit} refused runs in a row; the last: {reason}"
    )
    logger.warning("Schedule %s: the run of %s was refused: %s%s", schedule.pk, run.slot_at, reason,
                   " (paused)" if paused else "")  # fmt: skip


def _release_waiting(now: datetime) -> int:
    """Submit each waiting run whose schedule's previous run has ended."""
    released = 0
    waiting = ScheduleRun.objects.filter(state=RunState.WAITING, schedule__paused=False).select_related(
        "schedule__owner", "schedule__app"
    )
    for run in waiting.order_by("slot_at"):
        if _busy(run.schedule_id, now, exclude=run.pk) is not None:
            continue
        if ScheduleRun.objects.filter(pk=run.pk, state=RunState.WAITING).update(state=RunState.SUBMITTING):
            _submit(run, run.schedule)
            released += 1
    return released


def _give_up_stale(now: datetime) -> None:
    stale = ScheduleRun.objects.filter(state=RunState.SUBMITTING, created_at__lte=now - STALE_SUBMITTING)
    if stale.exists():  # a read first: no write lock taken at every tick for nothing (SQLite)
        stale.update(state=RunState.REFUSED, message="The node firing it stopped before the job was submitted.")


def schedules_tick(*, node: str = "", now: datetime | None = None) -> list[ScheduleRun]:
    """Fire every due slot not fired yet (by this node or another), and release waiting runs; the runs made."""
    now = now or timezone.now()
    _give_up_stale(now)
    _release_waiting(now)
    made = []
    due = Schedule.objects.filter(paused=False, next_run_at__lte=now).select_related("owner", "app")
    for schedule in due.order_by("next_run_at"):
        run = _fire(schedule, now, node)
        if run is not None:
            made.append(run)
    return made


def seconds_to_next_slot(now: datetime | None = None) -> float | None:
    """Seconds until the earliest next slot of any running schedule (None: none)."""
    now = now or timezone.now()
    first = (
        Schedule.objects.filter(paused=False, next_run_at__isnull=False)
        .order_by("next_run_at")
        .values_list("next_run_at", flat=True)
        .first()
    )
    return None if first is None else (first - now).total_seconds()
