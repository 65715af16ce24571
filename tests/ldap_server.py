"""A real LDAP directory for the tests: OpenLDAP's slapd on a free port of 127.0.0.1.

``ldap_server`` (fixture) starts a slapd of its own for each test, from a configuration written
into the test's temporary folder (the system's slapd, /etc/ldap/slapd.d and its database are
never touched), with ``dc=example,dc=com``, ``ou=people`` and ``ou=groups`` in it, and stops it
after the test. It takes about 0.1 s, so every test gets an empty directory.

Users are ``inetOrgPerson`` entries (``uid=...,ou=people,...``) with a ``userPassword``; groups
are ``groupOfNames`` entries (``cn=...,ou=groups,...``) whose ``member`` values are user DNs. The
``memberof`` overlay keeps each user's ``memberOf`` (an operational attribute: ask for it by
name), as Active Directory does. Anonymous clients may bind but read nothing, as in Active
Directory: a search needs a bind, as the admin (``bind_dn``, the service account) or as a user.

The directory is changed with ldap-utils' command-line tools, never with python-ldap, so that
the harness does not depend on the code under test. Needs the Debian packages slapd and ldap-utils.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.live import START_TIMEOUT, free_port, start_group, stop_group

SUFFIX = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-Secret-pw-1"

CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof

database mdb
suffix "{suffix}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory "{directory}"
# The memory map's size; mdb maps (not allocates) it, and 10 MB is plenty for a test.
maxsize 10485760
# No fsync on each write: a test's directory need not survive a crash, and its writes get quicker.
dbnosync
overlay memberof

# The admin (rootdn) passes every rule. Passwords: checked on bind, changed by their owner.
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by users read
    by anonymous auth
"""

