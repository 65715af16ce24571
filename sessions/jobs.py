"""Solve jobs: submitting, claiming, following, stopping and finishing them.

Reads of jobs are in :mod:`sessions.selectors`, but for a job's log: its format, written and
read, is described and kept here.

Every state change is a conditional update on the job row that names the state (and, for a
running job, the attempt) it expects, so that a duplicate delivery, a late worker or a
cancel racing a finish each change the row at most once.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.accounts.quotas import Limits, limits_of
from apps.catalog import selectors as catalog
from apps.catalog.models import AppVersion, VerificationState
from apps.webhooks import services as webhooks
from pro_portal.errors import ApplicationError, Conflict
from pro_portal.notify import notify
from pro_portal.prepared import PreparedQuery
from sessions.runtime.case import case_from_data, case_to_bytes

from . import fair_share
from .cases import case_store
from .locks import owner_lock
from .models import FINISHED_STATES, Case, CaseKind, DataSession, Job, JobLogChunk, JobState
from .selectors import case_get_for_user, jobs_running_locally_on

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- logs
#
# A job's log is addressed by byte offsets in everything the job printed, dropped bytes
# included ("log offsets"): an offset names the same byte while the job runs and after its
# log moved to storage, and ``Job.log_size`` is where the log ends. The log kept is capped at
# PRO_JOB_LOG_MAX_BYTES whatever the job prints: the first half of the cap (the head) is kept
# as it came; past the cap only the latest half (the tail) is kept, and the bytes between are
# dropped as new ones come. Head and tail are cut at the end of a line when one ends near the
# cut (within a sixteenth of the cap, 64 KiB at most), so the log kept may pass the cap by that.
#
# A read from an offset gets the bytes kept from there on; where it reaches dropped bytes it
# gets one line in their place, "--- 140.2 MB of log dropped here (...) ---", then the oldest
# byte still kept, and its next offset is past the dropped bytes. So a follower never goes
# backwards, never gets a byte twice or a broken character: one that keeps up sees the whole
# head, the marker line once, then the tail as it grows; one that falls behind the rolling
# tail gets a marker saying how much it missed, then the latest tail. The stored log of a
# finished job is head + marker line + tail, read through the same offsets.

LOG_PAGE_BYTES = 1024 * 1024  # the most one read returns (a marker line may come on top)
LOG_PIECE_BYTES = 64 * 1024  # the largest piece of a running job's log in one row


@dataclass(frozen=True)
class LogPage:
    text: str
    offset: int  # where the next read starts
    size: int  # where the log ends, as far as it is written
    finished: bool  # the job has ended and this page reaches the end of its log


def _char_start(data: bytes, index: int) -> int:
    """The first index from ``index`` on where a UTF-8 character starts (or the end)."""
    index = max(0, index)
    while index < len(data) and data[index] & 0xC0 == 0x80:
        index += 1
    return min(index, len(data))


def _char_end(data: bytes, start: int, end: int) -> int:
    """``end`` moved back to where a character starts; forward only if that left nothing."""
    if end >= len(data):
        return len(data)
    back = end
    while back > start and data[back] & 0xC0 == 0x80:
        back -= 1
    return back if back > start else _char_start(data, end)


def _reach() -> int:
    """How far past a cut to look for the end of a line: a small part of the cap."""
    return max(1, min(LOG_PIECE_BYTES, settings.PRO_JOB_LOG_MAX_BYTES // 16))


def _cut(data: bytes, index: int, *, keep_some: bool = False) -> int:
    """Where to cut ``data`` at ``index`` or a little after: past the end of the line there
    (when it ends within ``_reach()``), else at the next character. ``keep_some``: never at
    the end of ``data`` (the tail keeps at least part of the newest piece)."""
    if index >= len(data):
        return len(data)
    stop = min(len(data) - 1 if keep_some else len(data), index + _reach())
    newline = data.find(b"\n", index, stop)
    return newline + 1 if newline != -1 else _char_start(data, index)


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _log_marker(dropped: int, after: bytes | None = None) -> bytes:
    """The line that stands for ``dropped`` bytes, on a line of its own after the byte ``after``."""
    cap = _size_text(settings.PRO_JOB_LOG_MAX_BYTES)
    line = f"--- {_size_text(dropped)} of log dropped here (the log is capped at {cap}; head and tail kept) ---\n"
    return (b"\n" if after not in (None, b"", b"\n") else b"") + line.encode()


def _log_pieces(job: Job, offset: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of a running job's log pieces that may hold bytes from ``offset`` on."""
    pieces = JobLogChunk.objects.filter(job=job).values_list("offset", "text")
    first = pieces.filter(offset__lte=offset).order_by("-offset").first()
    if first is not None:
        yield first[0], first[1].encode()
    after = offset
    while batch := list(pieces.filter(offset__gt=after).order_by("offset")[:16]):
        for piece_offset, text in batch:
            yield piece_offset, text.encode()
        after = batch[-1][0]


