"""IP range filtering: global and per group, on the portal, the API and the websocket proxy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import GroupNetworks, SecurityEvent
from apps.accounts.network import AddressNotAllowed, client_address, network_check, parse_networks
from pro_portal.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

CAROL = {"username": "carol", "password": "carol-Secret-pw-1"}
OUTSIDE, INSIDE = "203.0.113.9", "10.1.2.3"


@pytest.fixture
def office_only(settings):
    settings.PRO_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]


@pytest.fixture
def behind_proxy(settings):
    settings.PRO_TRUSTED_PROXIES = ["127.0.0.1/32", "192.168.50.0/24"]


@pytest.fixture
def contractors(carol):
    group = Group.objects.create(name="Contractors")
    GroupNetworks.objects.create(group=group, networks="192.0.2.0/24\n2001:db8:c::/48")
    carol.groups.add(group)
    return group


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        (OUTSIDE, INSIDE, OUTSIDE),  # an untrusted peer cannot claim an address
        ("127.0.0.1", INSIDE, INSIDE),
        ("127.0.0.1", f"{OUTSIDE}, {INSIDE}", INSIDE),  # only the hop the trusted proxy saw
        ("127.0.0.1", f"{INSIDE}, 192.168.50.7", INSIDE),  # through two trusted proxies
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
        ("::ffff:127.0.0.1", "2001:db8::5", "2001:db8::5"),
        ("2001:db8::9", INSIDE, "2001:db8::9"),
    ],
)
def test_client_address_trusts_only_configured_proxies(behind_proxy, peer, forwarded, expected):
    assert client_address(peer, forwarded) == expected


@pytest.mark.parametrize("value", ["10.0.0.0/33", "bogus", "10.0.0.0/8/1", "fe80::/129"])
def test_bad_ranges_are_named(value):
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks(["10.0.0.0/8", value])


def test_bad_range_in_the_environment_stops_the_platform(tmp_path):
    env = {"PRO_DATA_DIR": str(tmp_path), "PRO_ALLOWED_NETWORKS": "10.0.0.0/8,office", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PRO_ALLOWED_NETWORKS: 'office' is not an address range" in result.stderr


def test_global_list_on_the_portal_and_the_api(office_only, carol):
    outside = Client(REMOTE_ADDR=OUTSIDE)
    page = outside.get("/login/")
    assert page.status_code == 403 and b"not allowed" in page.content
    api = APIClient(REMOTE_ADDR=OUTSIDE).post("/api/v1/auth/tickets", CAROL, format="json")
    assert api.status_code == 403 and api.json()["error"]["code"] == "address_not_allowed"
    assert Client(REMOTE_ADDR=INSIDE).get("/login/").status_code == 200
    assert outside.get("/healthz").status_code == 200  # for load balancers; it tells nothing
    assert Client(REMOTE_ADDR="2001:db8::1").get("/login/").status_code == 200
    assert APIClient(REMOTE_ADDR=INSIDE).post("/api/v1/auth/tickets", CAROL, format="json").status_code == 201
    denied = SecurityEvent.objects.filter(kind="ip.denied", source=OUTSIDE)
    assert denied.count() == 2 and all(e.outcome == "denied" for e in denied)


def test_global_list_applies_to_tickets_used_elsewhere(office_only, carol):
    raw = APIClient(REMOTE_ADDR=INSIDE).post("/api/v1/auth/tickets", CAROL, format="json").json()["ticket"]
    stolen = APIClient(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert stolen.get("/api/v1/apps").status_code == 403
    assert APIClient(REMOTE_ADDR=INSIDE, HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/apps").status_code == 200


def test_forwarded_for_is_read_only_from_trusted_proxies(office_only, behind_proxy, carol):
    forged = Client(REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR=INSIDE)
    assert forged.get("/login/").status_code == 403
    proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=INSIDE)
    assert proxied.get("/login/").status_code == 200
    proxied_outsider = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE)
    assert proxied_outsider.get("/login/").status_code == 403
    assert SecurityEvent.objects.filter(kind="ip.denied", source=OUTSIDE).count() == 2


def test_group_list_for_its_members_wherever_they_log_in(contractors, carol, dave):
    assert APIClient(REMOTE_ADDR=OUTSIDE).post("/api/v1/auth/tickets", CAROL, format="json").status_code == 403
    event = SecurityEvent.objects.get(kind="ip.denied")
    assert event.actor == "carol" and event.source == OUTSIDE
    dave_login = {"username": "dave", "password": "dave-Secret-pw-1"}
    assert APIClient(REMOTE_ADDR=OUTSIDE).post("/api/v1/auth/tickets", dave_login, format="json").status_code == 201
    assert APIClient(REMOTE_ADDR="192.0.2.10").post("/api/v1/auth/tickets", CAROL, format="json").status_code == 201

    portal = Client(REMOTE_ADDR=OUTSIDE)
    response = portal.post("/login/", CAROL)
    assert response.status_code == 403
    assert "_auth_user_id" not in portal.session  # logged out again at once
    inside = Client(REMOTE_ADDR="2001:db8:c::7")
    assert inside.post("/login/", CAROL).status_code == 302
    assert inside.get("/").status_code == 200


def test_group_list_ends_an_open_portal_session(contractors, carol):
    portal = Client(REMOTE_ADDR=OUTSIDE)
    portal.force_login(carol)
    assert portal.get("/jobs/").status_code == 403
    assert "_auth_user_id" not in portal.session


def test_a_members_other_groups_without_ranges_add_no_restriction(contractors, carol):
    carol.groups.add(Group.objects.create(name="Planners"))
    network_check(address="192.0.2.1", user=carol)
    with pytest.raises(AddressNotAllowed, match="may not connect"):
        network_check(address=OUTSIDE, user=carol)


def test_data_session_tickets_are_exempt(office_only, carol):
    from apps.accounts.services import ticket_issue_for_user

    raw, _ = ticket_issue_for_user(user=carol, scope={"session": "s-1", "app": "transport"})
    client = APIClient(REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/cases?app=transport").status_code == 200


def _websocket(address: str, headers: list) -> tuple[bool, int]:
    async def run():
        async def from_address(scope, receive, send):
            return await application({**scope, "client": (address, 50000)}, receive, send)

        communicator = WebsocketCommunicator(
            from_address,
            f"/ws/sessions/{uuid.uuid4()}/",
            headers=[(b"host", b"testserver"), (b"origin", b"http://testserver"), *headers],
        )
        connected, code = await communicator.connect(timeout=10)
        if connected:
            await communicator.disconnect()
        return connected, code

    return asyncio.run(run())


def test_websocket_proxy_checks_the_address(settings, behind_proxy, contractors, carol):
    from apps.accounts.services import ticket_issue_for_user

    settings.PRO_ALLOWED_NETWORKS = ["10.0.0.0/8", "192.0.2.0/24"]
    raw, _ = ticket_issue_for_user(user=carol)
    auth = (b"authorization", f"Bearer {raw}".encode())
    assert _websocket(OUTSIDE, [auth]) == (False, 4403)
    # Inside the global range but outside the group's: refused as well.
    assert _websocket(INSIDE, [auth]) == (False, 4403)
    # Through the trusted proxy from the group's range: admitted, and the session is unknown.
    forwarded = (b"x-forwarded-for", b"192.0.2.44")
    assert _websocket("127.0.0.1", [auth, forwarded]) == (False, 4404)
    # The same header from anyone else is dropped: the peer's own address counts.
    assert _websocket(OUTSIDE, [auth, forwarded]) == (False, 4403)
    assert SecurityEvent.objects.filter(kind="ip.denied", target__startswith="websocket").count() == 3


def _group_form(name: str, networks: str) -> dict:
    return {
        "name": name,
        "networks-TOTAL_FORMS": "1",
        "networks-INITIAL_FORMS": "0",
        "networks-MIN_NUM_FORMS": "0",
        "networks-MAX_NUM_FORMS": "1",
        "networks-0-networks": networks,
        # The group's quota, edited on the same page (none here).
        "quota-TOTAL_FORMS": "0",
        "quota-INITIAL_FORMS": "0",
        "quota-MIN_NUM_FORMS": "0",
        "quota-MAX_NUM_FORMS": "1",
    }


def test_admin_sets_a_groups_ranges_and_bad_ones_change_nothing(admin_user):
    portal = Client()
    portal.force_login(admin_user)
    refused = portal.post("/admin/auth/group/add/", _group_form("Remote", "10.0.0.0/8\nvpn-range"))
    assert refused.status_code == 200 and b"is not an address range" in refused.content
    assert not Group.objects.filter(name="Remote").exists()
    saved = portal.post("/admin/auth/group/add/", _group_form("Remote", "10.0.0.0/8\n2001:db8::/32"))
    assert saved.status_code == 302
    assert GroupNetworks.objects.get(group__name="Remote").networks.split() == ["10.0.0.0/8", "2001:db8::/32"]
    assert SecurityEvent.objects.filter(kind="admin.add", target__contains="Remote").exists()
