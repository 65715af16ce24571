"""Reads of the catalogue, always through the caller's access rights."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import Case, CharField, Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Value, When
from django.db.models.fields.json import KeyTransform

from pro_portal.errors import Forbidden, NotFound
from pro_portal.prepared import PreparedQuery

from .models import MANAGER_ACCESS, AccessLevel, App, AppGrant, AppVersion, Environment, Runtime, VerificationState

WHEELHOUSE = "wheelhouse"  # the storage folder of the wheels admins uploaded


def apps_for_user(user: User) -> QuerySet[App]:
    """The apps a user may see: owned, granted to them or to one of their groups; admins all.

    Each app carries the user's access to it, read in the same query: ``app_access_level`` and
    ``app_can_manage`` then ask nothing more of the database for these apps.
    """
    apps = App.objects.select_related("latest_version", "owner").annotate(
        access_user_id=Value(user.pk, output_field=IntegerField()), access_level=_access_level(user)
    )
    if user.is_superuser:
        return apps
    visible = Q(owner=user) | Q(grants__user=user) | Q(grants__group__in=user.groups.all())
    return apps.filter(pk__in=App.objects.filter(visible).values("pk"))


def _access_level(user: User) -> Case | Value:
    """What ``app_access_level`` answers, as an expression over an app row (for ``apps_for_user``)."""
    if user.is_superuser:
        return Value(MANAGER_ACCESS, output_field=CharField())
    grants = AppGrant.objects.filter(app=OuterRef("pk")).filter(Q(user=user) | Q(group__in=user.groups.all()))
    return Case(
        When(owner=user, then=Value(MANAGER_ACCESS)),
        When(Exists(grants.filter(level=AccessLevel.COLLABORATOR)), then=Value(AccessLevel.COLLABORATOR.value)),
        When(Exists(grants.filter(level=AccessLevel.VIEWER)), then=Value(AccessLevel.VIEWER.value)),
        default=None,
        output_field=CharField(),
    )


def app_access_level(user: User, app: App) -> str | None:
    """``manager`` (admin or owner), ``collaborator``, ``viewer`` or ``None``."""
    if not user.is_authenticated:
        return None
    if getattr(app, "access_user_id", None) == user.pk:  # read along by apps_for_user(user)
        return getattr(app, "access_level", None)
    if user.is_superuser or (app.owner_id is not None and app.owner_id == user.pk):
        return MANAGER_ACCESS
    levels = set(app.grants.filter(Q(user=user) | Q(group__in=user.groups.all())).values_list("level", flat=True))
    if AccessLevel.COLLABORATOR in levels:
        return AccessLevel.COLLABORATOR
    if AccessLevel.VIEWER in levels:
        return AccessLevel.VIEWER
    return None


def app_can_manage(user: User, app: App) -> bool:
    return app_access_level(user, app) in (MANAGER_ACCESS, AccessLevel.COLLABORATOR)


def app_get_for_user(user: User, name: str) -> App:
    """The app ``name`` if the user may see it; otherwise not found (never 'forbidden', which leaks)."""
    app = apps_for_user(user).filter(name=name).first()
    if app is None:
        raise NotFound(f"There is no app {name!r} you have access to.")
    return app


# What a version is shown with: read along with it.
VERSION_RELATIONS = ("runtime", "published_by", "environment")
LIST_DEFERRED = (
    "runtime__lock",
    "runtime__packages",
    "runtime__description",
    "environment__build_log",
    "environment__preload",
)


def with_versions(apps: QuerySet[App]) -> QuerySet[App]:
    """``apps`` with every version of each read along, in one more query for all of them.

    ``versions_for_user`` then picks each app's versions from these instead of asking.
    """
    # What the lists show of a version's runtime and environment, without their lock files,
    # package lists and build logs (a list would read and parse them for every version).
    every = AppVersion.objects.select_related(*VERSION_RELATIONS).defer(*LIST_DEFERRED)
    return apps.prefetch_related(Prefetch("versions", queryset=every, to_attr="every_version"))


def _stand_in(admin: bool, user_id: int) -> User:
    """A user of that id and rank, for building a prepared query (nothing of it is saved)."""
    return User(pk=user_id, is_superuser=admin)


def _visible_versions(admin: bool, user_id: int) -> QuerySet[AppVersion]:
    # Of the manifest only what a list shows (VersionOut): not the identifiers and their data.
    interface = KeyTransform("interface", "manifest")
    every = (
        AppVersion.objects.select_related(*VERSION_RELATIONS)
        .defer("manifest", *LIST_DEFERRED)
        .annotate(
            listed_pages=KeyTransform("pages", interface), listed_procedures=KeyTransform("procedures", interface)
        )
    )
    return every if admin else every.filter(app__in=apps_for_user(_stand_in(admin, user_id)).values("pk"))


# The app list, which every catalogue page and script reads: both of its queries compiled once.
_APPS_OF_USER: PreparedQuery[App] = PreparedQuery(
    lambda admin, user_id: apps_for_user(_stand_in(admin, user_id)), "user_id"
)
_VERSIONS_OF_USER: PreparedQuery[AppVersion] = PreparedQuery(_visible_versions, "user_id")


def app_list_for_user(user: User) -> list[App]:
    """What ``with_versions(apps_for_user(user))`` reads, in two prepared queries."""
    apps = _APPS_OF_USER.fetch(user.is_superuser, user_id=user.pk)
    by_app: dict[int, App] = {app.pk: app for app in apps}
    for app in apps:
        app.every_version = []  # type: ignore[attr-defined]
    for version in _VERSIONS_OF_USER.fetch(user.is_superuser, user_id=user.pk):
        owner = by_app.get(version.app_id)
        if owner is not None:
            version.app = owner
            owner.every_version.append(version)  # type: ignore[attr-defined]
    return apps


def versions_for_user(user: User, app: App) -> list[AppVersion]:
    """The app's versions, newest first.

    Those who manage the app see them all; users see the verified versions that are not hidden.
    """
    every: Iterable[AppVersion] | None = getattr(app, "every_version", None)  # read along by with_versions
    if every is None:
        every = app.versions.select_related(*VERSION_RELATIONS)
    if not app_can_manage(user, app):
        every = [v for v in every if not v.is_hidden and v.verification_state == VerificationState.VERIFIED]
    return sorted(every, key=lambda v: v.sort_key, reverse=True)


def catalogue_for_user(user: User) -> list[tuple[App, list[AppVersion]]]:
    """The apps a user may see that have a version they may use, with those versions, by category and title."""
    listed = []
    for app in sorted(app_list_for_user(user), key=lambda app: (app.category.casefold(), app.title.casefold())):
        versions = versions_for_user(user, app)
        if versions:
            listed.append((app, versions))
    return listed


def version_get_for_user(user: User, app: App, version: str) -> AppVersion:
    for candidate in versions_for_user(user, app):
        if candidate.version == version:
            return candidate
    raise NotFound(f"App {app.name!r} has no version {version!r} you have access to.")


def version_resolve_for_user(user: User, name: str, version: str = "latest") -> AppVersion:
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


def version_interface(version: AppVersion) -> dict:
    """What a version declares, from its manifest: its identifiers and procedures by name, and its
    pages, each widget with the identifier or procedure it shows (``item``)."""
    interface = version.manifest.get("interface", {})
    identifiers = {item["name"]: item for item in interface.get("identifiers", [])}
    procedures = {item["name"]: item for item in interface.get("procedures", [])}
    pages = []
    for page in interface.get("pages", []):
        widgets = [
            {**w, "item": identifiers.get(w["target"]) or procedures.get(w["target"], {})}
            for w in page.get("widgets", [])
        ]
        pages.append({"title": page.get("title", ""), "widgets": widgets})
    return {"pages": pages, "identifiers": identifiers.values(), "procedures": procedures.values()}


def app_icon_open(app: App) -> File:
    """The app's icon, opened from storage."""
    if not app.icon_path:
        raise NotFound(f"App {app.name!r} has no icon.")
    return default_storage.open(app.icon_path)