def _read_live(job: Job, offset: int, limit: int) -> tuple[bytes, int]:
    out, taken, position, last = bytearray(), 0, offset, None
    for piece_offset, data in _log_pieces(job, offset):
        if piece_offset + len(data) <= position:  # ends before the offset (at it, or in dropped bytes)
            last = data[-1:] if piece_offset + len(data) == position else None
            continue
        if piece_offset > position:  # bytes dropped here
            out += _log_marker(piece_offset - position, last)
            position = piece_offset
        start = _char_start(data, position - piece_offset)
        end = _char_end(data, start, start + limit - taken)
        out += data[start:end]
        taken += end - start
        position, last = piece_offset + end, data[end - 1 : end]
        if taken >= limit:
            break
    return bytes(out), position


def _read_stored(job: Job, offset: int, limit: int) -> tuple[bytes, int]:
    head_end, dropped, size = job.log_dropped_at, job.log_dropped, job.log_size
    if offset >= size:  # at the end, or past it (where a file may not even seek to)
        return b"", offset
    head, marker = b"", b""
    with default_storage.open(job.log_path, "rb") as handle:
        if dropped and offset < head_end:  # the head is read up to where the marker line begins
            handle.seek(offset)
            data = handle.read(min(limit, head_end - offset) + 4)
            start = _char_start(data, 0)
            end = _char_end(data, start, max(start, min(start + limit, head_end - offset)))
            head, offset, limit = data[start:end], offset + end, limit - (end - start)
            if offset < head_end or limit <= 0:
                return head, offset
        if dropped:
            tail_at = handle.size - (size - head_end - dropped)  # where the tail begins in the file
            if offset < head_end + dropped:
                if offset == head_end:  # the marker line as stored
                    handle.seek(head_end)
                    marker = handle.read(max(0, tail_at - head_end))
                else:  # a reader inside the dropped bytes: how many of them it missed
                    marker = _log_marker(head_end + dropped - offset)
                offset = head_end + dropped
            handle.seek(tail_at + offset - head_end - dropped)
        else:
            handle.seek(offset)
        data = handle.read(limit + 4)
    start = _char_start(data, 0)
    end = _char_end(data, start, start + limit)
    return head + marker + data[start:end], offset + end


def job_log_page(job: Job, offset: int = 0, limit: int = LOG_PAGE_BYTES) -> LogPage:
    """At most ``limit`` bytes of the log from log offset ``offset`` on (see the notes above)."""
    offset, limit = max(0, offset), max(1, limit)
    data, next_offset = (_read_stored if job.log_path else _read_live)(job, offset, limit)
    return LogPage(
        text=data.decode("utf-8", "replace"),
        offset=next_offset,
        size=job.log_size,
        finished=job.is_finished and next_offset >= job.log_size,
    )


def job_log(job: Job, offset: int = 0, limit: int = LOG_PAGE_BYTES) -> tuple[str, int]:
    """The log from byte ``offset`` on (at most ``limit`` bytes of it), and the offset to ask for next."""
    page = job_log_page(job, offset, limit)
    return page.text, page.offset


