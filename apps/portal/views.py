"""The pages users click through. Each view parses, calls a service or selector, renders."""

from __future__ import annotations

import posixpath
from collections import OrderedDict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.services import user_is_publisher
from apps.catalog import selectors as catalog
from apps.catalog import services as publishing
from apps.catalog.keys import platform_key_id
from apps.catalog.models import AccessLevel
from apps.cluster import selectors as cluster
from apps.storage import services as storage
from pro_portal.errors import ApplicationError, Forbidden, NotFound
from pro_portal.streaming import file_download
from pro_portal.uploads import read_uploaded_bytes
from sessions.selectors import live_sessions_by_app


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and the launcher: the database answers."""
    cluster.database_answers()
    return JsonResponse({"status": "ok", "node": settings.PRO_NODE_NAME})


@login_required
def catalogue(request: HttpRequest) -> HttpResponse:
    grouped: OrderedDict[str, list] = OrderedDict()
    live = live_sessions_by_app(request.user)
    for app, versions in catalog.catalogue_for_user(request.user):
        grouped.setdefault(app.category, []).append(
            {"app": app, "versions": versions, "live_session": live.get(app.pk)}
        )
    return render(request, "portal/catalogue.html", {"categories": grouped})


@login_required
def app_detail(request: HttpRequest, name: str) -> HttpResponse:
    app = catalog.app_get_for_user(request.user, name)
    can_manage = catalog.app_can_manage(request.user, app)
    context = {
        "app": app,
        "versions": catalog.versions_for_user(request.user, app),
        "can_manage": can_manage,
        "access": catalog.app_access_level(request.user, app),
        "grants": catalog.grants_of(app) if can_manage else [],
        "levels": AccessLevel.choices,
    }
    return render(request, "portal/app_detail.html", context)


@login_required
@require_http_methods(["POST"])
def app_manage(request: HttpRequest, name: str) -> HttpResponse:
    """Every change a manager makes on the app page: one action per form."""
    app = catalog.app_get_for_user(request.user, name)
    try:
        message = _manage_action(request, app)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, message)
        if request.POST.get("action") == "delete-app":
            return redirect("portal:catalogue")
    return redirect("portal:app", name=name)


def _manage_action(request: HttpRequest, app) -> str:
    action = request.POST.get("action", "")
    user = request.user
    if action in ("latest", "hide", "unhide", "delete-version"):
        version = catalog.version_get_for_user(user, app, request.POST.get("version", ""))
        if action == "latest":
            publishing.app_set_latest(user=user, version=version)
            return f"Version {version.version} now carries the latest tag."
        if action in ("hide", "unhide"):
            publishing.version_set_hidden(user=user, version=version, hidden=action == "hide")
            return f"Version {version.version} is {'hidden' if action == 'hide' else 'visible'}."
        publishing.version_delete(user=user, version=version)
        return f"Version {version.version} is deleted."
    if action == "grant":
        who, kind = request.POST.get("grantee", "").strip(), request.POST.get("kind", "user")
        level = request.POST.get("level", AccessLevel.VIEWER)
        grant = publishing.grant_access(
            user=user,
            app=app,
            level=level,
            username=who if kind == "user" else "",
            group_name=who if kind == "group" else "",
        )
        return f"Granted {grant.grantee_label} {grant.level} access."
    if action == "revoke":
        publishing.grant_revoke(user=user, app=app, grant_id=_int(request.POST.get("grant")))
        return "Access revoked."
    if action == "update":
        publishing.app_update(
            user=user,
            app=app,
            title=request.POST.get("title"),
            category=request.POST.get("category"),
            description=request.POST.get("description"),
        )
        return "App details saved."
    if action == "delete-app":
        publishing.app_delete(user=user, app=app)
        return f"App {app.name} is deleted."
    raise ApplicationError(f"Unknown action {action!r}.")


def _int(raw: str | None) -> int:
    try:
        return int(raw or "")
    except ValueError:
        raise ApplicationError("Choose an entry from the list.") from None


@login_required
def publish(request: HttpRequest) -> HttpResponse:
    if not user_is_publisher(request.user):
        messages.error(request, "Only publishers and admins can publish apps.")
        return redirect("portal:catalogue")
    if request.method == "POST":
        try:
            blob = read_uploaded_bytes(request, "package", settings.PRO_MAX_PACKAGE_BYTES, "package")
            version = publishing.app_publish(
                user=request.user, blob=blob, make_latest=request.POST.get("make_latest") == "on"
            )
        except ApplicationError as exc:
            messages.error(request, f"The package was refused: {exc.message}")
        else:
            messages.success(request, f"Published {version.app.name} {version.version}.")
            return redirect("portal:app", name=version.app.name)
    base_url = request.build_absolute_uri("/").rstrip("/")
    return render(
        request,
        "portal/publish.html",
        {"key_id": platform_key_id(), "base_url": base_url, "max_bytes": settings.PRO_MAX_PACKAGE_BYTES},
    )


@login_required
def version_detail(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """What a version declares: its pages, identifiers and procedures (read from its manifest)."""
    found = catalog.version_resolve_for_user(request.user, name, version)
    context = {
        "app": found.app,
        "version": found,
        "can_manage": catalog.app_can_manage(request.user, found.app),
        **catalog.version_interface(found),
    }
    return render(request, "portal/launch.html", context)


# How often the nodes page redraws itself (static/js/nodes.js), in seconds.
NODES_REFRESH_SECONDS = 5


@login_required
def nodes(request: HttpRequest) -> HttpResponse:
    """The cluster: every node, its state and heartbeat, the master, and what each node runs."""
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the nodes of the platform.")
    lease = cluster.master_lease()
    context = {
        "lease": lease,
        "rows": cluster.cluster_overview(master=lease.holder if lease else ""),
        "refresh_seconds": NODES_REFRESH_SECONDS,
    }
    return render(request, "portal/nodes.html", context)


@login_required
def files(request: HttpRequest, path: str) -> HttpResponse:
    """Browse storage: list a folder, upload into it, delete a file; a file's own path downloads it."""
    folder = storage.normalize_path(path) if path else ""
    if request.method == "GET" and folder and not path.endswith("/"):
        handle, size = storage.storage_open(user=request.user, path=folder)  # NotFound: a 404 page
        return file_download(handle, size, posixpath.basename(folder))
    if request.method == "POST":
        if folder and not storage.can_access(request.user, folder):
            raise NotFound(f"There is no folder {folder!r} you have access to.")
        try:
            messages.success(request, _files_change(request, folder))
        except (NotFound, Forbidden):
            raise  # another user's folder: the 404 page, as for every object one cannot see
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect("portal:files", path=(folder + "/") if folder else "")
    try:
        entries = storage.storage_list(user=request.user, path=folder)
    except (NotFound, Forbidden):
        raise
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("portal:files", path="")
    context = {
        "folder": folder,
        "entries": entries,
        "crumbs": _crumbs(folder),
        "writable": storage.can_write_into(request.user, folder),
    }
    return render(request, "portal/files.html", context)


def _files_change(request: HttpRequest, folder: str) -> str:
    """Delete the file the form names, or upload its file into ``folder``; say what was done."""
    if request.POST.get("action") == "delete":
        target = storage.normalize_path(request.POST.get("path", ""))
        storage.storage_delete(user=request.user, path=target)
        return f"Deleted {target}."
    upload = request.FILES.get("file")
    if upload is None:
        raise ApplicationError("Choose a file to upload.")
    target = posixpath.join(folder, posixpath.basename(upload.name))
    storage.storage_put(user=request.user, path=target, stream=upload, declared_length=upload.size)
    return f"Uploaded {target}."


def _crumbs(folder: str) -> list[dict]:
    """The folders from the top down to ``folder``, each with its path, for the page's breadcrumbs."""
    crumbs, walked = [], []
    for part in folder.split("/") if folder else []:
        walked.append(part)
        crumbs.append({"name": part, "path": "/".join(walked) + "/"})
    return crumbs
