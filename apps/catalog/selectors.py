"""Reads of the catalogue, always through the caller's access rights."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db.models import Q, QuerySet

from pro_portal.errors import NotFound

from .models import AccessLevel, App, AppVersion, Runtime, VerificationState


def apps_for_user(user: AbstractUser) -> QuerySet[App]:
    """The apps a user may see: owned, granted to them or to one of their groups; admins all."""
    apps = App.objects.select_related("latest_version", "owner")
    if user.is_superuser:
        return apps
    visible = Q(owner=user) | Q(grants__user=user) | Q(grants__group__in=user.groups.all())
    return apps.filter(pk__in=App.objects.filter(visible).values("pk"))


def app_access_level(user: AbstractUser, app: App) -> str | None:
    """``manager`` (admin or owner), ``collaborator``, ``viewer`` or ``None``."""
    if not user.is_authenticated:
        return None
    if user.is_superuser or (app.owner_id is not None and app.owner_id == user.pk):
        return "manager"
    levels = set(app.grants.filter(Q(user=user) | Q(group__in=user.groups.all())).values_list("level", flat=True))
    if AccessLevel.COLLABORATOR in levels:
        return AccessLevel.COLLABORATOR
    if AccessLevel.VIEWER in levels:
        return AccessLevel.VIEWER
    return None


def app_can_manage(user: AbstractUser, app: App) -> bool:
    return app_access_level(user, app) in ("manager", AccessLevel.COLLABORATOR)


def app_get_for_user(user: AbstractUser, name: str) -> App:
    """The app ``name`` if the user may see it; otherwise not found (never 'forbidden', which leaks)."""
    app = apps_for_user(user).filter(name=name).first()
    if app is None:
        raise NotFound(f"There is no app {name!r} you have access to.")
    return app


def versions_for_user(user: AbstractUser, app: App) -> list[AppVersion]:
    """The app's versions, newest first.

    Those who manage the app see them all; users see the verified versions that are not hidden.
    """
    versions = app.versions.select_related("runtime", "published_by")
    if not app_can_manage(user, app):
        versions = versions.filter(is_hidden=False, verification_state=VerificationState.VERIFIED)
    return sorted(versions, key=lambda v: v.sort_key, reverse=True)


def version_get_for_user(user: AbstractUser, app: App, version: str) -> AppVersion:
    for candidate in versions_for_user(user, app):
        if candidate.version == version:
            return candidate
    raise NotFound(f"App {app.name!r} has no version {version!r} you have access to.")


def version_resolve_for_user(user: AbstractUser, name: str, version: str = "latest") -> AppVersion:
    """The version a launch link names: ``latest`` or an exact version."""
    app = app_get_for_user(user, name)
    if version != "latest":
        return version_get_for_user(user, app, version)
    if app.latest_version is None:
        raise NotFound(f"App {name!r} has no version tagged latest.")
    latest = app.latest_version
    usable = not latest.is_hidden and latest.verification_state == VerificationState.VERIFIED
    if not usable and not app_can_manage(user, app):
        raise NotFound(f"App {name!r} has no usable version tagged latest.")
    return app.latest_version


def runtimes() -> QuerySet[Runtime]:
    return Runtime.objects.order_by("key")
