"""Publishing and managing apps: the only code that changes the catalogue."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django_q.tasks import async_task

from apps.accounts.events import security_event
from apps.accounts.models import SecurityOutcome
from apps.accounts.services import user_is_publisher
from pro_portal.errors import ApplicationError, Conflict, Forbidden, NotFound, TooLarge
from sessions.runtime import package
from sessions.runtime.manifest import Manifest

from .environments import environment_for
from .keys import platform_private_key
from .models import AccessLevel, App, AppGrant, AppVersion, Runtime, VerificationState
from .runtimes import runtime_resolve
from .selectors import app_can_manage, version_usage

logger = logging.getLogger(__name__)


class PackageRefused(ApplicationError):
    """A package failed validation; its ``code`` is the package error's code."""


# ---------------------------------------------------------------- publishing


def _refuse(exc: package.PackageError) -> ApplicationError:
    if exc.code == "too_large":
        return TooLarge(str(exc), code="too_large")
    return PackageRefused(str(exc), code=exc.code)


def package_validate(blob: bytes) -> tuple[Manifest, bytes]:
    """Decrypt and check a package without importing any of its code; return (manifest, archive)."""
    if len(blob) > settings.PRO_MAX_PACKAGE_BYTES:
        raise TooLarge(f"The package is {len(blob)} bytes, over the limit of {settings.PRO_MAX_PACKAGE_BYTES} bytes.")
    if not blob:
        raise PackageRefused(
            "The upload is empty: send an app package built with 'pro app pack'.", code="not_a_package"
        )
    limits = package.ArchiveLimits(
        max_entries=settings.PRO_MAX_PACKAGE_ENTRIES,
        max_uncompressed_bytes=settings.PRO_MAX_PACKAGE_UNPACKED_BYTES,
        max_ratio=settings.PRO_MAX_PACKAGE_RATIO,
    )
    try:
        archive = package.decrypt(blob, platform_private_key())
        manifest, _ = package.inspect_archive(archive, limits)
    except package.PackageError as exc:
        raise _refuse(exc) from None
    return manifest, archive


def _check_publish_rights(user: User, manifest: Manifest) -> tuple[App | None, Runtime]:
    if not user_is_publisher(user):
        raise Forbidden("Only publishers and admins can publish apps.")
    try:
        runtime = runtime_resolve(manifest.runtime)
    except ApplicationError as exc:
        raise PackageRefused(f"The package needs runtime {manifest.runtime!r}: {exc}", code="unknown_runtime") from None
    app = App.objects.filter(name=manifest.name).first()
    if app is not None:
        if not app_can_manage(user, app):
            raise Forbidden(
                f"App {app.name!r} exists and you do not manage it: ask its publisher to make you a collaborator."
            )
        if app.versions.filter(version=manifest.version).exists():
            raise Conflict(
                f"App {app.name!r} already has version {manifest.version}: raise the version number.",
                code="duplicate_version",
            )
    return app, runtime


def _store(path: str, content: bytes) -> str:
    return default_storage.save(path, ContentFile(content))


def app_publish(*, user: User, blob: bytes, make_latest: bool = True) -> AppVersion:
    """Validate an encrypted package and publish it as a new app or a new version of one.

    Every check runs before anything is stored: a refused package leaves nothing behind.
    A new version carries the app's grants (they belong to the app) and, with
    ``make_latest``, the ``latest`` tag.
    """
    try:
        if not user_is_publisher(user):  # before decrypting anything
            raise Forbidden("Only publishers and admins can publish apps.")
        manifest, archive = package_validate(blob)
        _check_publish_rights(user, manifest)
    except ApplicationError as exc:
        security_event(
            "package.upload", actor=user, outcome=SecurityOutcome.FAILURE, reason=exc.code, message=exc.message
        )
        raise
    icon = package.read_member(archive, manifest.icon) if manifest.icon else None
    stored: list[str] = []
    try:
        # The digest in the name keeps two racing uploads of one version from sharing a file.
        stem = f"{manifest.version}-{hashlib.sha256(blob).hexdigest()[:12]}"
        stored.append(_store(f"packages/{manifest.name}/{stem}.proapp", blob))
        if icon is not None:
            stored.append(_store(f"icons/{manifest.name}/{stem}{PurePosixPath(manifest.icon).suffix.lower()}", icon))
        version = _record_version(user, manifest, blob, stored, make_latest)
    except BaseException:
        for path in stored:
            default_storage.delete(path)
        raise
    version_verify_later(version)
    security_event(
        "package.upload", actor=user, target=f"app {manifest.name} {manifest.version}", sha256=version.package_sha256
    )
    logger.info("%s published %s %s", user.username, manifest.name, manifest.version)
    return version


