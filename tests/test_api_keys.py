"""Ticket renewal and revocation, API keys, and what logout and password changes end."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey, ApiTicket, SecurityEvent
from apps.accounts.services import credentials_forget

pytestmark = pytest.mark.django_db

CAROL = {"username": "carol", "password": "carol-Secret-pw-1"}


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def ticket_for(credentials=CAROL) -> str:
    response = APIClient().post("/api/v1/auth/tickets", credentials, format="json")
    assert response.status_code == 201, response.content
    return response.json()["ticket"]


def test_ticket_is_renewed_up_to_its_maximum_age(carol, settings):
    settings.PRO_TICKET_TTL_SECONDS = 900
    settings.PRO_TICKET_MAX_AGE_SECONDS = 3600
    raw = ticket_for()
    ticket = ApiTicket.objects.get(user=carol)
    ApiTicket.objects.filter(pk=ticket.pk).update(
        created_at=timezone.now() - timedelta(minutes=50), expires_at=timezone.now() + timedelta(minutes=1)
    )
    response = bearer(raw).post("/api/v1/auth/tickets/current/renew")
    assert response.status_code == 200, response.content
    ticket.refresh_from_db()
    # Renewed by at most the maximum age: 10 minutes left of the hour, not another 15.
    assert ticket.expires_at <= ticket.created_at + timedelta(seconds=3600)
    assert ticket.expires_at > timezone.now() + timedelta(minutes=9)
    assert response.json()["max_expires_at"].startswith(str((ticket.created_at + timedelta(hours=1)).date()))
    assert SecurityEvent.objects.filter(kind="ticket.renew", actor="carol").exists()

    ApiTicket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(hours=2))
    refused = bearer(raw).post("/api/v1/auth/tickets/current/renew")
    assert refused.status_code == 401
    assert "maximum age" in refused.json()["error"]["message"]


def test_ticket_logout_revokes_only_that_ticket(carol):
    first, second = ticket_for(), ticket_for()
    assert bearer(first).get("/api/v1/auth/tickets/current").json()["username"] == "carol"
    assert bearer(first).delete("/api/v1/auth/tickets/current").status_code == 204
    assert bearer(first).get("/api/v1/apps").status_code == 401
    assert bearer(second).get("/api/v1/apps").status_code == 200


def test_renewal_needs_a_ticket(carol):
    client = APIClient()
    client.force_login(carol)
    response = client.post("/api/v1/auth/tickets/current/renew")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ticket_required"


def test_api_key_is_shown_once_stored_hashed_and_works(carol):
    response = bearer(ticket_for()).post("/api/v1/auth/keys", {"name": "nightly import"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    raw = body["key"]
    assert raw.startswith("pro_k_") and body["expires_at"] is None and body["active"]
    stored = ApiKey.objects.get(user=carol)
    assert raw not in stored.key_hash and stored.prefix == raw[:12]
    assert bearer(raw).get("/api/v1/apps").status_code == 200
    listed = bearer(ticket_for()).get("/api/v1/auth/keys").json()
    assert [k["name"] for k in listed] == ["nightly import"] and "key" not in listed[0]
    assert SecurityEvent.objects.filter(kind="apikey.issue", actor="carol").exists()


def test_api_key_revoked_by_its_owner_only(carol, dave):
    raw, key = _key_of(carol)
    assert (
        bearer(ticket_for({"username": "dave", "password": "dave-Secret-pw-1"}))
        .delete(f"/api/v1/auth/keys/{key.pk}")
        .status_code
        == 404
    )
    assert bearer(raw).get("/api/v1/apps").status_code == 200
    assert bearer(ticket_for()).delete(f"/api/v1/auth/keys/{key.pk}").status_code == 204
    assert bearer(raw).get("/api/v1/apps").status_code == 401
    assert SecurityEvent.objects.filter(kind="apikey.revoke", actor="carol").exists()


def test_expired_api_key_is_refused(carol):
    raw, key = _key_of(carol, expires_at=timezone.now() + timedelta(days=1))
    assert bearer(raw).get("/api/v1/apps").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    credentials_forget()  # a change behind the services' back is seen within a second; here, at once
    assert bearer(raw).get("/api/v1/apps").status_code == 401


def test_a_key_cannot_manage_keys(carol):
    raw, _ = _key_of(carol)
    assert bearer(raw).post("/api/v1/auth/keys", {"name": "more"}, format="json").status_code == 403
    assert bearer(raw).get("/api/v1/auth/keys").status_code == 403
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "old", "expires_at": "2001-01-01T00:00:00Z"}, "future"),
        ({"name": "bad", "expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_key_requests_change_nothing(carol, payload, message):
    response = bearer(ticket_for()).post("/api/v1/auth/keys", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not ApiKey.objects.exists()


def test_keys_must_expire_when_the_platform_says_so(carol, settings):
    settings.PRO_API_KEY_MAX_DAYS = 30
    client = bearer(ticket_for())
    assert client.post("/api/v1/auth/keys", {"name": "forever"}, format="json").status_code == 400
    soon = (timezone.now() + timedelta(days=10)).isoformat()
    assert client.post("/api/v1/auth/keys", {"name": "soon", "expires_at": soon}, format="json").status_code == 201


def test_portal_logout_revokes_the_users_tickets(carol):
    raw = ticket_for()
    browser = Client()
    browser.force_login(carol)
    browser.post("/logout/")
    assert bearer(raw).get("/api/v1/apps").status_code == 401


def test_password_change_revokes_tickets_and_keys(carol):
    raw = ticket_for()
    key, _ = _key_of(carol)
    browser = Client()
    browser.force_login(carol)
    response = browser.post(
        "/account/",
        {
            "action": "password",
            "old_password": CAROL["password"],
            "new_password1": "a-New-secret-42",
            "new_password2": "a-New-secret-42",
        },
    )
    assert response.status_code == 302
    assert bearer(raw).get("/api/v1/apps").status_code == 401
    assert bearer(key).get("/api/v1/apps").status_code == 401
    assert not ApiKey.objects.filter(user=carol, revoked_at__isnull=True).exists()
    assert browser.get("/account/").status_code == 200  # still logged in
    assert SecurityEvent.objects.filter(kind="password.change", actor="carol").exists()
    revoked = SecurityEvent.objects.get(kind="apikey.revoke", actor="carol")
    assert revoked.target == "1 API keys of carol" and revoked.detail["reason"] == "password change"


def test_password_set_by_an_admin_or_a_service_revokes_keys(carol, dave, admin_user):
    carols_key, _ = _key_of(carol)
    daves_key, _ = _key_of(dave)
    admin = Client()
    admin.force_login(admin_user)
    response = admin.post(
        f"/admin/auth/user/{carol.pk}/password/",
        {"password1": "an-Admin-set-pw-9", "password2": "an-Admin-set-pw-9", "usable_password": "true"},
    )
    assert response.status_code == 302, response.content
    assert bearer(carols_key).get("/api/v1/apps").status_code == 401
    dave.set_password("dave-New-secret-2")
    dave.save()
    assert bearer(daves_key).get("/api/v1/apps").status_code == 401


def test_password_hash_upgrade_at_login_is_no_change(carol, settings):
    from django.contrib.auth.hashers import make_password

    key, _ = _key_of(carol)
    # Stored with a hasher that is no longer the preferred one: the next login re-hashes it.
    settings.PASSWORD_HASHERS = [*settings.PASSWORD_HASHERS, "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    old = make_password(CAROL["password"], hasher="pbkdf2_sha256")
    type(carol).objects.filter(pk=carol.pk).update(password=old)
    raw = ticket_for()
    carol.refresh_from_db()
    assert carol.password != old and carol.password.startswith("md5$")
    assert bearer(key).get("/api/v1/apps").status_code == 200
    assert bearer(raw).get("/api/v1/apps").status_code == 200
    assert not SecurityEvent.objects.filter(kind="password.change").exists()


def test_weak_password_is_refused_by_the_validators(carol):
    browser = Client()
    browser.force_login(carol)
    response = browser.post(
        "/account/",
        {"action": "password", "old_password": CAROL["password"], "new_password1": "123", "new_password2": "123"},
    )
    assert response.status_code == 200
    assert b"too short" in response.content
    carol.refresh_from_db()
    assert carol.check_password(CAROL["password"])


def test_portal_account_page_creates_shows_once_and_revokes(carol):
    browser = Client()
    browser.force_login(carol)
    created = browser.post("/account/", {"action": "create-key", "name": "etl", "expires": "2099-01-01"})
    raw = created.context["created_key"]
    assert raw.encode() in created.content
    key = ApiKey.objects.get(user=carol)
    assert key.expires_at.year == 2099
    page = browser.get("/account/")
    assert raw.encode() not in page.content and key.prefix.encode() in page.content
    browser.post("/account/", {"action": "revoke-key", "key": str(key.pk)})
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_secrets_never_reach_the_log(carol, caplog):
    APIClient().post("/api/v1/auth/tickets", {"username": "carol", "password": "wrong-Guess-77"}, format="json")
    raw = ticket_for()
    created = bearer(raw).post("/api/v1/auth/keys", {"name": "n"}, format="json").json()["key"]
    logged = caplog.text + " ".join(str(e.detail) + e.target for e in SecurityEvent.objects.all())
    for secret in ("wrong-Guess-77", CAROL["password"], raw, created):
        assert secret not in logged


def _key_of(user, **options):
    from apps.accounts.api_keys import api_key_create

    return api_key_create(user=user, name="script", **options)
