"""Connections: what admins define and grant, and what a sandbox is handed at its start.

A connection is given as one URL, as a driver would take it (``mysql://planner:pw@db:3306/plans``,
``postgresql://…``, any SQLAlchemy URL such as ``mssql+pyodbc://…``, or a web service's
``https://erp.example.com/api``). The password in it (or the ``secret`` given beside it: a
database's password, a service's bearer token) is sealed and never shown again; the URL is kept
without it. Only admins write connections and grants; each write and each hand-over to a
sandbox is a security event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from apps.accounts.events import security_event
from apps.catalog.models import App
from apps.catalog.services import network_target_parse
from pro_portal.errors import ApplicationError, Conflict, Forbidden
from pro_portal.sealing import SealBroken, seal, unseal

from .models import Connection, ConnectionGrant, ConnectionKind
from .selectors import connections_granted_to

SECRET_PURPOSE = b"pro connection secrets"
HEADERS_PURPOSE = b"pro connection headers"
MAX_HEADERS = 32
MAX_HEADER_BYTES = 8192
SCHEME = re.compile(r"^[a-z][a-z0-9]*(\+[a-z0-9_]+)?$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "postgres": 5432, "mssql": 1433}
DEFAULT_PORTS |= {"oracle": 1521, "db2": 50000, "http": 80, "https": 443}
KIND_OF_DIALECT = {"mysql": ConnectionKind.MYSQL, "mariadb": ConnectionKind.MYSQL}
KIND_OF_DIALECT |= {"postgresql": ConnectionKind.POSTGRESQL, "postgres": ConnectionKind.POSTGRESQL}
KIND_OF_DIALECT |= {"http": ConnectionKind.SERVICE, "https": ConnectionKind.SERVICE}


@dataclass(frozen=True)
class Location:
    """A connection URL taken apart: ``url`` is it without its password."""

    kind: str
    url: str
    host: str
    port: int
    password: str


def _admin_only(user: User) -> None:
    if not user.is_superuser:
        raise Forbidden("Only admins define connections and grant them to apps.")


def connection_url_parse(raw: str) -> Location:
    """Check a connection URL and take its password out, or raise a clear error."""
    text = str(raw or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ApplicationError(f"The connection URL is not valid: {exc}.", code="invalid") from None
    scheme = parts.scheme.lower()
    if not SCHEME.match(scheme):
        raise ApplicationError(
            "The connection URL needs a scheme: mysql://, postgresql://, a SQLAlchemy dialect+driver:// or https://.",
            code="invalid",
        )
    dialect = scheme.split("+")[0]
    kind = KIND_OF_DIALECT.get(dialect, ConnectionKind.SQLALCHEMY)
    if not parts.hostname:
        raise ApplicationError("The connection URL must name a host (a file database is not reachable).")
    port = port or DEFAULT_PORTS.get(dialect)
    if port is None:
        raise ApplicationError(f"The connection URL must give the port ({dialect} has no usual one).", code="invalid")
    target = network_target_parse(f"[{parts.hostname}]:{port}" if ":" in parts.hostname else f"{parts.hostname}:{port}")
    host = target.rpartition(":")[0].strip("[]")
    if kind == ConnectionKind.SERVICE and (parts.username or parts.password):
        raise ApplicationError("Give a web service's credentials as its secret (a token) or headers, not in its URL.")
    user = quote(unquote(parts.username), safe="") + "@" if parts.username else ""
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{user}{shown_host}:{port}"
    url = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    return Location(kind=kind, url=url, host=host, port=port, password=unquote(parts.password or ""))


def _headers_checked(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise ApplicationError("headers must be an object of header names and values.", code="invalid")
    if len(headers) > MAX_HEADERS or len(json.dumps(headers)) > MAX_HEADER_BYTES:
        raise ApplicationError(f"At most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all.", code="invalid")
    for name, value in headers.items():
        if not HEADER_NAME.match(str(name)) or not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ApplicationError(f"The header {name!r} is not a valid header name and text value.", code="invalid")
    return {str(name): value for name, value in headers.items()}


def _seal_secrets(connection: Connection, secret: str | None, headers: dict | None) -> None:
    context = str(connection.pk)
    if secret is not None:
        connection.secret_sealed = seal(secret, purpose=SECRET_PURPOSE, context=context) if secret else ""
    if headers is not None:
        text = json.dumps(_headers_checked(headers)) if headers else ""
        connection.headers_sealed = seal(text, purpose=HEADERS_PURPOSE, context=context) if text else ""


def _apply_url(connection: Connection, url: str) -> str | None:
    """Set the connection's place from ``url``; the password it carried, if any."""
    location = connection_url_parse(url)
    if connection.pk and connection.kind and location.kind != connection.kind:
        raise ApplicationError(
            f"The connection is a {connection.kind} one: a {location.kind} URL needs a new connection.",
            code="invalid",
        )
    connection.kind, connection.url = location.kind, location.url
    connection.host, connection.port = location.host, location.port
    return location.password or None


