"""Tickets: a user name and password buy a short-lived bearer ticket."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiTicket

pytestmark = pytest.mark.django_db


def test_ticket_for_good_credentials(carol):
    response = APIClient().post(
        "/api/v1/auth/tickets", {"username": "carol", "password": "carol-Secret-pw-1"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["ticket"].startswith("pro_t_") and body["username"] == "carol"
    stored = ApiTicket.objects.get(user=carol)
    assert stored.key_hash != body["ticket"] and body["ticket"] not in stored.key_hash
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['ticket']}")
    assert client.get("/api/v1/apps").status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"username": "carol", "password": "wrong"}, 401, "authentication_failed"),
        ({"username": "nobody", "password": "x"}, 401, "authentication_failed"),
        ({"username": "carol"}, 400, "invalid"),
        ({}, 400, "invalid"),
    ],
)
def test_bad_credentials(carol, payload, status, code):
    response = APIClient().post("/api/v1/auth/tickets", payload, format="json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not ApiTicket.objects.exists()


def test_malformed_json_is_a_clear_error(carol):
    response = APIClient().generic("POST", "/api/v1/auth/tickets", "{oops", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.parametrize("header", ["Bearer pro_t_forged", "Bearer", "Bearer a b", "Bearer not-a-ticket"])
def test_forged_or_malformed_tickets_are_refused(carol, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/apps")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Bearer"


def test_expired_and_revoked_tickets_are_refused(api, carol):
    from apps.accounts.services import ticket_issue_for_user, ticket_revoke_all

    raw, ticket = ticket_issue_for_user(user=carol)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    ticket.expires_at = timezone.now() - timedelta(seconds=1)
    ticket.save()
    assert client.get("/api/v1/apps").status_code == 401
    raw, _ = ticket_issue_for_user(user=carol)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/apps").status_code == 200
    ticket_revoke_all(user=carol)
    assert client.get("/api/v1/apps").status_code == 401


def test_anonymous_gets_401_json(db):
    response = APIClient().get("/api/v1/apps")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_unknown_api_route_is_json_404(api, carol):
    response = api(carol).get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_ticket_lifetime_follows_setting(carol, settings):
    settings.PRO_TICKET_TTL_SECONDS = 120
    response = APIClient().post(
        "/api/v1/auth/tickets", {"username": "carol", "password": "carol-Secret-pw-1"}, format="json"
    )
    ticket = ApiTicket.objects.get(user=carol)
    assert timedelta(seconds=110) < ticket.expires_at - ticket.created_at <= timedelta(seconds=120)
    assert response.status_code == 201


def test_publisher_key_is_public(db):
    from apps.catalog.keys import platform_key_id
    from sessions.runtime import package

    response = APIClient().get("/api/v1/publisher-key")
    assert response.status_code == 200
    body = response.json()
    assert body["key_id"] == platform_key_id()
    assert package.key_id(package.load_public_key(body["public_key"])) == body["key_id"]


def test_schema_and_docs(api, carol):
    schema = api(carol).get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/apps", "/api/v1/auth/tickets", "/api/v1/publisher-key", "/api/v1/storage/{path}"):
        assert path in paths
    docs = api(carol).get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_me_says_whose_the_credential_is(api, carol, alice):
    from apps.accounts.api_keys import api_key_create

    assert api(carol).get("/api/v1/auth/me").json() == {"username": "carol", "role": "user", "credential": "ticket"}
    raw, _ = api_key_create(user=alice, name="script")
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert keyed.get("/api/v1/auth/me").json() == {"username": "alice", "role": "publisher", "credential": "api_key"}
    assert APIClient().get("/api/v1/auth/me").status_code == 401
