"""Accounts: roles, the first admin, and API tickets."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, password_validation
from django.contrib.auth.models import Group, User
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from pro_portal.errors import ApplicationError
from pro_portal.ttl_cache import TTLCache

from .events import client_address, security_event
from .models import EVERYONE_GROUP, PUBLISHERS_GROUP, ApiKey, ApiTicket, Role
from .network import network_enforce

TICKET_PREFIX = "pro_t_"
Credential = TypeVar("Credential", ApiTicket, ApiKey)


class AuthenticationFailed(ApplicationError):
    status = 401
    code = "authentication_failed"


class LockedOut(ApplicationError):
    status = 429
    code = "locked_out"


def group_everyone() -> Group:
    return Group.objects.get_or_create(name=EVERYONE_GROUP)[0]


def group_publishers() -> Group:
    return Group.objects.get_or_create(name=PUBLISHERS_GROUP)[0]


def user_role(user: User) -> Role:
    if user.is_superuser:
        return Role.ADMIN
    if user.groups.filter(name=PUBLISHERS_GROUP).exists():
        return Role.PUBLISHER
    return Role.USER


def user_is_publisher(user: User) -> bool:
    return user.is_authenticated and user_role(user) in (Role.PUBLISHER, Role.ADMIN)


@transaction.atomic
def user_set_role(*, user: User, role: Role | str) -> None:
    role = Role(role)
    user.is_superuser = user.is_staff = role == Role.ADMIN
    user.save(update_fields=["is_superuser", "is_staff"])
    if role == Role.PUBLISHER:
        user.groups.add(group_publishers())
    else:
        user.groups.remove(group_publishers())


@transaction.atomic
def user_create(*, username: str, password: str, role: Role | str = Role.USER, email: str = "") -> User:
    """Create an account; the password must pass the platform's password validators."""
    User = get_user_model()  # noqa: N806
    if User.objects.filter(username=username).exists():
        raise ApplicationError(f"A user named {username!r} already exists.", code="duplicate_user", status=409)
    user = User(username=username, email=email)
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise ApplicationError("The password is too weak: " + " ".join(exc.messages), code="weak_password") from None
    user.set_password(password)
    user.save()
    user_set_role(user=user, role=role)
    security_event("user.create", target=f"user {username}", role=str(Role(role).value))
    return user


def admin_ensure(*, password: str | None) -> tuple[User, str | None]:
    """Create the first admin ``admin`` if there is none; return it and a generated password.

    The generated password (``None`` when one was given or the admin existed) is shown once by
    the caller and kept in the data folder, readable by its owner only.
    """
    User = get_user_model()  # noqa: N806
    existing = User.objects.filter(username="admin").first()
    if existing is not None:
        return existing, None
    generated = None if password else secrets.token_urlsafe(12)
    user = User(username="admin", is_staff=True, is_superuser=True)
    user.set_password(password or generated)
    user.save()
    return user, generated


