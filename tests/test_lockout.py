"""Failed password logins lock by three rules, across the portal, the admin and the ticket API.

An account from one address after ``AXES_FAILURE_LIMIT`` failures (10); an account from every
address after ``PRO_LOCKOUT_ACCOUNT_FAILURES`` (100); an address that fails on
``PRO_LOCKOUT_SPRAY_ACCOUNTS`` (20) different accounts. Addresses are documentation ones
(RFC 5737), in the requests' metadata only: no traffic goes anywhere.
"""

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.management import call_command
from django.db.models import Sum
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import SecurityEvent
from tests.helpers import password

pytestmark = pytest.mark.django_db

LIMIT = django_settings.AXES_FAILURE_LIMIT
ACCOUNT_LIMIT = django_settings.PRO_LOCKOUT_ACCOUNT_FAILURES
SPRAY_LIMIT = django_settings.PRO_LOCKOUT_SPRAY_ACCOUNTS
OFFICE, HOME, ATTACKER = "192.0.2.10", "192.0.2.20", "198.51.100.66"


def ticket(username, typed="wrong", address="127.0.0.1", client=None):
    return (client or APIClient(REMOTE_ADDR=address)).post(
        "/api/v1/auth/tickets", {"username": username, "password": typed}, format="json"
    )


def good(username, address="127.0.0.1", client=None):
    return ticket(username, password(username), address, client)


def fail(times, username, address="127.0.0.1"):
    """``times`` wrong passwords; the status codes of the answers."""
    return [ticket(username, "wrong", address).status_code for _ in range(times)]


def lockouts():
    """(target, rule, refused) of every lockout event, oldest first."""
    events = SecurityEvent.objects.filter(kind="login.lockout").order_by("id")
    return [(e.target, e.detail.get("rule"), e.detail.get("refused")) for e in events]


def test_defaults_follow_entra_smart_lockout_and_nist():
    assert (LIMIT, ACCOUNT_LIMIT, SPRAY_LIMIT) == (10, 100, 20)
    assert django_settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60


def test_typos_lock_the_account_from_that_address_but_not_a_colleague_there(carol, dave):
    assert fail(LIMIT - 1, "carol", OFFICE) == [401] * (LIMIT - 1)
    assert lockouts() == []
    locked = ticket("carol", "wrong", OFFICE)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "locked_out"
    assert locked["Retry-After"] == "900"
    assert lockouts() == [(f"user carol / address {OFFICE}", "account from address", False)]
    refused = good("carol", OFFICE)
    assert refused.status_code == 429 and "locked for 15 minutes" in refused.json()["error"]["message"]
    assert lockouts()[-1] == (f"user carol / address {OFFICE}", "account from address", True)
    # A colleague behind the same address, through the API and the portal, logs in.
    assert good("dave", OFFICE).status_code == 201
    portal = Client(REMOTE_ADDR=OFFICE).post("/login/", {"username": "dave", "password": password("dave")})
    assert portal.status_code == 302
    # carol herself, from home, too.
    assert good("carol", HOME).status_code == 201
    assert len(lockouts()) == 2