def version_verify_later(version: AppVersion) -> None:
    """Queue the verification of a new version (:mod:`.verification`) once its row is committed."""
    transaction.on_commit(
        lambda: async_task("apps.catalog.tasks.verify_version", version.pk, task_name=f"verify {version}")
    )


@transaction.atomic
def _record_version(user: User, manifest: Manifest, blob: bytes, stored: list[str], make_latest: bool) -> AppVersion:
    # Checked again inside the transaction: two uploads of the same version may race.
    app, runtime = _check_publish_rights(user, manifest)
    is_new = app is None
    if app is None:
        app = App.objects.create(
            name=manifest.name,
            title=manifest.title,
            description=manifest.description,
            category=manifest.category,
            owner=user,
        )
    try:
        with transaction.atomic():
            version = AppVersion.objects.create(
                app=app,
                version=manifest.version,
                runtime=runtime,
                runtime_requested=manifest.runtime,
                environment=environment_for(runtime, manifest.requirements),
                manifest=manifest.to_dict(),
                package_path=stored[0],
                package_size=len(blob),
                package_sha256=hashlib.sha256(blob).hexdigest(),
                icon_path=stored[1] if len(stored) > 1 else "",
                published_by=user,
            )
    except IntegrityError:
        raise Conflict(
            f"App {manifest.name!r} already has version {manifest.version}.", code="duplicate_version"
        ) from None
    if is_new:
        app.latest_version = version
        app.icon_path = version.icon_path
        app.save()
    elif make_latest:
        # Users keep the current latest until the new version passes verification.
        version.becomes_latest = True
        version.save(update_fields=["becomes_latest"])
    return version


def version_promote(*, version: AppVersion) -> None:
    """A verified version that was published as latest takes the tag (and its app's details)."""
    if not version.becomes_latest:
        return
    manifest = version.manifest
    App.objects.filter(pk=version.app_id).update(
        latest_version=version,
        title=manifest.get("title", version.app.title),
        description=manifest.get("description", ""),
        category=manifest.get("category") or "General",
        icon_path=version.icon_path,
    )
    AppVersion.objects.filter(pk=version.pk).update(becomes_latest=False)


# ---------------------------------------------------------------- managing


def app_require_manager(user: User, app: App) -> None:
    if not app_can_manage(user, app):
        raise Forbidden(f"You do not manage app {app.name!r}.")


def app_update(
    *,
    user: User,
    app: App,
    title: str | None = None,
    description: str | None = None,
    category: str | None = None,
    network: dict | None = None,
) -> App:
    app_require_manager(user, app)
    if network is not None:
        app_set_network(user=user, app=app, outbound=network["outbound"], targets=network["targets"])
    fields = {"title": title, "description": description, "category": category}
    changed = {name: value.strip() for name, value in fields.items() if value is not None}
    for name, value in changed.items():
        setattr(app, name, value)
    if category is not None and not app.category:
        raise ApplicationError("The category cannot be empty.", code="invalid")
    if changed:
        app.save(update_fields=[*changed, "updated_at"])
    return app


MAX_NETWORK_TARGETS = 32
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def network_target_parse(raw: str) -> str:
    """``host:port`` (``[v6]:port`` for IPv6) checked and normalised, or a clear error."""
    host, sep, port = str(raw).strip().rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        number = 0
    if not sep or not 0 < number < 65536:
        raise ApplicationError(f"{raw!r} is not host:port with a port from 1 to 65535.", code="invalid")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if not HOST_NAME.match(bare):
            raise ApplicationError(f"{raw!r} does not name a host.", code="invalid") from None
        return f"{bare.lower()}:{number}"
    return f"[{address}]:{number}" if address.version == 6 else f"{address}:{number}"


def app_set_network(*, user: User, app: App, outbound: bool, targets: list[str]) -> App:
    """Grant (or take back) what the app's sandboxes may reach; admins only, a security event."""
    if not user.is_superuser:
        raise Forbidden("Only admins grant an app network access.")
    if len(targets) > MAX_NETWORK_TARGETS:
        raise ApplicationError(f"At most {MAX_NETWORK_TARGETS} network targets per app.", code="invalid")
    parsed = list(dict.fromkeys(network_target_parse(target) for target in targets))
    app.network_outbound, app.network_targets = bool(outbound), parsed
    app.save(update_fields=["network_outbound", "network_targets", "updated_at"])
    security_event("app.network", actor=user, target=f"app {app.name}", outbound=bool(outbound), targets=parsed)
    return app