# ---------------------------------------------------------------- submitting


def _interface_input(version: AppVersion, values: dict[str, Any]) -> bytes:
    """Check input values against the app's declared identifiers and encode them as a case.

    The web process does not import app code, so it builds the data from the manifest's
    interface with the SDK's own checks (a stand-in app declared from the interface).
    """
    from sessions.runtime.interface import app_from_interface

    app = app_from_interface(version.manifest)
    data = app.new_data()
    try:
        data.update_from_dict(values)
    except (ValueError, KeyError) as exc:
        raise ApplicationError(f"The input is not valid: {exc}", code="bad_input") from None
    return case_to_bytes(case_from_data(data, meta={"app": version.app.name}))


def job_submit(
    *,
    user: User,
    app_name: str,
    procedure: str,
    version: str | None = None,
    input_values: dict[str, Any] | None = None,
    input_case_id: Any = None,
    priority: int = 0,
    time_limit: float | None = None,
    memory_limit_mb: int | None = None,
    not_before: datetime | None = None,
    data_session_id: str | None = None,
    webhook_url: str | None = None,
    notify_email: bool | None = None,
) -> Job:
    """Queue a solve of ``procedure`` of an app version the user may run; return the job.

    ``data_session_id`` is the user's data session that asked for it (its Solve button), for the
    job's page to link back to it. ``webhook_url`` gets each state change of the job, signed
    (:mod:`apps.webhooks`); ``notify_email`` e-mails the owner when it ends (None: their default).
    """
    notifications = webhooks.job_options(user=user, webhook_url=webhook_url, notify_email=notify_email)
    found = catalog.version_resolve_for_user(user, app_name, version or "latest")
    if found.verification_state != VerificationState.VERIFIED:
        raise Conflict(f"Version {found.version} of {app_name!r} is not verified yet.", code="not_verified")
    procedures = {p["name"]: p for p in found.manifest.get("interface", {}).get("procedures", [])}
    if procedures.get(procedure, {}).get("kind") != "solve":
        names = ", ".join(n for n, p in procedures.items() if p.get("kind") == "solve") or "none"
        raise ApplicationError(
            f"{app_name!r} has no solve procedure {procedure!r} (it has: {names}).", code="unknown_procedure"
        )
    if input_values is not None and input_case_id is not None:
        raise ApplicationError("Give the input as values or as a case, not both.", code="invalid")
    if input_case_id is not None:
        input_case = case_get_for_user(user, input_case_id)
        if input_case.app_id != found.app_id:
            raise ApplicationError(f"Case {input_case.id} belongs to another app.", code="bad_input")
    else:
        blob = _interface_input(found, input_values or {})
        input_case = case_store(
            owner=user, app=found.app, app_version=found, blob=blob, kind=CaseKind.INPUT, name=f"input of {procedure}"
        )
    default_limit = procedures[procedure].get("time_limit") or found.manifest.get("time_limit")
    limits = limits_of(user)
    asked = _within_limits(limits, priority, time_limit, memory_limit_mb)
    with transaction.atomic():
        owner_lock(user.pk)
        _check_queued(user, limits)
        job = Job.objects.create(
            owner=user,
            app_version=found,
            procedure=procedure,
            priority=priority,
            time_limit=float(
                asked.time_limit or _capped(default_limit or settings.PRO_JOB_TIME_LIMIT, limits.max_time_limit)
            ),
            memory_limit_mb=asked.memory_limit_mb or int(_capped(settings.PRO_JOB_MEMORY_MB, limits.max_memory_mb)),
            input_case=input_case,
            not_before=not_before or timezone.now(),
            max_attempts=settings.PRO_JOB_MAX_ATTEMPTS,
            data_session=_own_session(user, data_session_id),
            **notifications,
        )
    logger.info("%s submitted job %s: %s %s %s", user.username, job.pk, app_name, found.version, procedure)
    job_changed(job, JobState.QUEUED, not_before=job.not_before.timestamp())
    return job


