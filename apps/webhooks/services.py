"""Webhooks and e-mail when a job changes state.

A job given a ``webhook_url`` gets each of its state changes POSTed there as JSON, signed with its
owner's webhook secret::

    X-Pro-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

:func:`job_state_changed` (called by ``sessions.jobs.job_changed``) only records a
:class:`Delivery` and queues its first attempt for the task workers (django-q2) once the job's
transaction commits: a slow or dead receiver never delays or fails the job. An attempt that fails
is tried again after ``PRO_WEBHOOK_RETRY_DELAYS`` (a django-q2 schedule), then given up. The URL
is checked at submit and again at each attempt (its host may resolve elsewhere by then): http or
https, and no loopback, link-local, private or reserved address, nor one of the node's own,
unless ``PRO_WEBHOOK_ALLOWED_HOSTS`` names it. Redirects are not followed.

The secret is stored encrypted (AES-GCM under a key derived from ``SECRET_KEY``): signing needs
it in the clear, so it cannot be hashed. Its owner sees it once, when it is rotated.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from apps.accounts.events import security_event
from pro_portal.errors import ApplicationError
from pro_portal.sealing import seal, unseal
from sessions.models import FINISHED_STATES, Job, JobState

from .models import Delivery, DeliveryStatus, OwnerSettings

logger = logging.getLogger(__name__)

URL_MAX_LENGTH = 2000
USER_AGENT = "pro-platform-webhooks/1"
EXCERPT = 500  # characters of a receiver's answer kept in the delivery log
DELIVER_TASK = "apps.webhooks.tasks.deliver"
MAIL_TASK = "apps.webhooks.tasks.send_job_mail"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---------------------------------------------------------------- the owner's secret


SEAL_PURPOSE = b"pro webhook secrets"


def _encrypt(user_id: int, secret: str) -> str:
    return seal(secret, purpose=SEAL_PURPOSE, context=str(user_id))


def _decrypt(user_id: int, stored: str) -> str:
    return unseal(stored, purpose=SEAL_PURPOSE, context=str(user_id))


def secret_rotate(*, user: User, request: Any = None) -> tuple[str, datetime]:
    """A new webhook secret for ``user`` (the old one stops signing at once); the only time it is shown."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    now = timezone.now()
    OwnerSettings.objects.update_or_create(
        user=user, defaults={"secret_encrypted": _encrypt(user.pk, secret), "secret_rotated_at": now}
    )
    security_event("webhook.secret.rotate", request=request, actor=user, target=user.username)
    return secret, now


def secret_of(user_id: int) -> str:
    """The user's secret in the clear, for signing; made (unseen) when they have none yet."""
    stored = OwnerSettings.objects.filter(user_id=user_id).values_list("secret_encrypted", flat=True).first()
    if stored:
        return _decrypt(user_id, stored)
    secret = "whsec_" + secrets.token_urlsafe(32)
    OwnerSettings.objects.update_or_create(
        user_id=user_id, defaults={"secret_encrypted": _encrypt(user_id, secret), "secret_rotated_at": timezone.now()}
    )
    return secret


def settings_summary(user: User) -> dict[str, Any]:
    """What the owner may see of their settings: never the secret itself."""
    found = OwnerSettings.objects.filter(user=user).first()
    return {
        "email_job_end": bool(found and found.email_job_end),
        "secret_set": bool(found and found.secret_encrypted),
        "secret_rotated_at": found.secret_rotated_at if found else None,
    }


def email_default_set(*, user: User, on: bool) -> None:
    OwnerSettings.objects.update_or_create(user=user, defaults={"email_job_end": on})


def email_default(user: User) -> bool:
    return OwnerSettings.objects.filter(user=user, email_job_end=True).exists()


# ---------------------------------------------------------------- checking a URL


def _allowed(host: str, address: IpAddress | None) -> bool:
    for entry in settings.PRO_WEBHOOK_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if entry == host.lower():
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


@functools.cache
def _own_addresses() -> frozenset[str]:
    found = {"0.0.0.0", "::"}  # noqa: S104 - compared, never bound
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return frozenset(found)