def runtimes() -> QuerySet[Runtime]:
    """Every runtime, with how many app versions use each."""
    return Runtime.objects.annotate(app_version_count=Count("app_versions")).order_by("name", "-created_at")


def runtime_detail(user: User, key: str) -> Runtime:
    """A runtime with its environments and the versions using them (admins only)."""
    if not user.is_superuser:
        raise Forbidden("Only admins see a runtime's details.")
    runtime = (
        runtimes()
        .prefetch_related(
            Prefetch("app_versions", queryset=_versions_with_app()),
            Prefetch("environments__app_versions", queryset=_versions_with_app()),
        )
        .filter(key=key)
        .first()
    )
    if runtime is None:
        raise NotFound(f"There is no runtime {key!r}.")
    return runtime


def environments(user: User) -> QuerySet[Environment]:
    if not user.is_superuser:
        raise Forbidden("Only admins see the app environments.")
    return (
        Environment.objects.select_related("runtime")
        .prefetch_related(Prefetch("app_versions", queryset=_versions_with_app()))
        .order_by("-created_at")
    )


def _versions_with_app() -> QuerySet[AppVersion]:
    """App versions with their apps, for lists that name them (``demo 1.0.0``)."""
    return AppVersion.objects.select_related("app")


def wheelhouse_files(user: User) -> list[dict]:
    if not user.is_superuser:
        raise Forbidden("Only admins see the wheelhouse.")
    if not default_storage.exists(WHEELHOUSE):
        return []
    names = sorted(default_storage.listdir(WHEELHOUSE)[1])
    return [{"name": name, "size": default_storage.size(f"{WHEELHOUSE}/{name}")} for name in names]


def grants_of(app: App) -> QuerySet[AppGrant]:
    """Who has access to the app, with the users and groups (and who granted it) read along."""
    return app.grants.select_related("user", "group", "granted_by")


def version_unfinished_jobs(version: AppVersion) -> int:
    """How many of the version's jobs are queued or running.

    Jobs belong to the sessions app, which builds on the catalogue: they are reached through the
    reverse relation ``version.jobs`` and judged by the Job model's own ``is_finished``, so the
    catalogue imports nothing of sessions. One query, grouped by state.
    """
    job_model = version.jobs.model
    by_state = version.jobs.order_by().values_list("state").annotate(count=Count("pk"))
    return sum(count for state, count in by_state if not job_model(state=state).is_finished)


def version_usage(version: AppVersion) -> list[str]:
    """Why a version cannot be deleted now (empty when nothing uses it)."""
    reasons = []
    if version.is_latest:
        reasons.append("it carries the latest tag")
    active = version_unfinished_jobs(version)
    if active:
        reasons.append(f"{active} queued or running job{'s' if active > 1 else ''} use{'' if active > 1 else 's'} it")
    return reasons