class QuotaExceeded(ApplicationError):
    """A limit on what a user may use at once (queued jobs, open sessions, seats): try again later."""

    status = 429

    def __init__(self, message: str, *, code: str = "quota_exceeded", retry_after: int = 30):
        super().__init__(message, code=code)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Asked:
    time_limit: float | None
    memory_limit_mb: int | None


def _within_limits(limits: Limits, priority: int, time_limit: float | None, memory_limit_mb: int | None) -> Asked:
    """What the user asked for, refused with the limit in the message where it is over one (400)."""
    if limits.max_priority is not None and priority > limits.max_priority:
        raise ApplicationError(
            f"Priority {priority} is over your limit: at most {limits.max_priority}.", code="over_limit"
        )
    if limits.max_time_limit is not None and time_limit is not None and time_limit > limits.max_time_limit:
        raise ApplicationError(
            f"A time limit of {time_limit:g} s is over your limit: at most {limits.max_time_limit:g} s.",
            code="over_limit",
        )
    if limits.max_memory_mb is not None and memory_limit_mb is not None and memory_limit_mb > limits.max_memory_mb:
        raise ApplicationError(
            f"A memory limit of {memory_limit_mb} MB is over your limit: at most {limits.max_memory_mb} MB.",
            code="over_limit",
        )
    return Asked(time_limit, memory_limit_mb)


def _capped(value: float, limit: float | None) -> float:
    """A default the user did not ask for, within their limit."""
    return value if limit is None else min(value, limit)


def _check_queued(user: User, limits: Limits) -> None:
    if limits.queued_jobs is None:
        return
    queued = Job.objects.filter(owner=user, state=JobState.QUEUED).count()
    if queued >= limits.queued_jobs:
        raise QuotaExceeded(
            f"You have {queued} jobs in the queue, your limit: wait for some to start, or cancel some.",
            retry_after=60,
        )


def _own_session(user: User, session_id: str | None) -> DataSession | None:
    try:
        return DataSession.objects.filter(pk=session_id, owner=user).first() if session_id else None
    except ValidationError:  # not a session's id
        return None


def job_changed(job: Job, state: str, **detail: Any) -> None:
    """Tell the workers and the open pages of every node (once the transaction commits)."""
    notify("jobs", id=job.pk, owner=job.owner_id, state=state, **detail)
    webhooks.job_state_changed(job, state, **detail)  # queued for the task workers, never sent here


# ---------------------------------------------------------------- claiming and running


def job_claim_next(*, node: str, executor: str = "local") -> Job | None:
    """Claim the next job for ``node``: the highest priority first, then users in turn, then first
    in, first out (:mod:`sessions.fair_share`); none of a user at their quota or without a seat.

    ``executor`` is where the node runs the attempt (``PRO_EXECUTOR``), recorded on the job."""
    now = timezone.now()
    for turn in fair_share.turns(now):
        job = _claim_turn(turn, node, now, executor)
        if job is not None:
            job_changed(job, JobState.RUNNING, node=node)
            return job
    return None


# The claimed job with what its attempt reads, compiled once: a node builds it at every claim.
_CLAIMED: PreparedQuery[Job] = PreparedQuery(
    lambda variant, pk: Job.objects.select_related(
        "app_version__app", "app_version__runtime", "app_version__environment", "owner", "input_case"
    ).filter(pk=pk),
    "pk",
)


def _claim_turn(turn: fair_share.Turn, node: str, now: datetime, executor: str) -> Job | None:
    """The user's oldest runnable job at the turn's priority, claimed (None if the turn was taken meanwhile)."""
    with transaction.atomic():
        owner_lock(turn.owner_id)  # the quota and seat counts below hold until the claim commits
        if not fair_share.may_start(turn.owner_id):
            return None
        theirs = fair_share.runnable(now).filter(owner_id=turn.owner_id, priority=turn.priority)
        for job_id in theirs.order_by("created_at", "id").values_list("id", flat=True)[:5]:
            claimed = Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(
                state=JobState.RUNNING,
                node=node,
                executor=executor,
                external_id="",
                attempt=F("attempt") + 1,
                started_at=now,
                lease_expires_at=now + timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS),
                progress={},
            )
            if claimed:
                return _CLAIMED.fetch(None, pk=job_id)[0]
    return None


