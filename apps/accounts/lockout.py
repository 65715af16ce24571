"""Which failed password logins lock what: the rules over django-axes' records of failures.

django-axes records every failed login as a row per account name, address and user agent
(``AccessAttempt``, kept while failures keep coming within the cool-off) and compares one count
with one limit. The platform's rules need three counts with limits of their own, so this
handler (``AXES_HANDLER``) decides instead; the rows stay axes' own, which keeps its admin page
and ``axes_reset_*`` commands as the way to unlock.

- **account from an address** (``AXES_FAILURE_LIMIT``, 10): one person's typos, or an attacker
  guessing one account, stop that account from that address only; colleagues behind the same
  address, and the owner elsewhere, log in as before.
- **account from every address** (``PRO_LOCKOUT_ACCOUNT_FAILURES``, 100): guesses spread over
  many addresses (NIST SP 800-63B's ceiling); the owner is stopped too, for the cool-off.
- **address** (``PRO_LOCKOUT_SPRAY_ACCOUNTS``, 20 different accounts): password spraying.

Account names count the same whether or not an account has them, so a lock says nothing about
which names exist. Only password logins are counted and refused: a login that brings no
password (single sign-on, when there is one) is neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from axes.conf import settings as axes_settings
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import QuerySet, Sum
from django.utils import timezone

ACCOUNT = "account"
ADDRESS = "address"
ACCOUNT_FROM_ADDRESS = "account from address"


@dataclass(frozen=True)
class Lock:
    rule: str
    username: str | None
    address: str | None
    count: int  # failed logins, or for an address the different accounts they were for
    threshold: int
    refused: bool = False  # an attempt refused because of it (rather than the failure that made it)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return self.rule, self.username, self.address

    @property
    def target(self) -> str:
        if self.rule == ACCOUNT:
            return f"user {self.username}"
        if self.rule == ADDRESS:
            return f"address {self.address}"
        return f"user {self.username} / address {self.address}"


def _failures(attempts: QuerySet[AccessAttempt]) -> int:
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


def locks_of(username: str | None, address: str | None, *, since: datetime | None = None) -> list[Lock]:
    """The locks on logging in as ``username`` from ``address``, broadest first.

    ``since`` leaves out failures older than the cool-off (as axes does); without it every
    recorded failure counts (what an unlock ends).
    """
    attempts = AccessAttempt.objects.all()
    if since is not None:
        attempts = attempts.filter(attempt_time__gte=since)
    locks = []
    if username is not None:
        mine = attempts.filter(username=username)
        total = _failures(mine)
        if total >= settings.PRO_LOCKOUT_ACCOUNT_FAILURES:
            locks.append(Lock(ACCOUNT, username, None, total, settings.PRO_LOCKOUT_ACCOUNT_FAILURES))
    if address:
        accounts = attempts.filter(ip_address=address).values("username").distinct().count()
        if accounts >= settings.PRO_LOCKOUT_SPRAY_ACCOUNTS:
            locks.append(Lock(ADDRESS, None, address, accounts, settings.PRO_LOCKOUT_SPRAY_ACCOUNTS))
    if username is not None and address:
        pair = _failures(attempts.filter(username=username, ip_address=address))
        if pair >= settings.AXES_FAILURE_LIMIT:
            locks.append(Lock(ACCOUNT_FROM_ADDRESS, username, address, pair, settings.AXES_FAILURE_LIMIT))
    return locks


def lock_holds(lock: Lock) -> bool:
    """Whether ``lock`` still holds over the recorded failures (after some were removed)."""
    return any(other.key == lock.key for other in locks_of(lock.username, lock.address))


def is_password_login(credentials: dict | None) -> bool:
    """A login that brings a password: the only kind that is counted and locked.

    Django hands the failure signal the credentials with the password's value masked, the key
    still there; a backend's ``authenticate`` gets ``password=None`` when none was given.
    """
    return credentials is not None and credentials.get(axes_settings.AXES_PASSWORD_FORM_FIELD) is not None


class LockoutHandler(AxesDatabaseHandler):
    """django-axes' database handler with the platform's three rules (see the module)."""

    def _locks(self, request: Any, credentials: dict | None) -> list[Lock]:
        since = timezone.now() - settings.AXES_COOLOFF_TIME
        return locks_of(get_client_username(request, credentials), request.axes_ip_address, since=since)

    def is_locked(self, request: Any, credentials: dict | None = None) -> bool:
        """Asked before a login is checked: refuse it (before any password is hashed) if locked."""
        if not axes_settings.AXES_LOCK_OUT_AT_FAILURE or not is_password_login(credentials):
            return False
        locks = self._locks(request, credentials)
        if locks:
            first = locks[0]
            request.pro_lock = Lock(first.rule, first.username, first.address, first.count, first.threshold, True)
        return bool(locks)

    def get_failures(self, request: Any, credentials: dict | None = None) -> int:
        """Asked after a failure is recorded; axes locks when this reaches ``AXES_FAILURE_LIMIT``."""
        locks = self._locks(request, credentials)
        if locks:
            request.pro_lock = locks[0]
            return max(settings.AXES_FAILURE_LIMIT, locks[0].count)
        return super().get_failures(request, credentials)

    def user_login_failed(self, sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
        if is_password_login(credentials):
            super().user_login_failed(sender, credentials, request, **kwargs)
