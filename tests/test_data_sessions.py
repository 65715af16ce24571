"""Data sessions through the API and the portal: launch, limits, stop, logout, lost, idle."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.test import Client

from sessions import data_sessions, selectors
from sessions.models import DataSession, SessionState
from sessions.session_manager import SessionManager
from tests.helpers import wait_state

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_launch_by_api_starts_a_process(api, carol, transport, manager):
    response = api(carol).post("/api/v1/sessions", {"app": "transport"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "starting" and body["websocket"] == f"/ws/sessions/{body['id']}/"
    assert "secret" not in body
    session = wait_state(DataSession.objects.get(pk=body["id"]), SessionState.RUNNING)
    assert session.node == "proxy-node" and session.port and session.pid
    os.kill(session.pid, 0)
    listed = api(carol).get("/api/v1/sessions").json()
    assert [s["id"] for s in listed] == [body["id"]]


def test_per_user_limit_answers_429(api, carol, transport, settings):
    settings.PRO_SESSIONS_PER_USER = 2
    client = api(carol)
    for _ in range(2):
        assert client.post("/api/v1/sessions", {"app": "transport"}, format="json").status_code == 201
    refused = client.post("/api/v1/sessions", {"app": "transport"}, format="json")
    assert refused.status_code == 429 and refused["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "too_many_sessions"
    assert DataSession.objects.count() == 2


def test_starting_limit_answers_429_to_the_user_whose_sessions_are_starting(api, alice, carol, transport, settings):
    settings.PRO_SESSIONS_STARTING_LIMIT = 1
    assert api(alice).post("/api/v1/sessions", {"app": "transport"}, format="json").status_code == 201
    refused = api(alice).post("/api/v1/sessions", {"app": "transport"}, format="json")
    assert refused.status_code == 429 and refused["Retry-After"] == "5"
    assert api(carol).post("/api/v1/sessions", {"app": "transport"}, format="json").status_code == 201


def test_stop_kills_the_process_and_its_folder(api, carol, transport, manager):
    session = wait_state(data_sessions.session_launch(user=carol, app_name="transport"), SessionState.RUNNING)
    folder = manager.running[str(session.pk)].workdir
    assert folder.is_dir()
    assert api(carol).post(f"/api/v1/sessions/{session.pk}/stop").json()["state"] == "stopped"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (folder.exists() or _alive(session.pid)):
        time.sleep(0.05)
    assert not folder.exists() and not _alive(session.pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_dead_process_is_lost_and_can_be_restarted(api, carol, transport, manager):
    session = wait_state(data_sessions.session_launch(user=carol, app_name="transport"), SessionState.RUNNING)
    os.kill(session.pid, signal.SIGKILL)
    lost = wait_state(session, SessionState.LOST)
    assert "ended unexpectedly" in lost.error_message
    restarted = api(carol).post(f"/api/v1/sessions/{session.pk}/restart")
    assert restarted.status_code == 201
    wait_state(DataSession.objects.get(pk=restarted.json()["id"]), SessionState.RUNNING)


def test_idle_session_is_closed(carol, transport, settings):
    settings.PRO_SESSION_IDLE_SECONDS = 5
    session = data_sessions.session_launch(user=carol, app_name="transport")
    node = SessionManager("idle-node", pool_size=0)
    node.step()
    session = wait_state(session, SessionState.RUNNING)
    node.reconcile()
    assert DataSession.objects.get(pk=session.pk).state == SessionState.RUNNING
    DataSession.objects.filter(pk=session.pk).update(last_active_at=session.last_active_at.replace(year=2000))
    node.reconcile()
    session.refresh_from_db()
    assert session.state == SessionState.STOPPED and "idle" in session.error_message
    assert not node.running
    node.shutdown()


def test_logout_stops_the_users_sessions(carol, transport):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    browser = Client()
    browser.force_login(carol)
    browser.post("/logout/")
    session.refresh_from_db()
    assert session.state == SessionState.STOPPED and "logged out" in session.error_message


def test_other_users_cannot_see_or_stop(api, carol, dave, admin_user, transport):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    assert api(dave).get(f"/api/v1/sessions/{session.pk}").status_code == 404
    assert api(dave).post(f"/api/v1/sessions/{session.pk}/stop").status_code == 404
    assert api(dave).get("/api/v1/sessions").json() == []
    assert [s["owner"] for s in api(admin_user).get("/api/v1/sessions").json()] == ["carol"]
    assert api(admin_user).post(f"/api/v1/sessions/{session.pk}/stop").json()["state"] == "stopped"


def test_app_without_access_cannot_be_launched(api, dave, transport):
    response = api(dave).post("/api/v1/sessions", {"app": "transport"}, format="json")
    assert response.status_code == 404 and not DataSession.objects.exists()


def test_failed_start_tells_why(carol, transport, storage_folder):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    (storage_folder / transport.package_path).write_bytes(b"damaged")
    node = SessionManager("broken-node", pool_size=0)
    node.step()
    session.refresh_from_db()
    assert session.state == SessionState.FAILED and "could not start" in session.error_message
    node.shutdown()


def test_portal_open_and_resume(carol, transport, manager):
    browser = Client()
    browser.force_login(carol)
    page = browser.get("/launch/transport/latest")
    assert page.status_code == 200 and b"open-form" in page.content
    opened = browser.post("/launch/transport/latest")
    session = DataSession.objects.get()
    assert opened["Location"] == f"/sessions/{session.pk}/"
    webui = browser.get(opened["Location"])
    assert webui.status_code == 200 and b"webui.js" in webui.content and session.secret.encode() not in webui.content
    again = browser.get("/launch/transport/latest")
    assert b"Resume it" in again.content and str(session.pk).encode() in again.content
    listing = browser.get("/sessions/")
    assert b"Transport" in listing.content


def test_idle_timeout_per_app(carol, transport, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.PRO_SESSION_IDLE_SECONDS = 3600
    transport.manifest = {**transport.manifest, "session_idle_timeout": 60}
    transport.save(update_fields=["manifest"])
    session = data_sessions.session_launch(user=carol, app_name="transport")
    DataSession.objects.filter(pk=session.pk).update(
        state=SessionState.RUNNING, node="n", last_active_at=timezone.now() - timedelta(seconds=90)
    )
    assert [s.pk for s in selectors.sessions_idle(node="n")] == [session.pk]
    settings.PRO_SESSION_IDLE_SECONDS = 30
    transport.manifest = {**transport.manifest, "session_idle_timeout": 600}
    transport.save(update_fields=["manifest"])
    assert selectors.sessions_idle(node="n") == []
