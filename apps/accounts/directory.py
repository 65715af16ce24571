"""LDAP / Active Directory login (django-auth-ldap): the user's password checked by a bind to the
directory, the user's directory groups mapped onto platform groups and roles at every login,
as for single sign-on (:mod:`apps.accounts.sso`).

Configured by ``PRO_LDAP_URL`` and the ``PRO_LDAP_*`` settings (pro_portal/settings.py); such a
login is a password login, so the lockout rules and two-factor login hold for it as for a local
account. A directory user is known by the directory's URL and the entry's DN, not by name: a
directory entry called ``admin`` does not log in as the platform's local ``admin`` (it gets an
account of its own, ``admin-2``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django_auth_ldap.backend import LDAPBackend

from .events import security_event
from .models import SsoIdentity
from .sso import free_username, provider_groups_apply


class DirectoryBackend(LDAPBackend):
    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[User, bool]:
        identity = _identity_of(ldap_user.dn)
        if identity is not None:
            return identity.user, False
        return User(username=free_username(username)), True

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> User | None:
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None or not user.is_active:
            return None
        directory_login(user=user, dn=ldap_user.dn, groups=sorted(ldap_user.group_names))
        return user


def _identity_of(dn: str) -> SsoIdentity | None:
    return (
        SsoIdentity.objects.select_related("user")
        .filter(issuer=settings.AUTH_LDAP_SERVER_URI, subject=dn.lower())
        .first()
    )


@transaction.atomic
def directory_login(*, user: User, dn: str, groups: list[str]) -> None:
    """Record the directory entry of ``user`` (at its first login) and map its groups."""
    identity, created = SsoIdentity.objects.get_or_create(
        issuer=settings.AUTH_LDAP_SERVER_URI, subject=dn.lower(), defaults={"user": user}
    )
    if created:
        security_event("user.create", actor=user.username, target=f"user {user.username}", via="ldap")
    provider_groups_apply(identity=identity, groups=groups)