def _mine(job: Job) -> QuerySet[Job]:
    """The row of this attempt of the job, as long as it is still running on this node."""
    return Job.objects.filter(pk=job.pk, state=JobState.RUNNING, attempt=job.attempt, node=job.node)


def job_renew_lease(*, job: Job) -> bool:
    """Extend the lease; False means the job is no longer this worker's (requeued, cancelled)."""
    expires = timezone.now() + timedelta(seconds=settings.PRO_JOB_LEASE_SECONDS)
    return _mine(job).update(lease_expires_at=expires) == 1


def job_report_progress(*, job: Job, progress: dict[str, Any], points: list[dict[str, Any]] | None = None) -> None:
    changes: dict[str, Any] = {"progress": progress}
    if points is not None:
        changes["progress_points"] = points
    if _mine(job).update(**changes):
        notify("jobs", id=job.pk, owner=job.owner_id, state=JobState.RUNNING, progress=True)


def job_append_log(*, job: Job, offset: int, text: str) -> int:
    """Append a piece of log at ``offset``; return the next offset.

    What is kept stays within PRO_JOB_LOG_MAX_BYTES whatever the job prints (see the notes on
    logs above): the bytes of the head are stored, those that fall before the tail already
    are not, and each piece the tail rolls past is deleted.
    """
    data = text.replace("\x00", "\ufffd").encode()  # PostgreSQL's text cannot hold NUL
    if not data:
        return offset
    end = offset + len(data)
    cap = settings.PRO_JOB_LOG_MAX_BYTES
    head_limit = cap // 2
    keep_from = end - (cap - head_limit)  # the tail is the bytes from here on
    with transaction.atomic():
        if _mine(job).update(log_size=end) != 1:
            return offset
        head_end = Job.objects.filter(pk=job.pk).values_list("log_dropped_at", flat=True).get()
        boundary = head_end or head_limit
        ranges, start = [], 0
        if offset < boundary:
            start = _cut(data, boundary - offset)
            ranges.append((0, start))
        if keep_from > boundary and keep_from - offset > start:
            start = _cut(data, keep_from - offset, keep_some=True)
        ranges.append((start, len(data)))
        JobLogChunk.objects.bulk_create(
            JobLogChunk(job=job, attempt=job.attempt, offset=offset + piece_start, text=piece)
            for begin, stop in ranges
            for piece_start, piece in _split(data, begin, stop)
        )
        if keep_from > boundary:
            _roll_tail(job, head_end or _head_end(job, head_limit), keep_from)
        notify("jobs", id=job.pk, owner=job.owner_id, state=JobState.RUNNING, log=end)
    return end


def _split(data: bytes, begin: int, stop: int) -> Iterator[tuple[int, str]]:
    """(start, text) pieces of ``data[begin:stop]`` of at most LOG_PIECE_BYTES, whole characters each."""
    while begin < stop:
        end = _char_end(data, begin, min(stop, begin + LOG_PIECE_BYTES))
        yield begin, data[begin:end].decode()
        begin = end


def _head_end(job: Job, head_limit: int) -> int:
    """Where the head kept ends: the end of the piece that reaches past half the cap."""
    last = JobLogChunk.objects.filter(job=job, offset__lt=head_limit).order_by("-offset").values_list("offset", "text")
    found = last.first()
    return found[0] + len(found[1].encode()) if found else 0