def credential_hash(raw: str) -> str:
    """What is kept of a ticket or key: its SHA-256 (they are random, so no salt is needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def ticket_issue(
    *, username: str, password: str, otp: str = "", request: HttpRequest | None = None
) -> tuple[str, ApiTicket]:
    """Exchange a user name and password (and the code of an account with two-factor login) for
    a short-lived ticket; return (ticket, row).

    A password login: the lockout rules (apps.accounts.lockout) count and refuse it. Their answer
    is the same whichever rule holds and whether or not the account exists.
    """
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
        # The answer the API gets is the lockout response (pro_portal.errors), with Retry-After.
        raise LockedOut(
            f"Too many failed logins: this account or address is locked for {minutes} minutes. An admin can unlock it."
        )
    if user is None or not user.is_active:
        raise AuthenticationFailed("The user name or password is wrong.")
    network_enforce(address=client_address(request), user=user, request=request, via="POST /api/v1/auth/tickets")
    two_factor_for_ticket(user=user, otp=otp, request=request)
    # A ticket is a login: record it as one (last login, and django-axes resets the failure count).
    user_logged_in.send(sender=user.__class__, request=request, user=user)
    return ticket_issue_for_user(user=user)


def two_factor_for_ticket(*, user: User, otp: str, request: HttpRequest | None) -> None:
    """A password is not enough for an account with two-factor login, or one whose role needs it."""
    from .two_factor import TwoFactorRequired, two_factor_check, two_factor_enabled, two_factor_required

    if two_factor_enabled(user):
        two_factor_check(user=user, code=otp, request=request)
    elif two_factor_required(user):
        raise TwoFactorRequired(
            "Your role logs in with two factors: set up an authenticator on the portal's account page first.",
            code="otp_setup_required",
        )


def ticket_issue_for_user(
    *, user: User, ttl_seconds: int | None = None, scope: dict | None = None
) -> tuple[str, ApiTicket]:
    """Issue a ticket; with a ``scope`` it can do only what that scope allows (see TicketScope)."""
    raw = TICKET_PREFIX + secrets.token_urlsafe(32)
    ttl = ttl_seconds or settings.PRO_TICKET_TTL_SECONDS
    ticket = ApiTicket.objects.create(
        user=user,
        key_hash=credential_hash(raw),
        prefix=raw[: len(TICKET_PREFIX) + 6],
        expires_at=timezone.now() + timedelta(seconds=ttl),
        scope=scope or {},
    )
    security_event(
        "ticket.issue",
        actor=user.username,
        target=f"ticket {ticket.prefix}…",
        scope=scope or {},
        expires=ticket.expires_at.isoformat(),
    )
    return raw, ticket


def ticket_lookup(raw: str) -> ApiTicket | None:
    """The active ticket ``raw`` names, with its user, or ``None``."""
    return credential_lookup(ApiTicket, raw, TICKET_PREFIX)


# Every API request looks its credential up: a second's cache saves the query and still stops a
# revoked ticket or key, or a deactivated user, within a second on every node.
CREDENTIAL_CACHE_SECONDS = 1.0
_credentials: TTLCache[Any] = TTLCache(CREDENTIAL_CACHE_SECONDS)


def credentials_forget() -> None:
    """Drop this process's cached credentials (after a revocation here: at once, not in a second)."""
    _credentials.clear()


def credential_lookup(model: type[Credential], raw: str, prefix: str) -> Credential | None:
    """The active ticket or API key ``raw`` names, with its user, or ``None``."""
    if not raw.startswith(prefix):
        return None
    key_hash = credential_hash(raw)
    credential = _credentials.get(
        (model.__name__, key_hash), lambda: model.objects.select_related("user").filter(key_hash=key_hash).first()
    )
    if credential is None or not credential.is_active or not credential.user.is_active:
        return None
    now = timezone.now()
    # Writing on every request would make the table hot; a minute's precision is plenty.
    if credential.last_used_at is None or now - credential.last_used_at > timedelta(minutes=1):
        model.objects.filter(pk=credential.pk).update(last_used_at=now)
        credential.last_used_at = now  # the cached copy too, or it would write again for a second
    return credential


def ticket_renew(*, ticket: ApiTicket) -> ApiTicket:
    """Extend a personal ticket by its lifetime again, up to its maximum age (then log in again)."""
    if ticket.scope:
        raise ApplicationError(
            "A data session's ticket is not renewed; it ends with its session.", code="not_renewable"
        )
    now = timezone.now()
    latest = ticket.created_at + timedelta(seconds=settings.PRO_TICKET_MAX_AGE_SECONDS)
    if now >= latest:
        raise AuthenticationFailed("The ticket has reached its maximum age; ask for a new one with your password.")
    expires = min(now + timedelta(seconds=settings.PRO_TICKET_TTL_SECONDS), latest)
    renewed = ApiTicket.objects.filter(pk=ticket.pk, revoked_at__isnull=True).update(expires_at=expires)
    credentials_forget()
    if not renewed:
        raise AuthenticationFailed("The ticket is unknown, expired or revoked.")
    ticket.expires_at = expires
    security_event(
        "ticket.renew", actor=ticket.user.username, target=f"ticket {ticket.prefix}…", expires=expires.isoformat()
    )
    return ticket


def ticket_max_expiry(ticket: ApiTicket) -> datetime:
    return ticket.created_at + timedelta(seconds=settings.PRO_TICKET_MAX_AGE_SECONDS)


def ticket_revoke(*, ticket: ApiTicket, request: HttpRequest | None = None) -> None:
    ApiTicket.objects.filter(pk=ticket.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    credentials_forget()
    security_event("ticket.revoke", request=request, actor=ticket.user.username, target=f"ticket {ticket.prefix}…")


def ticket_revoke_all(*, user: User, reason: str = "") -> int:
    """Revoke every ticket of the user, data sessions' included (logout, password change)."""
    count = ApiTicket.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    credentials_forget()
    security_event("ticket.revoke", actor=user.username, target=f"{count} tickets of {user.username}", reason=reason)
    return count
