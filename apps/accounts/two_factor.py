"""Two-factor login for local accounts: a TOTP authenticator app and one-time recovery codes.

Built on django-otp: a user's authenticator is a ``TOTPDevice`` (unconfirmed while being set up,
confirmed once a code from it was accepted), the recovery codes are the tokens of one
``StaticDevice``, each good once. Both devices throttle wrong codes themselves (a doubling
delay); wrong codes also count as failed logins of the account (``user_login_failed``), so the
lockout rules of :mod:`apps.accounts.lockout` hold against guessing codes as against passwords.

``PRO_2FA_REQUIRED_FOR`` (``admins``, ``publishers``) makes it mandatory for those roles: such a
user without an authenticator is sent to set one up before anything else in the portal, and
gets no API ticket from a password until then.
"""

from __future__ import annotations

import io
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from pro_portal.errors import ApplicationError

from .events import security_event
from .models import Role, SecurityOutcome

AUTHENTICATOR = "authenticator"
RECOVERY = "recovery codes"
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


class TwoFactorRequired(ApplicationError):
    status = 401
    code = "otp_required"


class TwoFactorWrong(ApplicationError):
    status = 401
    code = "otp_invalid"


def two_factor_enabled(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def two_factor_required(user: User) -> bool:
    """Whether this user's role must log in with a second factor (``PRO_2FA_REQUIRED_FOR``)."""
    from .services import user_role

    required = settings.PRO_2FA_REQUIRED_FOR
    # An OpenID Connect provider asks for its own factors (an LDAP directory does not: its users
    # log in here with a password, and set up an authenticator like local ones).
    if not required or user.sso_identities.filter(issuer__startswith="http").exists():
        return False
    return {Role.ADMIN: "admins", Role.PUBLISHER: "publishers"}.get(user_role(user)) in required


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


# ---------------------------------------------------------------- setting it up


@transaction.atomic
def two_factor_start(*, user: User, code: str = "", request: HttpRequest | None = None) -> TOTPDevice:
    """A new authenticator key for the user to scan; it counts only once confirmed with a code.
    Moving it from a phone that works needs that phone's current code: a session left open
    somewhere must not be enough to take the second factor over."""
    if two_factor_enabled(user):
        two_factor_check(user=user, code=code, request=request)
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=AUTHENTICATOR, confirmed=False)


def pending_authenticator(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


def authenticator_qr_svg(device: TOTPDevice) -> str:
    """The key's ``otpauth://`` address as an inline SVG QR code for the user's phone."""
    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage).save(out)
    svg = out.getvalue().decode()
    return svg[svg.index("<svg") :]  # inline in the page: without the XML declaration


def authenticator_secret(device: TOTPDevice) -> str:
    """The key in base32, for apps that are typed into rather than scanned."""
    from base64 import b32encode

    return b32encode(device.bin_key).decode()


@transaction.atomic
def two_factor_confirm(*, user: User, code: str, request: HttpRequest | None = None) -> list[str]:
    """Turn two-factor login on with a first code from the new authenticator; return the
    recovery codes (shown once)."""
    device = pending_authenticator(user)
    if device is None:
        raise ApplicationError("Start the set-up again: no new authenticator is waiting for its first code.")
    if not device.verify_token(_digits(code)):
        security_event(
            "2fa.enable", request=request, actor=user.username, outcome=SecurityOutcome.FAILURE, reason="wrong code"
        )
        raise TwoFactorWrong("That code is not the authenticator's current one: check the phone's clock and try again.")
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _new_recovery_codes(user)
    security_event("2fa.enable", request=request, actor=user.username, target=f"user {user.username}")
    return codes


def recovery_codes_renew(*, user: User, code: str, request: HttpRequest | None = None) -> list[str]:
    """New recovery codes (the old ones stop working), asked for with a current code."""
    two_factor_check(user=user, code=code, request=request)
    codes = _new_recovery_codes(user)
    security_event("2fa.recovery.renew", request=request, actor=user.username, target=f"user {user.username}")
    return codes


def _new_recovery_codes(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY, confirmed=True)
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


@transaction.atomic
def two_factor_disable(*, user: User, code: str, request: HttpRequest | None = None) -> None:
    """Turn it off with a current code; not where the user's role requires it."""
    if two_factor_required(user):
        raise ApplicationError("Two-factor login is required for your role: it cannot be turned off.")
    two_factor_check(user=user, code=code, request=request)
    _remove_devices(user)
    security_event("2fa.disable", request=request, actor=user.username, target=f"user {user.username}")


def two_factor_reset(*, user: User, actor: User, request: HttpRequest | None = None) -> None:
    """An admin removes a user's authenticator and codes (a lost phone); the user sets it up again."""
    _remove_devices(user)
    security_event("2fa.reset", request=request, actor=actor.username, target=f"user {user.username}")


def _remove_devices(user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


# ---------------------------------------------------------------- logging in


def two_factor_check(*, user: User, code: str, request: HttpRequest | None = None) -> Device:
    """The device that accepts ``code`` (the authenticator's, or an unused recovery code, which it
    uses up). A wrong code is a failed login of the account and raises :class:`TwoFactorWrong`."""
    code = (code or "").strip().replace(" ", "").lower()
    if not code:
        raise TwoFactorRequired("This account logs in with a second factor: give the code of its authenticator app.")
    waits = []
    for device in _devices(user):
        allowed, why = device.verify_is_allowed()
        if not allowed:  # django-otp's throttle: 1, 2, 4 ... seconds after each wrong code
            waits.append((why["locked_until"] - timezone.now()).total_seconds())
        elif device.verify_token(code):
            if isinstance(device, StaticDevice):
                security_event("2fa.recovery.use", request=request, actor=user.username, left=recovery_codes_left(user))
            return device
    # The second half of a password login: counted by the lockout rules as a wrong password is.
    credentials = {"username": user.username, "password": "********"}
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    security_event(
        "login.2fa", request=request, actor=user.username, outcome=SecurityOutcome.FAILURE, reason="wrong code"
    )
    if waits:
        raise TwoFactorWrong(f"Too many wrong codes in a row: wait {max(1, round(min(waits)))} s before the next one.")
    raise TwoFactorWrong("The code is wrong or was used already.")


def _devices(user: User) -> list[Any]:
    return [
        *TOTPDevice.objects.filter(user=user, confirmed=True),
        *StaticDevice.objects.filter(user=user, confirmed=True),
    ]


def _digits(code: str) -> str:
    return "".join(ch for ch in (code or "") if ch.isdigit())