def _roll_tail(job: Job, head_end: int, keep_from: int) -> None:
    """Drop the pieces of the tail before ``keep_from`` (cutting the one across it); record the gap."""
    tail = JobLogChunk.objects.filter(job=job, offset__gte=head_end)
    across = tail.filter(offset__lte=keep_from).order_by("-offset").first()
    if across is not None:
        tail.filter(offset__lt=across.offset).delete()
        data = across.text.encode()
        if across.offset < keep_from:
            cut = _cut(data, keep_from - across.offset)
            if cut >= len(data):
                across.delete()
            else:
                JobLogChunk.objects.filter(pk=across.pk).update(offset=across.offset + cut, text=data[cut:].decode())
    first_kept = tail.order_by("offset").values_list("offset", flat=True).first()
    if first_kept is not None and first_kept > head_end:
        _mine(job).update(log_dropped_at=head_end, log_dropped=first_kept - head_end)


def _archive_log(job: Job) -> dict[str, Any]:
    """Move the log pieces to one file in storage: head, the marker line for the dropped bytes, tail.

    Written through a spooled temporary file (on disk past a page), so the worker's memory
    does not grow with the log either. Returns the job's log fields.
    """
    position = head_end = dropped = tail = 0  # tail: bytes written after the marker line
    last = None
    with tempfile.SpooledTemporaryFile(max_size=LOG_PAGE_BYTES) as sink:
        for piece_offset, data in _log_pieces(job, 0):
            if piece_offset + len(data) <= position:
                continue
            if piece_offset > position:
                if dropped:  # only the tail rolls: one gap, unless the pieces are inconsistent
                    logger.warning("Job %s has a second gap in its log at %s; closed up", job.pk, position)
                else:
                    sink.write(_log_marker(piece_offset - position, last))
                    head_end, dropped = position, piece_offset - position
                position = piece_offset
            start = _char_start(data, position - piece_offset)
            sink.write(data[start:])
            position = piece_offset + len(data)
            tail += len(data) - start if dropped else 0
            last = data[-1:]
        path = default_storage.save(_log_name(job), File(sink, name="log.txt"))
    size = head_end + dropped + tail if dropped else position  # the stored file is head + marker + tail
    return {"log_path": path, "log_size": size, "log_dropped_at": head_end, "log_dropped": dropped}


def _store_result(job: Job, blob: bytes | None) -> Case | None:
    if blob is None:
        return None
    version = job.app_version
    return case_store(
        owner=job.owner,
        app=version.app,
        app_version=version,
        blob=blob,
        kind=CaseKind.RESULT,
        name=f"result of job {job.pk}",
    )


def _log_name(job: Job) -> str:
    """A name of its own for the stored log of one end of a job: a late worker's, discarded, never
    overwrites (the storage may overwrite) and then deletes the log of the end that counted."""
    return f"jobs/{job.pk}/log-{secrets.token_hex(6)}.txt"


def _store_log(job: Job, data: bytes) -> dict[str, Any]:
    """Store a job's whole log, within the cap (nothing dropped); returns the job's log fields."""
    path = default_storage.save(_log_name(job), ContentFile(data, name="log.txt"))
    return {"log_path": path, "log_size": len(data), "log_dropped_at": 0, "log_dropped": 0}


def _usage_fields(cpu_seconds: float | None, peak_memory_mb: float | None) -> dict[str, Any]:
    """The update of a job's usage by one attempt's: CPU seconds add up, the peak memory is the most of them."""
    fields: dict[str, Any] = {}
    if cpu_seconds is not None:
        fields["cpu_seconds"] = Coalesce(F("cpu_seconds"), Value(0.0)) + Value(round(cpu_seconds, 3))
    if peak_memory_mb is not None:
        fields["peak_memory_mb"] = Greatest(Coalesce(F("peak_memory_mb"), Value(0.0)), Value(round(peak_memory_mb, 1)))
    return fields


