"""The pages users click through. Each view parses, calls a service or selector, renders."""

from __future__ import annotations

import posixpath
from collections import OrderedDict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.selectors import (
    security_event_kinds,
    security_events_filtered,
    security_events_page,
    security_events_per_day,
)
from apps.accounts.services import user_is_publisher
from apps.accounts.views import security_events_csv
from apps.catalog import selectors as catalog
from apps.catalog import services as publishing
from apps.catalog.keys import platform_key_id
from apps.catalog.models import AccessLevel
from apps.cluster import selectors as cluster
from apps.connections.selectors import connection_names_of_app
from apps.storage import services as storage
from pro_portal.errors import ApplicationError, Forbidden, NotFound
from pro_portal.streaming import file_download
from pro_portal.uploads import read_uploaded_bytes
from sessions import params
from sessions.fair_share import seat_holder_names
from sessions.selectors import app_names_for_user, live_sessions_by_app
from sessions.statistics import job_statistics, job_statistics_by_day
from sessions.usage import app_usage

# The platform's icon (static/favicon.svg), also answered at /favicon.ico.
FAVICON = "favicon.svg"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and the launcher: the database answers."""
    cluster.database_answers()
    return JsonResponse({"status": "ok", "node": settings.PRO_NODE_NAME})


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers and tools ask for whatever the page links: the SVG icon."""
    found = finders.find(FAVICON)
    if not found:
        raise NotFound("The platform has no icon.")
    with open(found, "rb") as icon:  # a few hundred bytes
        response = HttpResponse(icon.read(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@login_required
def catalogue(request: HttpRequest) -> HttpResponse:
    """The apps the user may open, by category; ``?q=`` keeps those whose name, title or
    description holds every word (static/js/catalogue.js filters the same way as one types)."""
    query = request.GET.get("q", "").strip()
    words = query.lower().split()
    grouped: OrderedDict[str, dict] = OrderedDict()
    live = live_sessions_by_app(request.user)
    for app, versions in catalog.catalogue_for_user(request.user):
        text = " ".join((app.name, app.title, app.description)).lower()
        match = all(word in text for word in words)
        group = grouped.setdefault(app.category, {"entries": [], "shown": False})
        group["shown"] |= match
        # Every app is on the page, those that do not match hidden: the script can widen the search.
        group["entries"].append(
            {"app": app, "versions": versions, "live_session": live.get(app.pk), "search_text": text, "match": match}
        )
    shown = any(group["shown"] for group in grouped.values())
    return render(request, "portal/catalogue.html", {"categories": grouped, "query": query, "shown": shown})


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
        "usage": app_usage(app) if can_manage else None,  # jobs and hours of the last 30 days
        "connections": connection_names_of_app(app.pk) if can_manage else [],
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


# Rows per page of the statistics page's table.
STATISTICS_PER_PAGE = 50


@login_required
def statistics(request: HttpRequest) -> HttpResponse:
    """Queue and run times of jobs per app and day: a chart over the period, the table a page at a time."""
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the statistics of the platform.")
    days, app = params.statistics_query(request.GET)
    page = Paginator(job_statistics(days=days, app_name=app), STATISTICS_PER_PAGE).get_page(request.GET.get("page"))
    chart = [
        {"day": row["day"].isoformat(), **{k: v for k, v in row.items() if k != "day"}}
        for row in job_statistics_by_day(days=days, app_name=app)
    ]
    context = {
        "page": page,
        "page_links": _page_links(request, page),
        "chart": chart,
        "days": days,
        "app": app,
        "apps": app_names_for_user(request.user),
    }
    return render(request, "portal/statistics.html", context)


@login_required
def security(request: HttpRequest) -> HttpResponse:
    """The security event log, filtered: a chart of events per day and outcome, the rows a page at a time."""
    if request.GET.get("format") == "csv":
        return security_events_csv(request)  # every matching event, streamed
    if not request.user.is_superuser:
        raise Forbidden("Only admins see the security event log.")
    events = security_events_filtered(request.GET)
    page = security_events_page(events, request.GET.get("page"))
    filters = request.GET.copy()
    filters.pop("page", None)
    context = {
        "page": page,
        "page_links": _page_links(request, page),
        "chart": security_events_per_day(events, request.GET),
        "kinds": security_event_kinds(),
        "query": filters.urlencode(),
        "filters": request.GET,
    }
    return render(request, "portal/security_events.html", context)


def _page_links(request: HttpRequest, page: Page) -> dict | None:
    """Links to the previous and next pages, the first and last, and those near ``page`` (a gap
    between them marked), each keeping the rest of the request's query; None for a single page."""
    total = page.paginator.num_pages
    if total <= 1:
        return None

    def url(number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        return "?" + query.urlencode()

    numbers = sorted({1, total, *range(max(1, page.number - 2), min(total, page.number + 2) + 1)})
    pages: list[dict] = []
    for number in numbers:
        if pages and number - pages[-1]["number"] > 1:
            pages.append({"number": number - 1, "gap": True})
        pages.append({"number": number, "url": url(number), "current": number == page.number})
    return {
        "pages": pages,
        "previous": url(page.number - 1) if page.has_previous() else None,
        "next": url(page.number + 1) if page.has_next() else None,
    }


# How often the nodes page redraws itself for its heartbeat ages (static/js/nodes.js), in seconds;
# a change of a node, job or session redraws it at once.
NODES_REFRESH_SECONDS = 30


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
        "seats": settings.PRO_SEATS,
        "seat_holders": seat_holder_names() if settings.PRO_SEATS else [],
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
        except NotFound:
            raise  # another user's folder: the 404 page, as for every object one cannot see
        except ApplicationError as exc:  # Forbidden too: a folder the user reads but may not change
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
        "read_only_reason": storage.read_only_reason(request.user, folder),
        "max_upload_bytes": settings.PRO_MAX_UPLOAD_BYTES,
    }
    return render(request, "portal/files.html", context)


def _files_change(request: HttpRequest, folder: str) -> str:
    """Delete the file the form names, create the folder it names, or upload its files into
    ``folder``; say what was done. (With script, static/js/files.js uploads through the API.)"""
    action = request.POST.get("action")
    if action == "delete":
        target = storage.normalize_path(request.POST.get("path", ""))
        storage.storage_delete(user=request.user, path=target)
        return f"Deleted {target}."
    storage.require_write_into(request.user, folder)  # a viewer's or the platform's folder: forbidden, said
    if action == "folder":
        name = request.POST.get("name", "").strip()
        if not name:
            raise ApplicationError("Name the new folder.")
        created = storage.storage_make_folder(user=request.user, path=posixpath.join(folder, name))
        return f"Created the folder {created.path}."
    uploads = request.FILES.getlist("file")
    if not uploads:
        raise ApplicationError("Choose a file to upload.")
    stored = []
    for upload in uploads:
        target = posixpath.join(folder, posixpath.basename(upload.name))
        stored.append(storage.storage_put(user=request.user, path=target, stream=upload, declared_length=upload.size))
    return f"Uploaded {', '.join(entry.path for entry in stored)}."


def _crumbs(folder: str) -> list[dict]:
    """The folders from the top down to ``folder``, each with its path, for the page's breadcrumbs."""
    crumbs, walked = [], []
    for part in folder.split("/") if folder else []:
        walked.append(part)
        crumbs.append({"name": part, "path": "/".join(walked) + "/"})
    return crumbs