def _refusal(address: IpAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (such as the cloud metadata service)"
    if str(address) in _own_addresses():
        return "one of this node's own addresses"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "a reserved address"
    return None


def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ApplicationError(f"The webhook URL's host {host!r} does not resolve.", code="bad_webhook_url") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _split(url: str) -> tuple[str, str, int]:
    if not isinstance(url, str) or len(url) > URL_MAX_LENGTH:
        raise ApplicationError(f"A webhook URL has at most {URL_MAX_LENGTH} characters.", code="bad_webhook_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ApplicationError("The webhook URL is not a valid URL.", code="bad_webhook_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApplicationError("A webhook URL must be an http:// or https:// URL with a host.", code="bad_webhook_url")
    if parts.username is not None or parts.password is not None:
        raise ApplicationError(
            "A webhook URL may not hold a user name or password: the receiver checks the signature instead.",
            code="bad_webhook_url",
        )
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ApplicationError("A webhook URL may not hold spaces or control characters.", code="bad_webhook_url")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def webhook_addresses(url: str) -> tuple[str, str, int, list[IpAddress]]:
    """The scheme, host, port and the addresses a webhook may be sent to; refused (400) when the
    host resolves to an address the node keeps its own services on, unless an admin allows it."""
    scheme, host, port = _split(url)
    addresses = _resolve(host, port)
    if not addresses:
        raise ApplicationError(f"The webhook URL's host {host!r} does not resolve.", code="bad_webhook_url")
    for address in addresses:
        reason = _refusal(address)
        if reason and not _allowed(host, address):
            raise ApplicationError(
                f"The webhook URL's host {host!r} is {reason} ({address}): webhooks may not reach the "
                "platform's own network unless an admin allows the host (PRO_WEBHOOK_ALLOWED_HOSTS).",
                code="bad_webhook_url",
            )
    return scheme, host, port, addresses


def webhook_url_check(url: str) -> str:
    """``url`` if a job may send its webhooks there, else an ApplicationError (400) saying why."""
    webhook_addresses(url)
    return url


def job_options(*, user: User, webhook_url: str | None, notify_email: bool | None) -> dict[str, Any]:
    """The webhook and e-mail fields of a job being submitted (the URL checked, the e-mail choice
    defaulting to the owner's)."""
    url = webhook_url_check(webhook_url) if webhook_url else ""
    if url:
        secret_of(user.pk)  # the owner has a secret from now on (seen when they rotate it)
    return {"webhook_url": url, "notify_email": email_default(user) if notify_email is None else bool(notify_email)}


# ---------------------------------------------------------------- noticing a change


def job_payload(job: Job) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": job.pk,
        "app": job.app_version.app.name,
        "version": job.app_version.version,
        "procedure": job.procedure,
        "owner": job.owner.username,
        "state": job.state,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "node": job.node,
        "solver_status": job.solver_status,
        "error_message": job.error_message[:2000],
        "created_at": when(job.created_at),
        "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
        "input_case": str(job.input_case_id) if job.input_case_id else None,
        "result_case": str(job.result_case_id) if job.result_case_id else None,
        "url": job_page_url(job.pk),
    }


def job_page_url(job_id: int) -> str:
    path = reverse("portal:job", kwargs={"job_id": job_id})
    return settings.PRO_PUBLIC_URL + path


def _event_of(job: Job, state: str) -> str:
    """``job`` as its changer holds it (the database's row may be further on already)."""
    if state == JobState.QUEUED and job.attempt > 0:
        return "job.requeued"
    return f"job.{state}"


def job_state_changed(job: Job, state: str, **detail: Any) -> None:
    """Record the webhook delivery and the e-mail a job's change calls for, and queue them for the
    task workers once the change commits. Never raises: a webhook never fails a job."""
    if detail.get("interrupt") or (detail.get("cancel") and state != JobState.CANCELLED):
        return  # a request to stop, not a change of state
    if not (job.webhook_url or (job.notify_email and state in FINISHED_STATES)):
        return
    try:
        # Read first, then write once: on SQLite a transaction that reads before it writes can be
        # refused its write by another process's; inside the caller's transaction, a savepoint
        # keeps a failure here from spoiling the job's own change.
        fresh = Job.objects.select_related("app_version__app", "owner").get(pk=job.pk)
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            if job.webhook_url:
                event = _event_of(job, state)
                body = {"event": event, "job": {**job_payload(fresh), "state": state}, "sent_at": None}
                delivery = Delivery.objects.create(
                    job=fresh, url=job.webhook_url, event=event, body=json.dumps(body), next_try_at=timezone.now()
                )
                transaction.on_commit(lambda: _enqueue(DELIVER_TASK, delivery.pk, f"webhook {delivery.pk}"))
            if job.notify_email and state in FINISHED_STATES:
                transaction.on_commit(lambda: _enqueue(MAIL_TASK, job.pk, f"mail job {job.pk}"))
    except Exception:
        logger.exception("Could not record the webhook or e-mail of job %s (%s)", job.pk, state)


def _enqueue(func: str, argument: int, name: str) -> None:
    from django_q.tasks import async_task

    try:
        async_task(func, argument, task_name=name)
    except Exception:
        logger.exception("Could not queue %s", name)


# ---------------------------------------------------------------- delivering


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Pro-Signature`` header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to the address that was checked, whatever the host resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """POST once: (status code or None, error or "", the start of the answer)."""
    try:
        scheme, host, port, addresses = webhook_addresses(url)
    except ApplicationError as refused:
        return None, refused.message, ""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    connection = kind(host, port, str(addresses[0]), settings.PRO_WEBHOOK_TIMEOUT)
    try:
        connection.request("POST", target, body=body, headers=headers)
        answer = connection.getresponse()
        excerpt = answer.read(EXCERPT).decode(errors="replace")
        status = answer.status
    except TimeoutError:
        return None, f"No answer within {settings.PRO_WEBHOOK_TIMEOUT:g} s.", ""
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], ""
    finally:
        connection.close()
    if 200 <= status < 300:
        return status, "", excerpt
    if 300 <= status < 400:
        return status, "A redirect: webhooks do not follow redirects.", excerpt
    return status, f"The receiver answered {status}.", excerpt