def job_finish(
    *,
    job: Job,
    state: str,
    error: str = "",
    solver_status: str = "",
    result_blob: bytes | None = None,
    cpu_seconds: float | None = None,
    peak_memory_mb: float | None = None,
    log_offset: int | None = None,
    log_tail: str = "",
) -> bool:
    """Record the end of this attempt; False when the job was no longer this worker's.

    ``log_tail`` is the last of the attempt's log, from ``log_offset``, not appended yet (without
    an offset, the log is all in its pieces). When it is the job's whole log (at offset 0) and
    within the cap, as for most short jobs, it is stored as the log file at once, without passing
    through log pieces.

    ``cpu_seconds`` and ``peak_memory_mb`` are what the attempt's sandbox used, as its worker
    measured it: added to (CPU) and kept as the most of (memory) the earlier attempts' (see
    ``_usage_fields``). A late worker (its job requeued or cancelled meanwhile) changes nothing:
    its result is discarded and logged.
    """
    data = log_tail.replace("\x00", "\ufffd").encode()
    whole = log_offset == 0 and len(data) <= settings.PRO_JOB_LOG_MAX_BYTES
    if data and not whole:
        if log_offset is None:
            raise ValueError("a log tail needs its offset")
        job_append_log(job=job, offset=log_offset, text=log_tail)
    try:
        result = _store_result(job, result_blob)
    except ApplicationError:
        if _mine(job).exists():
            raise
        logger.warning("Discarding the late end of job %s attempt %s on %s", job.pk, job.attempt, job.node)
        return False
    log = _store_log(job, data) if whole else _archive_log(job)
    with transaction.atomic():
        done = _mine(job).update(
            state=state,
            finished_at=timezone.now(),
            error_message=error[:10000],
            solver_status=solver_status[:200],
            result_case=result,
            lease_expires_at=None,
            **log,
            **_usage_fields(cpu_seconds, peak_memory_mb),
        )
        if done:
            if not whole:
                JobLogChunk.objects.filter(job=job).delete()
            job_changed(job, state)
    if not done:
        default_storage.delete(log["log_path"])
        if result is not None:
            default_storage.delete(result.storage_path)
            result.delete()
        logger.warning("Discarding the late end of job %s attempt %s on %s", job.pk, job.attempt, job.node)
    return bool(done)


def job_release(*, job: Job, reason: str, cpu_seconds: float | None = None, peak_memory_mb: float | None = None) -> str:
    """Put a job whose attempt could not complete back in the queue, or fail it after the last attempt.

    The attempt's usage, when its worker measured it, counts in the job's (see ``job_finish``).
    """
    if job.attempt >= job.max_attempts:
        job_finish(
            job=job,
            state=JobState.FAILED,
            error=f"{reason}; the job was attempted {job.attempt} times, the limit.",
            cpu_seconds=cpu_seconds,
            peak_memory_mb=peak_memory_mb,
        )
        return JobState.FAILED
    usage = _usage_fields(cpu_seconds, peak_memory_mb)
    if _mine(job).update(state=JobState.QUEUED, node="", lease_expires_at=None, error_message=reason, **usage):
        job_changed(job, JobState.QUEUED)
    return JobState.QUEUED


def _requeue_attempt(*, job: Job, reason: str) -> str:
    """End an attempt its worker no longer runs: say so in the job's log, then release the job."""
    job_append_log(job=job, offset=job.log_size, text=f"--- attempt {job.attempt}: {reason} ---\n")
    return job_release(job=job, reason=reason)


def jobs_requeue_from_node(*, node: str, reason: str) -> dict[str, list[int]]:
    """Requeue the running jobs of a node whose worker is gone (or fail those on their last attempt).

    Used by the master for a dead node and by a node's own worker for what its previous run left
    running. Attempts at an engine (Slurm, Kubernetes) are left alone: they run without the node,
    and their lease runs out if neither their runner nor a node watches them any more. Each job's log says what happened to the attempt; the node's late end of it, should
    it come back, changes nothing (see ``job_finish``).
    """
    outcome: dict[str, list[int]] = {JobState.QUEUED: [], JobState.FAILED: []}
    for job in jobs_running_locally_on(node=node):
        try:
            with transaction.atomic():  # one job apart from the others
                outcome[_requeue_attempt(job=job, reason=reason)].append(job.pk)
        except OperationalError as exc:
            # Its row is locked by a write its node began and has not finished (the node froze
            # mid-write): the next round tries again, the other jobs go on now.
            logger.warning("Job %s of node %s is locked (%s); it is requeued later", job.pk, node, exc)
    for state, ids in outcome.items():
        if ids:
            logger.warning("Jobs %s of node %s: %s", ids, node, "requeued" if state == JobState.QUEUED else "failed")
    return outcome


