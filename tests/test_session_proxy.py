"""The websocket proxy (Channels' communicator) in front of real session processes."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

from pro_portal.asgi import application
from sessions import data_sessions
from sessions.models import DataSession, SessionState
from sessions.session_manager import SessionManager
from tests.conftest import publish_as

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = Path(__file__).parents[1] / "examples"
ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture
def transport(alice, carol, runtime, platform_public_key):
    from sessions.runtime import package

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    version = publish_as(alice, blob)
    version.app.grants.create(user=carol, level="viewer")
    return version


@pytest.fixture
def manager(settings):
    settings.PRO_SESSION_POOL = 1
    running = SessionManager("proxy-node", pool_size=1)
    stopping = threading.Event()
    thread = threading.Thread(target=running.run, args=(stopping,), daemon=True)
    thread.start()
    yield running
    stopping.set()
    thread.join(timeout=30)


def ticket_header(user) -> tuple[bytes, bytes]:
    from apps.accounts.services import ticket_issue_for_user

    raw, _ = ticket_issue_for_user(user=user)
    return (b"authorization", f"Bearer {raw}".encode())


def wait_state(session: DataSession, state: str, timeout: float = 30) -> DataSession:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.refresh_from_db()
        if session.state == state:
            return session
        time.sleep(0.05)
    raise AssertionError(f"session stayed {session.state}: {session.error_message}")


def communicate(path: str, headers: list, script=None):
    async def run():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect(timeout=30)
        result = None
        if connected and script is not None:
            result = await script(communicator)
        if connected:
            await communicator.disconnect()
        return connected, code, result

    return asyncio.run(run())


def test_relay_both_ways(carol, transport, manager):
    session = data_sessions.session_launch(user=carol, app_name="transport")

    async def script(ws):
        state = await ws.receive_json_from(timeout=20)
        await ws.send_json_to({"op": "set", "identifier": "demand", "key": ["Topeka"], "value": 300, "re": 7})
        frames = [await ws.receive_json_from(timeout=10) for _ in range(2)]
        return state, frames

    connected, _, (state, frames) = communicate(f"/ws/sessions/{session.pk}/", [ORIGIN, ticket_header(carol)], script)
    assert connected
    assert state["type"] == "state" and state["app"]["name"] == "transport"
    assert {f["type"] for f in frames} == {"values", "ok"}
    assert next(f for f in frames if f["type"] == "ok")["re"] == 7
    session.refresh_from_db()
    assert session.state == SessionState.RUNNING and session.connections == 0
    assert session.secret not in str(state)


def test_anonymous_is_refused(carol, transport, manager):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    connected, code, _ = communicate(f"/ws/sessions/{session.pk}/", [ORIGIN])
    assert not connected and code == 4401


def test_another_users_session_is_refused(carol, dave, admin_user, transport, manager, caplog):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    for intruder in (dave, admin_user):
        connected, code, _ = communicate(f"/ws/sessions/{session.pk}/", [ORIGIN, ticket_header(intruder)])
        assert not connected and code == 4404
    assert "not theirs or unknown" in caplog.text


def test_unknown_session_is_refused(carol, transport):
    connected, code, _ = communicate(
        "/ws/sessions/00000000-0000-0000-0000-000000000000/", [ORIGIN, ticket_header(carol)]
    )
    assert not connected and code == 4404


def test_closed_session_is_refused(carol, transport, manager):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    wait_state(session, SessionState.RUNNING)
    data_sessions.session_stop(user=carol, session=session)
    connected, code, _ = communicate(f"/ws/sessions/{session.pk}/", [ORIGIN, ticket_header(carol)])
    assert not connected and code == 4410


def test_forged_secret_is_refused_by_the_session_process(carol, transport, manager):
    session = wait_state(data_sessions.session_launch(user=carol, app_name="transport"), SessionState.RUNNING)
    DataSession.objects.filter(pk=session.pk).update(secret="forged")
    connected, code, _ = communicate(f"/ws/sessions/{session.pk}/", [ORIGIN, ticket_header(carol)])
    assert not connected and code == 4502


def test_foreign_origin_is_refused(carol, transport, manager):
    session = data_sessions.session_launch(user=carol, app_name="transport")
    connected, _, _ = communicate(
        f"/ws/sessions/{session.pk}/", [(b"origin", b"http://evil.example"), ticket_header(carol)]
    )
    assert not connected
