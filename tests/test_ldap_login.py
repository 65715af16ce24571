"""LDAP / Active Directory login against a real OpenLDAP (tests/ldap_server.py): the user's
password checked by the directory, its groups mapped onto platform groups and roles at every
login, a directory entry never taking over a local account of the same name."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth.models import User

from apps.accounts.models import SecurityEvent, SsoIdentity
from apps.accounts.services import user_role
from tests.helpers import password

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ldap_platform(storage_folder, tmp_path, ldap_server):
    """The platform's web server with a directory searched by a service account (the Active
    Directory way: PRO_LDAP_USER_FILTER would be (sAMAccountName=%(user)s) there)."""
    from tests.live import free_port, platform_env, start_web_server

    env = platform_env(
        free_port(),
        storage_folder.as_uri(),
        PRO_LDAP_URL=ldap_server.url,
        PRO_LDAP_BIND_DN=ldap_server.bind_dn,
        PRO_LDAP_BIND_PASSWORD=ldap_server.bind_password,
        PRO_LDAP_USER_BASE=ldap_server.people_dn,
        PRO_LDAP_USER_FILTER="(uid=%(user)s)",
        PRO_LDAP_GROUP_BASE=ldap_server.groups_dn,
        PRO_SSO_GROUP_MAP="ops-team=Operations",
        PRO_SSO_ADMIN_GROUPS="pro-admins",
    )
    with start_web_server(env, tmp_path / "web.log") as server:
        yield server


def ticket(server, username: str, typed: str) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/auth/tickets", json={"username": username, "password": typed}, timeout=30
    )


def names(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_directory_users_log_in_with_their_groups_mapped_at_every_login(ldap_platform, ldap_server):
    ldap_server.add_user(
        "gina", "gina-Secret-pw-1", groups=["ops-team", "pro-admins"], mail="gina@example.com", name="Gina Ray"
    )
    assert ticket(ldap_platform, "gina", "wrong").status_code == 401
    assert ticket(ldap_platform, "gina", "gina-Secret-pw-1").status_code == 201
    gina = User.objects.get(username="gina")
    assert (gina.email, gina.first_name, gina.last_name) == ("gina@example.com", "Gina", "Ray")
    assert names(gina) == {"Everyone", "Operations", "pro-admins"} and user_role(gina) == "admin"
    assert not gina.has_usable_password()  # the directory checks her password, the platform keeps none
    assert SsoIdentity.objects.get(user=gina).subject == ldap_server.user_dn("gina").lower()

    ldap_server.set_groups("gina", [])  # the directory's admins take her out of its groups
    assert ticket(ldap_platform, "gina", "gina-Secret-pw-1").status_code == 201
    gina.refresh_from_db()
    assert names(gina) == {"Everyone"} and user_role(gina) == "user"
    assert SecurityEvent.objects.filter(kind="sso.groups", actor="gina").count() == 2

    ldap_server.set_password("gina", "gina-New-pw-2")  # changed in the directory: the old one stops at once
    assert ticket(ldap_platform, "gina", "gina-Secret-pw-1").status_code == 401
    assert ticket(ldap_platform, "gina", "gina-New-pw-2").status_code == 201


def test_a_directory_entry_does_not_take_over_a_local_account(ldap_platform, ldap_server, carol):
    ldap_server.add_user("carol", "other-Secret-pw-9", groups=["pro-admins"])
    assert ticket(ldap_platform, "carol", password("carol")).json()["username"] == "carol"  # the local one
    from_directory = ticket(ldap_platform, "carol", "other-Secret-pw-9")
    assert from_directory.status_code == 201 and from_directory.json()["username"] == "carol-2"
    carol.refresh_from_db()
    assert user_role(carol) == "user" and user_role(User.objects.get(username="carol-2")) == "admin"


def test_directory_logins_are_password_logins_for_the_lockout(ldap_platform, ldap_server):
    from django.conf import settings

    ldap_server.add_user("hank", "hank-Secret-pw-1")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        ticket(ldap_platform, "hank", "guess")
    assert ticket(ldap_platform, "hank", "hank-Secret-pw-1").status_code == 429
