"""API keys: long-lived bearer credentials for unattended scripts, owned and revoked by their user."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from pro_portal.errors import ApplicationError, NotFound

from .events import security_event
from .models import ApiKey
from .selectors import api_keys_of
from .services import credential_hash, credential_lookup, credentials_forget

API_KEY_PREFIX = "pro_k_"
MAX_KEYS_PER_USER = 50


def api_key_create(*, user: User, name: str, expires_at: datetime | None = None, request=None) -> tuple[str, ApiKey]:
    """Create a key; the raw key is returned once and only its hash is kept."""
    name = name.strip()
    if not name:
        raise ApplicationError("Give the key a name that says what it is for.", code="invalid")
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ApplicationError("The expiry must be in the future.", code="invalid")
    if settings.PRO_API_KEY_MAX_DAYS:
        latest = now + timedelta(days=settings.PRO_API_KEY_MAX_DAYS)
        if expires_at is None or expires_at > latest:
            raise ApplicationError(
                f"API keys on this platform expire within {settings.PRO_API_KEY_MAX_DAYS} days; give an earlier expiry.",
                code="invalid",
            )
    if api_keys_of(user).filter(revoked_at__isnull=True).count() >= MAX_KEYS_PER_USER:
        raise ApplicationError(f"You have {MAX_KEYS_PER_USER} active keys; revoke one first.", code="too_many_keys")
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user,
        name=name[:100],
        key_hash=credential_hash(raw),
        prefix=raw[: len(API_KEY_PREFIX) + 6],
        expires_at=expires_at,
    )
    security_event(
        "apikey.issue",
        request=request,
        actor=user.username,
        target=f"API key {key.prefix}… ({key.name})",
        expires=expires_at.isoformat() if expires_at else None,
    )
    return raw, key


def api_key_revoke(*, user: User, key_id: int, request=None) -> ApiKey:
    """Revoke one of the user's own keys (revoking twice changes nothing)."""
    key = api_keys_of(user).filter(pk=key_id).first()
    if key is None:
        raise NotFound("You have no API key with this id.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
        credentials_forget()
        security_event(
            "apikey.revoke", request=request, actor=user.username, target=f"API key {key.prefix}… ({key.name})"
        )
    return key


def api_keys_revoke_all(*, user: User, reason: str = "") -> int:
    """Revoke every active key of the user (a password change: what it authorised ends with it)."""
    count = api_keys_of(user).filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    security_event("apikey.revoke", actor=user.username, target=f"{count} API keys of {user.username}", reason=reason)
    return count


def api_key_lookup(raw: str) -> ApiKey | None:
    """The active key ``raw`` names, with its user, or ``None``."""
    return credential_lookup(ApiKey, raw, API_KEY_PREFIX)
