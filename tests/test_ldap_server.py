"""The LDAP test directory itself (tests/ldap_server.py), checked with ldap-utils and python-ldap."""

from __future__ import annotations

import subprocess
import time

import ldap
import pytest

from tests.ldap_server import TOOL_ENV, LdapServer, ldap_server_fixture, start_slapd  # noqa: F401 - the fixture ldap_server
from tests.live import stop_group

pytestmark = pytest.mark.live


def whoami(server: LdapServer, dn: str, password: str) -> subprocess.CompletedProcess:
    command = ["ldapwhoami", "-x", "-H", server.url, "-D", dn, "-w", password]
    return subprocess.run(command, capture_output=True, text=True, env=TOOL_ENV, timeout=10)


def test_a_user_binds_with_its_password_only(ldap_server):
    dn = ldap_server.add_user("ada", "ada-Secret-pw-1", mail="ada@example.com", name="Ada Lovelace")
    assert dn == "uid=ada,ou=people,dc=example,dc=com"
    assert whoami(ldap_server, dn, "ada-Secret-pw-1").stdout.strip() == f"dn:{dn}"
    wrong = whoami(ldap_server, dn, "wrong")
    assert wrong.returncode == 49, wrong.stderr  # invalidCredentials
    [entry] = ldap_server.search(dn)
    assert entry["mail"] == ["ada@example.com"]
    assert (entry["cn"], entry["givenName"], entry["sn"]) == (["Ada Lovelace"], ["Ada"], ["Lovelace"])

    ldap_server.set_password("ada", " new: pw é ")  # base64 in the LDIF
    assert ldap_server.search(dn, "(objectClass=*)", "userPassword")[0]["userPassword"] == [" new: pw é "]
    assert whoami(ldap_server, dn, " new: pw é ").returncode == 0
    assert whoami(ldap_server, dn, "ada-Secret-pw-1").returncode == 49

    ldap_server.delete_user("ada")
    assert whoami(ldap_server, dn, " new: pw é ").returncode == 49
    assert ldap_server.search(ldap_server.people_dn, "(uid=ada)") == []


def test_groups_follow_set_groups(ldap_server):
    ada = ldap_server.add_user("ada", "ada-pw", groups=["staff", "admins"])
    bob = ldap_server.add_user("bob", "bob-pw", groups=["staff"])
    assert ldap_server.groups() == {"staff": [ada, bob], "admins": [ada]}

    # What a client sees with ldapsearch, bound as a user: the groups' member values.
    command = ["ldapsearch", "-x", "-LLL", "-H", ldap_server.url, "-D", bob, "-w", "bob-pw"]
    command += ["-b", ldap_server.groups_dn, f"(member={ada})", "cn"]
    found = subprocess.run(command, capture_output=True, text=True, env=TOOL_ENV, timeout=10, check=True).stdout
    assert sorted(line for line in found.splitlines() if line.startswith("cn:")) == ["cn: admins", "cn: staff"]

    ldap_server.set_groups("ada", ["staff", "auditors"])  # leaves admins, its last member: admins goes
    assert ldap_server.groups() == {"staff": [ada, bob], "auditors": [ada]}
    [entry] = ldap_server.search(ada, "(objectClass=*)", "memberOf")
    assert sorted(entry["memberOf"]) == [
        "cn=auditors,ou=groups,dc=example,dc=com",
        "cn=staff,ou=groups,dc=example,dc=com",
    ]

    ldap_server.set_groups("ada", [])
    ldap_server.delete_user("bob")
    assert ldap_server.groups() == {}


def test_python_ldap_binds_as_a_user_and_anonymous_reads_nothing(ldap_server):
    dn = ldap_server.add_user("ada", "ada-pw", groups=["staff"])
    client = ldap.initialize(ldap_server.url)
    client.simple_bind_s(dn, "ada-pw")
    assert client.whoami_s() == f"dn:{dn}"
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        ldap.initialize(ldap_server.url).simple_bind_s(dn, "wrong")

    with pytest.raises(ldap.INSUFFICIENT_ACCESS):  # as Active Directory, a search needs a bind
        ldap.initialize(ldap_server.url).search_s(ldap_server.people_dn, ldap.SCOPE_SUBTREE, "(uid=ada)")
    service = ldap.initialize(ldap_server.url)
    service.simple_bind_s(ldap_server.bind_dn, ldap_server.bind_password)
    [(found, attrs)] = service.search_s(ldap_server.people_dn, ldap.SCOPE_SUBTREE, "(uid=ada)", ["memberOf"])
    assert (found, attrs["memberOf"]) == (dn, [b"cn=staff,ou=groups,dc=example,dc=com"])


def test_start_up_is_quick_and_stop_is_clean(tmp_path):
    started = time.monotonic()
    server = start_slapd(tmp_path / "slapd")
    took = time.monotonic() - started
    assert took < 2, f"slapd took {took:.2f}s to start"
    assert stop_group(server.process), "slapd did not stop on SIGTERM"
