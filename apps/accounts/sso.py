"""Accounts of users who log in through an identity provider (single sign-on), and the mapping
of the provider's groups onto the platform's groups and roles at every login.

- A user is found by the provider's ``(issuer, subject)`` (:class:`~apps.accounts.models.SsoIdentity`),
  never by name or e-mail: a provider's user called ``admin`` does not become the local admin.
- Created at the first login, with the provider's ``preferred_username`` when it is free (else
  with a number after it) and no usable password: such a user logs in only through the
  provider, and makes API keys for scripts on the account page.
- At every login the user's platform groups become the provider's groups (renamed by
  ``PRO_SSO_GROUP_MAP``), plus Everyone: a user the provider took out of a group loses that
  group and the apps it granted. ``PRO_SSO_ADMIN_GROUPS`` / ``PRO_SSO_PUBLISHER_GROUPS`` make
  the role follow the provider too (a role without such a setting is left as the admins set it).
- The same holds for users of an LDAP directory (:mod:`apps.accounts.directory`), their
  identity being the directory's URL and their entry's DN.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from pro_portal.errors import ApplicationError

from .events import security_event
from .models import EVERYONE_GROUP, PUBLISHERS_GROUP, Role, SsoIdentity

MAX_GROUPS = 500  # a claim with more is cut: a provider's mistake must not create thousands of groups
USERNAME_CHARACTERS = re.compile(r"[^\w.@+-]")


class SsoRefused(ApplicationError):
    status = 403
    code = "sso_refused"


def provider_groups(claims: dict[str, Any]) -> list[str]:
    """The group names in the claim ``PRO_OIDC_GROUPS_CLAIM`` (a list, or one comma-separated text)."""
    value = claims.get(settings.PRO_OIDC_GROUPS_CLAIM) or []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    names = [str(name).strip()[:150] for name in value if str(name).strip()]
    return sorted(set(names))[:MAX_GROUPS]


def platform_group_names(groups: list[str]) -> set[str]:
    mapping = dict(item.split("=", 1) for item in settings.PRO_SSO_GROUP_MAP if "=" in item)
    names = {mapping.get(name, name).strip() for name in groups}
    return {name for name in names if name and name not in (EVERYONE_GROUP, PUBLISHERS_GROUP)}


@transaction.atomic
def sso_login(*, issuer: str, claims: dict[str, Any], request: Any = None) -> User:
    """The account of the provider's user ``claims["sub"]``, created at the first login, its
    groups and role brought in line with the claims."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise SsoRefused("The identity provider named no subject (sub) for this user.")
    identity = (
        SsoIdentity.objects.select_for_update().select_related("user").filter(issuer=issuer, subject=subject).first()
    )
    if identity is None:
        user = _create_user(claims)
        identity = SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        security_event("user.create", request=request, actor=user.username, target=f"user {user.username}", via="sso")
    user = identity.user
    if not user.is_active:
        raise SsoRefused("This account is deactivated on the platform.")
    email = str(claims.get("email") or "")[:254]
    if email and email != user.email:
        user.email = email
        user.save(update_fields=["email"])
    provider_groups_apply(identity=identity, groups=provider_groups(claims), request=request)
    return user


def provider_groups_apply(*, identity: SsoIdentity, groups: list[str], request: Any = None) -> None:
    """The user's platform groups and role as the provider's (or directory's) ``groups`` say."""
    _sync_groups(identity.user, groups, request)
    _sync_role(identity.user, groups, request)
    identity.groups, identity.last_login_at = groups, timezone.now()
    identity.save(update_fields=["groups", "last_login_at"])


def _create_user(claims: dict[str, Any]) -> User:
    email = str(claims.get("email") or "")
    user = User(username=free_username(str(claims.get("preferred_username") or email.split("@")[0] or claims["sub"])))
    user.email = email[:254]
    user.set_unusable_password()  # a provider's user has no password here, so no password login
    user.save()
    user.groups.add(Group.objects.get_or_create(name=EVERYONE_GROUP)[0])
    return user


def free_username(wanted: str) -> str:
    """``wanted`` as a user name, with a number after it when an account has it already."""
    base = USERNAME_CHARACTERS.sub("-", wanted)[:140] or "user"
    name, number = base, 1
    while User.objects.filter(username__iexact=name).exists():
        number += 1
        name = f"{base}-{number}"
    return name


def _sync_groups(user: User, groups: list[str], request: Any) -> None:
    wanted = platform_group_names(groups)
    current = set(user.groups.exclude(name__in=(EVERYONE_GROUP, PUBLISHERS_GROUP)).values_list("name", flat=True))
    added, removed = sorted(wanted - current), sorted(current - wanted)
    if removed:
        user.groups.remove(*Group.objects.filter(name__in=removed))
    for name in added:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    user.groups.add(Group.objects.get_or_create(name=EVERYONE_GROUP)[0])
    if added or removed:
        target = f"user {user.username}"
        security_event("sso.groups", request=request, actor=user.username, target=target, added=added, removed=removed)


def _sync_role(user: User, groups: list[str], request: Any) -> None:
    from .services import user_role, user_set_role

    before = user_role(user)
    admin = _member_of(groups, settings.PRO_SSO_ADMIN_GROUPS, before == Role.ADMIN)
    publisher = _member_of(groups, settings.PRO_SSO_PUBLISHER_GROUPS, before == Role.PUBLISHER)
    after = Role.ADMIN if admin else Role.PUBLISHER if publisher else Role.USER
    if after != before:
        user_set_role(user=user, role=after)
        target = f"user {user.username}"
        security_event("user.role", request=request, actor=user.username, target=target, role=after, via="sso")


def _member_of(groups: list[str], role_groups: list[str], otherwise: bool) -> bool:
    """Whether the provider's groups give a role; ``otherwise`` (as it is) where no setting says."""
    return bool(set(groups) & set(role_groups)) if role_groups else otherwise