BASE_ENTRIES = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups
"""

# A ~/.ldaprc or $LDAPRC of whoever runs the tests must not add a base, a bind DN or TLS options.
TOOL_ENV = {**os.environ, "LDAPNOINIT": "1"}


def attribute(name: str, value: str) -> str:
    """An LDIF line; in base64 (``name:: ...``) when the value is not a plain LDIF string (RFC 2849)."""
    if value.isascii() and value.isprintable() and value[:1] not in (" ", ":", "<") and not value.endswith(" "):
        return f"{name}: {value}\n"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}\n"


def parse_ldif(text: str) -> list[dict[str, list[str]]]:
    """The entries of ``ldapsearch -LLL -o ldif-wrap=no`` output: attribute name -> values, ``dn`` included."""
    entries = []
    for record in text.strip().split("\n\n"):
        entry: dict[str, list[str]] = {}
        for line in record.splitlines():
            if not line or line.startswith("#"):
                continue
            name, value = line.split(":", 1)
            value = base64.b64decode(value[1:]).decode() if value.startswith(":") else value.lstrip(" ")
            entry.setdefault(name, []).append(value)
        if entry:
            entries.append(entry)
    return entries


@dataclass
class LdapServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    base_dn: str = SUFFIX
    bind_dn: str = ADMIN_DN
    bind_password: str = ADMIN_PASSWORD
    people_dn: str = f"ou=people,{SUFFIX}"
    groups_dn: str = f"ou=groups,{SUFFIX}"

    # Names (uids, group names) go into DNs as they are: no DN special characters (,+"\<>;=) in them.

    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{self.people_dn}"

    def group_dn(self, group: str) -> str:
        return f"cn={group},{self.groups_dn}"

    def add_user(self, uid: str, password: str, groups: Iterable[str] = (), mail: str = "", name: str = "") -> str:
        """Add a user who can bind with ``password``, in ``groups``; return its DN.

        ``name`` "Ada Lovelace" gives cn "Ada Lovelace", givenName "Ada", sn "Lovelace"; without
        a name, cn and sn are the uid (inetOrgPerson requires both).
        """
        first, _, last = name.rpartition(" ")
        ldif = f"dn: {self.user_dn(uid)}\nobjectClass: inetOrgPerson\n"
        ldif += attribute("uid", uid) + attribute("cn", name or uid) + attribute("sn", last or uid)
        ldif += attribute("givenName", first) if first else ""
        ldif += attribute("mail", mail) if mail else ""
        ldif += attribute("userPassword", password)
        self.ldap("ldapadd", ldif)
        if groups:
            self.set_groups(uid, groups)
        return self.user_dn(uid)

    def set_groups(self, uid: str, groups: Iterable[str]) -> None:
        """Make the user a member of exactly ``groups``: a group is created on its first member
        and deleted when its last member leaves (a groupOfNames cannot be without members)."""
        dn, wanted = self.user_dn(uid), set(groups)
        ldif = ""
        for group, members in self.groups().items():
            if group in wanted:
                wanted.discard(group)
                if dn not in members:
                    ldif += f"dn: {self.group_dn(group)}\nchangetype: modify\nadd: member\nmember: {dn}\n-\n\n"
            elif members == [dn]:
                ldif += f"dn: {self.group_dn(group)}\nchangetype: delete\n\n"
            elif dn in members:
                ldif += f"dn: {self.group_dn(group)}\nchangetype: modify\ndelete: member\nmember: {dn}\n-\n\n"
        for group in sorted(wanted):
            ldif += f"dn: {self.group_dn(group)}\nchangetype: add\nobjectClass: groupOfNames\n"
            ldif += attribute("cn", group) + f"member: {dn}\n\n"
        if ldif:
            self.ldap("ldapmodify", ldif)

    def set_password(self, uid: str, password: str) -> None:
        ldif = f"dn: {self.user_dn(uid)}\nchangetype: modify\nreplace: userPassword\n"
        self.ldap("ldapmodify", ldif + attribute("userPassword", password) + "-\n")

    def delete_user(self, uid: str) -> None:
        """Delete the user, and its memberships first (a deleted DN must not stay a member)."""
        self.set_groups(uid, ())
        self.ldap("ldapdelete", "", self.user_dn(uid))

    def groups(self) -> dict[str, list[str]]:
        """Every group: its name -> its members' DNs."""
        found = self.search(self.groups_dn, "(objectClass=groupOfNames)", "cn", "member")
        return {entry["cn"][0]: entry["member"] for entry in found}

    def search(self, base: str, filter: str = "(objectClass=*)", *attributes: str) -> list[dict[str, list[str]]]:  # noqa: A002 - LDAP's word
        """Entries under ``base`` (as the admin), parsed: attribute name -> values, ``dn`` included."""
        return parse_ldif(self.ldap("ldapsearch", None, "-LLL", "-o", "ldif-wrap=no", "-b", base, filter, *attributes))

    def ldap(self, tool: str, ldif: str | None, *args: str) -> str:
        """Run one of ldap-utils' tools as the admin, with ``ldif`` on its standard input; its output."""
        command = [tool, "-x", "-H", self.url, "-D", self.bind_dn, "-w", self.bind_password, *args]
        done = subprocess.run(command, input=ldif, capture_output=True, text=True, env=TOOL_ENV, timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{ldif or ''}")
        return done.stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_slapd(folder: Path) -> LdapServer:
    """slapd on a free port of 127.0.0.1 with its configuration, database and log in ``folder``,
    answering and with the base entries in it; stop it with ``stop_group(server.process)``."""
    port = free_port()
    (folder / "db").mkdir(parents=True)
    config = CONFIG.format(suffix=SUFFIX, admin_dn=ADMIN_DN, admin_password=ADMIN_PASSWORD, directory=folder / "db")
    (folder / "slapd.conf").write_text(config)
    url = f"ldap://127.0.0.1:{port}"
    # -d keeps slapd in the foreground (a child we can stop) and logs each operation to its output.
    # Without -u/-g it keeps our user (root or not), who owns the folder; nothing needs the openldap user.
    # prlimit: slapd sizes its connection table by the open-files limit, and a container's limit
    # (up to 2^30) would cost it gigabytes.
    command = ["prlimit", "--nofile=1024", "/usr/sbin/slapd", "-d", "stats", "-f", "slapd.conf", "-h", f"{url}/"]
    process = start_group(command, TOOL_ENV, folder / "slapd.log", cwd=folder)
    server = LdapServer(url=url, process=process, log_path=folder / "slapd.log")

    def answers() -> bool:
        whoami = ["ldapwhoami", "-x", "-H", url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD]
        return subprocess.run(whoami, capture_output=True, env=TOOL_ENV, timeout=10).returncode == 0

    try:
        up = wait_until(lambda: process.poll() is not None or answers(), START_TIMEOUT, interval=0.02)
        if not up or process.poll() is not None:
            raise AssertionError(f"slapd did not start (exit code {process.poll()}):\n{server.log()[-3000:]}")
        server.ldap("ldapadd", BASE_ENTRIES)
    except BaseException:
        stop_group(process)
        raise
    return server


@pytest.fixture(name="ldap_server")  # the function's own name differs, so modules that import it pass lint (F811)
def ldap_server_fixture(tmp_path) -> Iterator[LdapServer]:
    """A slapd of this test's own, empty but for the base entries; stopped after the test."""
    server = start_slapd(tmp_path / "slapd")
    try:
        yield server
    finally:
        stop_group(server.process)
        print(f"---- slapd log ({server.log_path}) ----\n{server.log()[-5000:]}")