@transaction.atomic
def connection_create(
    *,
    user: User,
    name: str,
    url: str,
    title: str = "",
    description: str = "",
    secret: str | None = None,
    headers: dict | None = None,
    request: Any = None,
) -> Connection:
    _admin_only(user)
    connection = Connection(name=name, title=title, description=description, created_by=user)
    password = _apply_url(connection, url)
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError:
        raise Conflict(f"A connection named {name!r} exists already.") from None
    _seal_secrets(connection, secret if secret is not None else password, headers)
    connection.save(update_fields=["secret_sealed", "headers_sealed"])
    security_event("connection.create", request=request, actor=user, target=f"connection {name}", place=connection.url)
    return connection


@transaction.atomic
def connection_update(
    *, user: User, connection: Connection, changes: dict[str, Any], request: Any = None
) -> Connection:
    """Change what ``changes`` names (url, title, description, secret, headers); the rest stays."""
    _admin_only(user)
    secret = changes.get("secret")
    if "url" in changes:
        password = _apply_url(connection, changes["url"])
        secret = secret if secret is not None else password
    for name in ("title", "description"):
        if name in changes:
            setattr(connection, name, changes[name])
    _seal_secrets(connection, secret, changes.get("headers"))
    connection.save()
    changed = sorted(changes)
    security_event(
        "connection.update", request=request, actor=user, target=f"connection {connection.name}", changed=changed
    )
    return connection


def connection_delete(*, user: User, connection: Connection, request: Any = None) -> None:
    _admin_only(user)
    name = connection.name
    connection.delete()
    security_event("connection.delete", request=request, actor=user, target=f"connection {name}")


def connection_grant(*, user: User, connection: Connection, app: App, request: Any = None) -> ConnectionGrant:
    """Let ``app``'s sandboxes have ``connection`` from their next start on (idempotent)."""
    _admin_only(user)
    grant, created = ConnectionGrant.objects.get_or_create(
        connection=connection, app=app, defaults={"granted_by": user}
    )
    if created:
        security_event(
            "connection.grant", request=request, actor=user, target=f"connection {connection.name}", app=app.name
        )
    return grant


def connection_revoke(*, user: User, connection: Connection, app: App, request: Any = None) -> None:
    """Take the grant back: the next job or session of the app starts without it."""
    _admin_only(user)
    deleted, _ = ConnectionGrant.objects.filter(connection=connection, app=app).delete()
    if deleted:
        security_event(
            "connection.revoke", request=request, actor=user, target=f"connection {connection.name}", app=app.name
        )


# ---------------------------------------------------------------- handing over to a sandbox


@dataclass
class Handover:
    """What one sandbox of an app gets: each granted connection's details (secrets in the clear),
    the ``host:port`` targets its network grant must open, and the secrets to mask in its logs."""

    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.details)


def _opened(connection: Connection) -> tuple[str, dict[str, str]]:
    context = str(connection.pk)
    try:
        sealed_secret, sealed_headers = connection.secret_sealed, connection.headers_sealed
        secret = unseal(sealed_secret, purpose=SECRET_PURPOSE, context=context) if sealed_secret else ""
        text = unseal(sealed_headers, purpose=HEADERS_PURPOSE, context=context) if sealed_headers else "{}"
    except SealBroken:
        raise ApplicationError(
            f"The secrets of connection {connection.name!r} do not open with this platform's key (was PRO_SECRET_KEY "
            "changed?): an admin must set them again.",
            code="connection_unreadable",
        ) from None
    return secret, json.loads(text)


def _details(connection: Connection, secret: str, headers: dict[str, str]) -> dict[str, Any]:
    parts = urlsplit(connection.url)
    details: dict[str, Any] = {
        "kind": connection.kind,
        "host": connection.host,
        "port": connection.port,
        "options": dict(parse_qsl(parts.query)),
    }
    if connection.kind == ConnectionKind.SERVICE:
        if secret and not any(name.lower() == "authorization" for name in headers):
            headers = {**headers, "Authorization": f"Bearer {secret}"}
        return details | {"url": connection.url, "headers": headers}
    user = unquote(parts.username or "")
    credentials = quote(user, safe="") + (":" + quote(secret, safe="") if secret else "") + "@" if user else ""
    netloc = credentials + parts.netloc.rpartition("@")[2]
    full = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return details | {"url": full, "username": user, "password": secret, "database": parts.path.lstrip("/")}


def connections_hand_over(*, app: App, actor: User | str, purpose: str) -> Handover:
    """The connections ``app`` is granted, opened for one sandbox (``purpose``: e.g. "job 12")."""
    handover = Handover()
    targets, secrets = [], []
    for connection in connections_granted_to(app.pk):
        secret, headers = _opened(connection)
        handover.details[connection.name] = _details(connection, secret, headers)
        targets.append(connection.target)
        secrets += [secret, *(value for value in headers.values() if len(value) >= 8)]
        security_event("connection.use", actor=actor, target=f"connection {connection.name}", app=app.name, by=purpose)
    handover.targets = tuple(dict.fromkeys(targets))
    handover.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))
    return handover