def job_record_external(*, job: Job, external_id: str) -> bool:
    """Record the engine's id of this attempt (its Slurm job, its Kubernetes Job); False if no longer ours."""
    job.external_id = external_id
    return _mine(job).update(external_id=external_id) == 1


def job_unclaim(*, job: Job, reason: str) -> bool:
    """Give a claimed attempt back before it started, without counting it (its engine cannot be
    asked now); the job says why while it waits. False if it was no longer ours."""
    progress = {"message": f"Waiting: {reason}"[:1000]}
    undone = _mine(job).update(
        state=JobState.QUEUED,
        node="",
        executor="",
        external_id="",
        attempt=F("attempt") - 1,
        started_at=None,
        lease_expires_at=None,
        progress=progress,
    )
    if undone:
        job_changed(job, JobState.QUEUED)
    return bool(undone)


def job_requeue_lost(*, job: Job, reason: str) -> str:
    """Requeue an attempt its engine lost (a node failure, a preemption, an eviction), or fail it on its last."""
    return _requeue_attempt(job=job, reason=reason)


def job_requeue_expired(*, job: Job) -> str:
    """Requeue a job whose worker stopped renewing its lease (or fail it on its last attempt)."""
    return _requeue_attempt(job=job, reason=f"The worker on node {job.node} stopped renewing its lease on the job")


# ---------------------------------------------------------------- stopping


def job_cancel(*, user: User, job: Job) -> Job:
    """Cancel: a queued job never starts; a running one is stopped by its worker within seconds."""
    if job.is_finished:
        raise Conflict(f"Job {job.pk} has already ended ({job.state}).", code="job_finished")
    now = timezone.now()
    Job.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
        state=JobState.CANCELLED,
        cancel_requested_at=now,
        finished_at=now,
        error_message=f"Cancelled by {user.username}.",
    )
    Job.objects.filter(pk=job.pk, state=JobState.RUNNING, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now
    )
    job.refresh_from_db()
    job_changed(job, job.state, cancel=True)
    return job


def job_interrupt(*, user: User, job: Job) -> Job:
    """Ask the solver to stop and keep the best solution found so far as the result."""
    if job.state != JobState.RUNNING:
        raise Conflict(f"Only a running job can be interrupted; job {job.pk} is {job.state}.", code="job_not_running")
    Job.objects.filter(pk=job.pk, interrupt_requested_at__isnull=True).update(interrupt_requested_at=timezone.now())
    job.refresh_from_db()
    job_changed(job, job.state, interrupt=True)
    return job


# ---------------------------------------------------------------- housekeeping


def jobs_remove_expired(*, now: datetime | None = None) -> int:
    """Remove finished jobs older than the retention, with their cases and logs."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PRO_JOB_RETENTION_DAYS)
    expired = Job.objects.filter(state__in=FINISHED_STATES, finished_at__lt=cutoff)
    paths, case_ids = [], set()
    for job in expired.select_related("input_case", "result_case"):
        paths.append(job.log_path)
        for case in (job.input_case, job.result_case):
            if case is not None and case.kind != CaseKind.SAVED:
                case_ids.add(case.pk)
                paths.append(case.storage_path)
    count = expired.count()
    with transaction.atomic():
        expired.delete()
        Case.objects.filter(pk__in=case_ids).delete()
    for path in paths:
        if path:
            default_storage.delete(path)
    if count:
        logger.info("Removed %s jobs finished before %s", count, cutoff)
    return count
