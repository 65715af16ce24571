"""Repeated failed logins lock the account and the address, across the portal, the admin and the API."""

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def bad_ticket(client=None, username="carol"):
    return (client or APIClient()).post(
        "/api/v1/auth/tickets", {"username": username, "password": "wrong"}, format="json"
    )


def good_ticket(client=None):
    return (client or APIClient()).post(
        "/api/v1/auth/tickets", {"username": "carol", "password": "carol-Secret-pw-1"}, format="json"
    )


def test_five_failures_lock_the_api(carol, settings):
    for _ in range(4):
        assert bad_ticket().status_code == 401
    locked = bad_ticket()
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "locked_out"
    refused = good_ticket()
    assert refused.status_code == 429 and "locked for 15 minutes" in refused.json()["error"]["message"]


def test_portal_admin_and_api_count_together(carol):
    portal, admin = Client(), Client()
    for _ in range(2):
        portal.post("/login/", {"username": "carol", "password": "wrong"})
    for _ in range(2):
        admin.post("/admin/login/", {"username": "carol", "password": "wrong"})
    assert bad_ticket().status_code == 429
    page = portal.post("/login/", {"username": "carol", "password": "carol-Secret-pw-1"})
    assert page.status_code == 429 and b"Too many failed logins" in page.content


def test_success_resets_the_accounts_count(carol):
    # Documentation addresses (RFC 5737) in the request's metadata only: no traffic goes anywhere.
    first, second = APIClient(REMOTE_ADDR="192.0.2.1"), APIClient(REMOTE_ADDR="192.0.2.2")
    for _ in range(4):
        bad_ticket(first)
    assert good_ticket(first).status_code == 201
    for _ in range(4):
        assert bad_ticket(second).status_code == 401


def test_admin_unlocks(carol):
    for _ in range(5):
        bad_ticket()
    assert good_ticket().status_code == 429
    call_command("axes_reset_username", "carol")
    call_command("axes_reset_ip", "127.0.0.1")
    assert good_ticket().status_code == 201
    from apps.accounts.models import SecurityEvent

    unlocks = SecurityEvent.objects.filter(kind="login.unlock")
    assert [e.target for e in unlocks] == ["user carol / address 127.0.0.1"]


def test_lockout_follows_the_real_address_behind_a_trusted_proxy(carol, settings):
    settings.PRO_TRUSTED_PROXIES = ["127.0.0.1/32"]
    attacker = APIClient(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    for _ in range(5):
        bad_ticket(attacker, username="nobody")
    assert bad_ticket(attacker, username="dave").status_code == 429
    # Another client behind the same proxy is not locked out with the attacker.
    other = APIClient(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert good_ticket(other).status_code == 201


def test_a_forged_forwarded_for_does_not_escape_the_address_lock(carol):
    for number in range(5):
        bad_ticket(APIClient(HTTP_X_FORWARDED_FOR=f"198.51.100.{number}"), username="nobody")
    assert good_ticket(APIClient(HTTP_X_FORWARDED_FOR="198.51.100.99")).status_code == 429


def test_source_address_is_locked_too(carol, dave):
    for name in ("nobody1", "nobody2", "nobody3", "nobody4", "nobody5"):
        bad_ticket(username=name)
    response = APIClient().post(
        "/api/v1/auth/tickets", {"username": "dave", "password": "dave-Secret-pw-1"}, format="json"
    )
    assert response.status_code == 429
