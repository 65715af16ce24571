"""The security event log: what is recorded, that it is append-only, and the admin page."""

import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.events import security_events_remove_expired
from apps.accounts.models import SecurityEvent
from tests.helpers import body_of, browser, publish_as

pytestmark = pytest.mark.django_db


def kinds(**filters) -> list[tuple[str, str, str]]:
    events = SecurityEvent.objects.filter(**filters).exclude(kind="user.create")  # the personas fixtures make
    return list(events.order_by("id").values_list("kind", "actor", "outcome"))


def test_logins_and_lockout(carol, settings):
    client = Client(REMOTE_ADDR="192.0.2.7")  # a documentation address, in the request's metadata only
    client.post("/login/", {"username": "carol", "password": "wrong"})
    client.post("/login/", {"username": "carol", "password": "carol-Secret-pw-1"})
    assert kinds() == [("login", "carol", "failure"), ("login", "carol", "success")]
    assert SecurityEvent.objects.first().source == "192.0.2.7"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        APIClient().post("/api/v1/auth/tickets", {"username": "carol", "password": "wrong"}, format="json")
    assert ("login.lockout", "carol", "denied") in kinds()


def test_tickets_packages_grants_and_denials(api, alice, carol, runtime, pack):
    APIClient().post("/api/v1/auth/tickets", {"username": "alice", "password": "alice-Secret-pw-1"}, format="json")
    assert ("ticket.issue", "alice", "success") in kinds()
    version = publish_as(alice, pack())
    assert SecurityEvent.objects.get(kind="package.upload").target == "app demo 1.0.0"
    response = api(carol).post("/api/v1/apps", {"package": io.BytesIO(b"junk")}, format="multipart")
    assert response.status_code == 403
    assert ("package.upload", "carol", "failure") in kinds()
    assert ("permission.denied", "carol", "denied") in kinds()
    grant = api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json").json()
    api(alice).delete(f"/api/v1/apps/demo/grants/{grant['id']}")
    assert [e.target for e in SecurityEvent.objects.filter(kind__startswith="grant.").order_by("id")] == [
        "app demo to user carol",
        "app demo from user carol",
    ]
    assert version.pk


def test_session_launch(api, carol, alice, runtime, pack):
    publish_as(alice, pack()).app.grants.create(user=carol, level="viewer")
    api(carol).post("/api/v1/sessions", {"app": "demo"}, format="json")
    assert kinds(kind="session.launch") == [("session.launch", "carol", "success")]


def test_admin_changes_are_recorded(admin_user, carol):
    client = browser(admin_user)
    response = client.post(
        f"/admin/auth/user/{carol.pk}/change/",
        {
            "username": "carol",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
            "first_name": "Carol",
        },
    )
    assert response.status_code == 302
    events = SecurityEvent.objects.filter(kind="admin.change")
    assert events.exists() and all(e.actor == "root" and "carol" in e.target for e in events)


def test_append_only(admin_user, carol):
    Client().post("/login/", {"username": "carol", "password": "wrong"})
    event = SecurityEvent.objects.filter(kind="login", outcome="failure").first()
    event.outcome = "success"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    client = browser(admin_user)
    assert client.get(f"/admin/accounts/securityevent/{event.pk}/delete/").status_code == 403
    assert client.post(f"/admin/accounts/securityevent/{event.pk}/change/", {"outcome": "success"}).status_code == 403
    assert SecurityEvent.objects.get(pk=event.pk).outcome == "failure"


def test_page_filters_and_csv(admin_user, carol, alice):
    Client().post("/login/", {"username": "carol", "password": "wrong"})
    Client().post("/login/", {"username": "alice", "password": "wrong"})
    client = browser(admin_user)
    page = client.get("/security/?actor=carol")
    assert page.status_code == 200 and b"carol" in page.content and b">alice<" not in page.content
    export = client.get("/security/?kind=login&outcome=failure&format=csv")
    lines = body_of(export).decode().strip().splitlines()
    assert lines[0] == "time,kind,actor,source,target,outcome"
    assert {line.split(",")[2] for line in lines[1:]} == {"carol", "alice"}
    assert browser(carol).get("/security/").status_code == 403


def test_retention(carol, settings):
    Client().post("/login/", {"username": "carol", "password": "wrong"})
    settings.PRO_SECURITY_EVENT_RETENTION_DAYS = 30
    assert security_events_remove_expired(now=timezone.now() + timedelta(days=29)) == 0
    assert security_events_remove_expired(now=timezone.now() + timedelta(days=31)) == 2  # carol's creation too
    assert not SecurityEvent.objects.exists()


def test_accounts_made_with_the_command_are_recorded(db):
    from django.core.management import call_command

    call_command("pro_user", "erin", "--password", "erin-Secret-pw-1", "--role", "publisher")
    event = SecurityEvent.objects.get(kind="user.create")
    assert event.target == "user erin" and event.detail == {"role": "publisher"}
    assert "erin-Secret-pw-1" not in str(event.detail)