@transaction.atomic
def app_set_latest(*, user: User, version: AppVersion) -> App:
    """Move the app's ``latest`` tag to ``version`` (exactly one version carries it)."""
    app = App.objects.select_for_update().get(pk=version.app_id)
    app_require_manager(user, app)
    if version.is_hidden:
        raise Conflict(
            f"Version {version.version} is hidden: unhide it before tagging it latest.", code="version_hidden"
        )
    if version.verification_state != VerificationState.VERIFIED:
        raise Conflict(
            f"Version {version.version} is not verified: it cannot carry the latest tag.", code="not_verified"
        )
    app.latest_version = version
    app.icon_path = version.icon_path
    app.save(update_fields=["latest_version", "icon_path", "updated_at"])
    return app


def version_set_hidden(*, user: User, version: AppVersion, hidden: bool) -> AppVersion:
    app_require_manager(user, version.app)
    if hidden and version.is_latest:
        raise Conflict(
            f"Version {version.version} carries the latest tag: move the tag before hiding it.",
            code="version_is_latest",
        )
    version.is_hidden = hidden
    version.save(update_fields=["is_hidden"])
    return version


def _delete_files(paths: list[str]) -> None:
    for path in paths:
        if path:
            try:
                default_storage.delete(path)
            except OSError:
                logger.warning("Could not delete %s from storage", path, exc_info=True)


def _still_referenced(what: str, exc: ProtectedError) -> Conflict:
    """Finished jobs and closed data sessions keep their version (their records name it) until they go."""
    counts = Counter(obj._meta for obj in exc.protected_objects)
    kinds = [f"{n} {meta.verbose_name if n == 1 else meta.verbose_name_plural}" for meta, n in counts.items()]
    return Conflict(
        f"{what} cannot be deleted: the records of {', '.join(kinds)} still name it.", code="version_in_use"
    )


def version_delete(*, user: User, version: AppVersion) -> None:
    """Delete a version and its package; refused while anything uses it."""
    app_require_manager(user, version.app)
    reasons = version_usage(version)
    if reasons:
        raise Conflict(f"Version {version.version} cannot be deleted: {'; '.join(reasons)}.", code="version_in_use")
    paths = [version.package_path, version.icon_path]
    try:
        with transaction.atomic():
            version.delete()
    except ProtectedError as exc:
        raise _still_referenced(f"Version {version.version}", exc) from None
    transaction.on_commit(lambda: _delete_files(paths))


def app_delete(*, user: User, app: App) -> None:
    """Delete an app with all its versions; refused while work uses any of them."""
    app_require_manager(user, app)
    for version in app.versions.all():
        reasons = [r for r in version_usage(version) if r != "it carries the latest tag"]
        if reasons:
            raise Conflict(f"Version {version.version} is in use: {'; '.join(reasons)}.", code="version_in_use")
    paths = [path for row in app.versions.values_list("package_path", "icon_path") for path in row]
    try:
        with transaction.atomic():
            app.delete()
    except ProtectedError as exc:
        raise _still_referenced(f"App {app.name}", exc) from None
    transaction.on_commit(lambda: _delete_files(paths))


# ---------------------------------------------------------------- access


def grant_access(*, user: User, app: App, level: str, username: str = "", group_name: str = "") -> AppGrant:
    """Grant a user or a group access to an app (or change the level of an existing grant)."""
    app_require_manager(user, app)
    if level not in AccessLevel.values:
        raise ApplicationError(f"The level must be one of {', '.join(AccessLevel.values)}.", code="invalid")
    if bool(username) == bool(group_name):
        raise ApplicationError("Grant access to exactly one user or one group.", code="invalid")
    if username:
        grantee = get_user_model().objects.filter(username=username).first()
        if grantee is None:
            raise NotFound(f"There is no user {username!r}.")
        lookup: dict[str, Any] = {"user": grantee}
    else:
        group = Group.objects.filter(name=group_name).first()
        if group is None:
            raise NotFound(f"There is no group {group_name!r}.")
        lookup = {"group": group}
    grant, _ = AppGrant.objects.update_or_create(app=app, **lookup, defaults={"level": level, "granted_by": user})
    security_event("grant.add", actor=user, target=f"app {app.name} to {grant.grantee_label}", level=level)
    return grant


def grant_revoke(*, user: User, app: App, grant_id: int) -> None:
    app_require_manager(user, app)
    grant = AppGrant.objects.filter(app=app, pk=grant_id).select_related("user", "group").first()
    if grant is None:
        raise NotFound(f"App {app.name!r} has no grant {grant_id}.")
    grant.delete()
    security_event("grant.revoke", actor=user, target=f"app {app.name} from {grant.grantee_label}")
