"""The websocket proxy (Channels' communicator) in front of real session processes."""

from __future__ import annotations

import pytest

from sessions import data_sessions
from sessions.models import DataSession, SessionState
from tests.helpers import ORIGIN, communicate, ticket_header, wait_state

pytestmark = pytest.mark.django_db(transaction=True)


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


NOBODYS = "/ws/sessions/00000000-0000-0000-0000-000000000000/"
ORIGIN_REFUSED = 1000  # the origin check's refusal, before any login (4401) or session (4404) check


@pytest.mark.parametrize(
    ("host", "origin", "scheme", "admitted"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000", "ws", True),
        ("127.0.0.1:8000", "http://127.0.0.1:8000/", "ws", True),
        ("127.0.0.1:8000", "http://127.0.0.1:9999", "ws", False),  # same host, another port
        ("127.0.0.1:8000", "http://127.0.0.1", "ws", False),
        ("127.0.0.1:8000", "https://127.0.0.1:8000", "ws", False),  # same host and port, another scheme
        ("127.0.0.1:8000", "http://localhost:8000", "ws", False),  # an allowed host, but not this one
        ("127.0.0.1:8000", "http://evil.example:8000", "ws", False),
        ("127.0.0.1:8000", "null", "ws", False),
        ("127.0.0.1:8000", None, "ws", False),
        ("localhost", "https://localhost", "wss", True),
        ("localhost", "https://localhost:443", "wss", True),
        ("localhost", "http://localhost", "wss", False),
        ("evil.example:8000", "http://evil.example:8000", "ws", False),  # not an allowed host (DNS rebinding)
    ],
)
def test_origin_must_be_the_platforms_own_scheme_host_and_port(db, host, origin, scheme, admitted):
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    connected, code, _ = communicate(NOBODYS, headers, scope={"scheme": scheme})
    assert not connected
    assert code == (4401 if admitted else ORIGIN_REFUSED)


def test_trusted_origins_match_scheme_host_and_port(db, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://pro.example.com", "https://*.apps.example.com:8443"]
    for origin, admitted in [
        ("https://pro.example.com", True),
        ("https://pro.example.com:443", True),
        ("http://pro.example.com", False),
        ("https://pro.example.com:8443", False),
        ("https://a.apps.example.com:8443", True),
        ("https://a.apps.example.com", False),
        ("http://a.apps.example.com:8443", False),
        ("https://evil.example.com:8443", False),
    ]:
        _, code, _ = communicate(NOBODYS, [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())])
        assert code == (4401 if admitted else ORIGIN_REFUSED), origin


def test_origin_scheme_behind_a_trusted_proxy(db, settings):
    settings.ALLOWED_HOSTS = ["pro.example.com"]
    settings.PRO_TRUSTED_PROXIES = ["127.0.0.1/32"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    headers = [(b"host", b"pro.example.com"), (b"origin", b"https://pro.example.com"), (b"x-forwarded-proto", b"https")]
    _, code, _ = communicate(NOBODYS, headers, scope={"client": ("127.0.0.1", 50000)})
    assert code == 4401
    # From anyone else the header is dropped: the connection is plain, and the https page another origin.
    _, code, _ = communicate(NOBODYS, headers, scope={"client": ("192.0.2.1", 50000)})
    assert code == ORIGIN_REFUSED