def _next_try(attempts: int, now: datetime) -> datetime | None:
    delays = settings.PRO_WEBHOOK_RETRY_DELAYS
    return now + timedelta(seconds=delays[attempts - 1]) if attempts <= len(delays) else None


def delivery_attempt(delivery_id: int) -> Delivery | None:
    """One attempt of a pending delivery (a django-q2 task); schedules the next one if it fails."""
    delivery = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).first()
    if delivery is None:
        return None
    now = timezone.now()
    # The claim: one attempt at a time even if the task comes twice.
    if not Delivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts, status=DeliveryStatus.PENDING).update(
        attempts=delivery.attempts + 1, last_try_at=now, next_try_at=None
    ):
        return None
    attempts = delivery.attempts + 1
    owner_id = Job.objects.filter(pk=delivery.job_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return None
    stamp = int(time.time())
    document = json.loads(delivery.body)
    document["sent_at"] = datetime.fromtimestamp(stamp, tz=UTC).isoformat()
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Pro-Event": delivery.event,
        "X-Pro-Delivery": str(delivery.pk),
        "X-Pro-Signature": signature(secret_of(owner_id), body, stamp),
    }
    status, error, excerpt = _post(delivery.url, body, headers)
    done = timezone.now()
    fields: dict[str, Any] = {"status_code": status, "error": error[:500], "response_excerpt": excerpt[:EXCERPT]}
    if status is not None and 200 <= status < 300:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=done)
    else:
        retry_at = _next_try(attempts, done)
        fields.update(status=DeliveryStatus.PENDING if retry_at else DeliveryStatus.FAILED, next_try_at=retry_at)
        if retry_at:
            _schedule_retry(delivery.pk, retry_at)
        logger.info("Webhook %s of job %s failed (attempt %s): %s", delivery.pk, delivery.job_id, attempts, error)
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    delivery.refresh_from_db()
    return delivery


def _schedule_retry(delivery_id: int, when: datetime) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    try:
        schedule(DELIVER_TASK, delivery_id, schedule_type=Schedule.ONCE, next_run=when, repeats=-1)
    except Exception:
        logger.exception("Could not schedule the retry of webhook %s", delivery_id)


def deliveries_due(*, now: datetime | None = None) -> list[int]:
    """Attempt every pending delivery whose time has come (a sweep; retries normally come by schedule)."""
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_try_at__lte=now or timezone.now())
    ids = list(due.values_list("pk", flat=True))
    for delivery_id in ids:
        delivery_attempt(delivery_id)
    return ids


# ---------------------------------------------------------------- e-mail


def job_mail_send(job_id: int) -> bool:
    """E-mail the owner of an ended job (a django-q2 task): True if a message went out."""
    job = Job.objects.select_related("app_version__app", "owner").filter(pk=job_id).first()
    if job is None or not job.owner.email or job.state not in FINISHED_STATES:
        return False
    app = job.app_version.app.name
    subject = f"Job {job.pk} {job.state}: {app} {job.app_version.version}, {job.procedure}"
    lines = [
        f"Your job {job.pk} ({app} {job.app_version.version}, procedure {job.procedure}) has {job.state}.",
        "",
    ]
    if job.solver_status:
        lines.append(f"Solver status: {job.solver_status}")
    if job.error_message:
        lines.append(f"Error: {job.error_message[:2000]}")
    lines += ["", f"The job's page: {job_page_url(job.pk)}"]
    send_mail(subject, "\n".join(lines), None, [job.owner.email])
    return True