def test_an_attacker_locks_only_his_own_address_until_the_all_address_limit(carol, dave):
    assert fail(LIMIT, "carol", ATTACKER)[-1] == 429
    assert good("carol", ATTACKER).status_code == 429  # even the right password, from there
    assert good("carol", HOME).status_code == 201  # the owner elsewhere
    assert good("carol", ATTACKER).status_code == 429  # whose success does not unlock the attacker
    # Attempts refused while locked check no password and are not counted towards the account.
    assert fail(5, "carol", ATTACKER) == [429] * 5
    assert AccessAttempt.objects.filter(username="carol").aggregate(n=Sum("failures_since_start"))["n"] == LIMIT
    # Guesses spread over addresses add up to the account's limit (NIST SP 800-63B: 100).
    for number in range(1, ACCOUNT_LIMIT // LIMIT):
        assert fail(LIMIT, "carol", f"198.51.100.{number}")[-1] == 429
    assert lockouts()[-1] == ("user carol", "account", False)
    assert good("carol", HOME).status_code == 429
    assert lockouts()[-1] == ("user carol", "account", True)
    assert good("dave", HOME).status_code == 201  # other accounts are untouched


def test_an_address_spraying_many_accounts_is_blocked(carol, dave):
    sprayer = "203.0.113.5"
    assert fail(1, "carol", sprayer) == [401]
    for number in range(SPRAY_LIMIT - 2):
        assert fail(1, f"nobody{number}", sprayer) == [401]
    assert lockouts() == []
    assert fail(1, "dave", sprayer) == [429]  # the 20th different account
    assert lockouts() == [(f"address {sprayer}", "address", False)]
    # Even a right password of another account, from there, through the API or the portal.
    assert good("dave", sprayer).status_code == 429
    page = Client(REMOTE_ADDR=sprayer).post("/login/", {"username": "carol", "password": password("carol")})
    assert page.status_code == 429 and b"Too many failed logins" in page.content
    assert lockouts()[-1] == (f"address {sprayer}", "address", True)
    # The accounts themselves, from anywhere else, are not locked.
    assert good("dave", HOME).status_code == 201 and good("carol", HOME).status_code == 201


def test_colleagues_who_mistype_then_log_in_do_not_add_up(carol, dave, alice, settings):
    settings.PRO_LOCKOUT_SPRAY_ACCOUNTS = 3
    for name in ("carol", "dave", "alice"):
        assert fail(1, name, OFFICE) == [401]
        assert good(name, OFFICE).status_code == 201
    assert lockouts() == []
    assert [fail(1, name, OFFICE)[0] for name in ("x1", "x2", "x3")] == [401, 401, 429]


def test_unknown_and_known_names_get_the_same_answer(carol, monkeypatch):
    assert fail(LIMIT, "carol", OFFICE)[-1] == 429
    assert fail(LIMIT, "nobody", HOME)[-1] == 429
    checked = []
    monkeypatch.setattr(ModelBackend, "authenticate", lambda *args, **kwargs: checked.append(kwargs))
    known, unknown = good("carol", OFFICE), ticket("nobody", "anything", HOME)
    assert (known.status_code, known.json(), known["Retry-After"]) == (
        unknown.status_code,
        unknown.json(),
        unknown["Retry-After"],
    )
    known_page = Client(REMOTE_ADDR=OFFICE).post("/login/", {"username": "carol", "password": password("carol")})
    unknown_page = Client(REMOTE_ADDR=HOME).post("/login/", {"username": "nobody", "password": "anything"})
    assert known_page.status_code == unknown_page.status_code == 429
    assert known_page.content == unknown_page.content
    assert checked == []  # refused before any password is checked: no timing difference either
    assert [rule for _, rule, _ in lockouts()] == ["account from address"] * 6


def test_a_success_resets_the_count_from_that_address(carol):
    assert fail(LIMIT - 1, "carol", OFFICE) == [401] * (LIMIT - 1)
    assert good("carol", OFFICE).status_code == 201
    assert fail(LIMIT - 1, "carol", OFFICE) == [401] * (LIMIT - 1)
    assert fail(1, "carol", OFFICE) == [429]


def test_portal_admin_and_api_count_together(carol):
    # The Django admin logs in through the portal's login form (with its two-factor step).
    assert Client().get("/admin/login/?next=/admin/")["Location"] == "/login/?next=%2Fadmin%2F"
    portal = Client()
    for _ in range(LIMIT // 2):
        assert portal.post("/login/?next=/admin/", {"username": "carol", "password": "wrong"}).status_code == 200
    for _ in range(LIMIT // 2 - 1):
        assert ticket("carol").status_code == 401
    assert ticket("carol").status_code == 429
    page = portal.post("/login/", {"username": "carol", "password": password("carol")})
    assert page.status_code == 429 and b"Too many failed logins" in page.content


def test_only_password_logins_are_counted_and_locked(carol, rf, settings):
    """A login that brings no password (single sign-on, once there is one) passes a locked account."""
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, f"{__name__}.SingleSignOnBackend"]
    settings.PRO_LOCKOUT_ACCOUNT_FAILURES = LIMIT
    assert fail(LIMIT, "carol", OFFICE)[-1] == 429
    assert good("carol", HOME).status_code == 429  # locked from every address, for passwords
    request = rf.post("/sso/callback", REMOTE_ADDR=HOME)
    assert authenticate(request, sso_subject="carol") == carol
    before = list(AccessAttempt.objects.values_list("username", "ip_address", "failures_since_start"))
    assert authenticate(rf.post("/sso/callback", REMOTE_ADDR=HOME), sso_subject="nobody") is None
    assert list(AccessAttempt.objects.values_list("username", "ip_address", "failures_since_start")) == before


class SingleSignOnBackend:
    """A stand-in for a single sign-on backend: trusts the subject it is given."""

    def authenticate(self, request, sso_subject=None):
        return get_user_model().objects.filter(username=sso_subject).first() if sso_subject else None

    def get_user(self, user_id):
        return get_user_model().objects.filter(pk=user_id).first()


def test_admin_unlocks(carol):
    assert fail(LIMIT, "carol")[-1] == 429
    assert good("carol").status_code == 429
    call_command("axes_reset_username", "carol")
    assert good("carol").status_code == 201
    unlocks = SecurityEvent.objects.filter(kind="login.unlock")
    assert [(e.target, e.detail["rule"]) for e in unlocks] == [
        ("user carol / address 127.0.0.1", "account from address")
    ]


def test_admin_unlocks_a_spraying_address_once(carol):
    sprayer = "203.0.113.9"
    for number in range(SPRAY_LIMIT):
        fail(1, f"nobody{number}", sprayer)
    assert good("carol", sprayer).status_code == 429
    call_command("axes_reset_ip", sprayer)
    assert good("carol", sprayer).status_code == 201
    unlocks = SecurityEvent.objects.filter(kind="login.unlock")
    assert [(e.target, e.detail["rule"]) for e in unlocks] == [(f"address {sprayer}", "address")]


def test_lockout_follows_the_real_address_behind_a_trusted_proxy(carol, dave, settings):
    settings.PRO_TRUSTED_PROXIES = ["127.0.0.1/32"]
    attacker = APIClient(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    for number in range(SPRAY_LIMIT):
        ticket(f"nobody{number}", client=attacker)
    assert good("dave", client=attacker).status_code == 429
    assert lockouts()[0] == ("address 198.51.100.7", "address", False)
    # Another client behind the same proxy is not locked out with the attacker.
    other = APIClient(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert good("carol", client=other).status_code == 201


def test_a_forged_forwarded_for_does_not_escape_the_address_lock(carol):
    for number in range(SPRAY_LIMIT):
        ticket(f"nobody{number}", client=APIClient(HTTP_X_FORWARDED_FOR=f"198.51.100.{number}"))
    assert good("carol", client=APIClient(HTTP_X_FORWARDED_FOR="198.51.100.99")).status_code == 429
