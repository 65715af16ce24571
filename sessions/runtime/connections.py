"""App code's managed connections: ``pro_sdk.connection("warehouse")`` (or ``ctx.connection``).

An admin defines a connection on the platform (a database or a web service, with its secret)
and grants it to apps (docs/connections.md). A sandbox of a granted app finds the connections
in the file ``PRO_CONNECTIONS_FILE`` names, and its network grant opens just their hosts and
ports; nothing else is reachable. Run locally (``pro app run``, plain pytest), the same variable
may name a file of the same shape that the modeler writes::

    {"warehouse": {"kind": "mysql", "host": "127.0.0.1", "port": 3306, "database": "plans",
                   "username": "planner", "password": "…"}}

What :func:`connection` returns depends on the kind: a DB-API connection for ``mysql``
(PyMySQL) and ``postgresql`` (psycopg), a SQLAlchemy engine for ``sqlalchemy`` (or with
``engine=True``), and a ``requests.Session`` bound to its base URL for a ``service``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any
from urllib.parse import urljoin

FILE_VARIABLE = "PRO_CONNECTIONS_FILE"


class ConnectionNotGranted(LookupError):
    """The app asked for a connection it is not granted (or that does not exist)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "connection not granted"


def available() -> list[str]:
    """The names of the connections this app may use here."""
    return sorted(_all())


def _all() -> dict[str, dict[str, Any]]:
    path = os.environ.get(FILE_VARIABLE)
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def details(name: str) -> dict[str, Any]:
    """A connection's details as handed to this sandbox (its secret included)."""
    found = _all().get(name)
    if found is None:
        have = ", ".join(available()) or "none"
        raise ConnectionNotGranted(
            f"connection {name!r} is not granted to this app (it has: {have}); an admin grants connections to apps"
        )
    return found


def _reach(host: str, port: int) -> tuple[str, int]:
    """Where the sandbox reaches ``host:port``: a host name as is (the sandbox's hosts file points it
    at its relay), an address at the relay's address for it."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host, port
    targets = json.loads(os.environ.get("PRO_NETWORK_TARGETS") or "{}")
    inside = targets.get(f"{host}:{port}")
    if inside is None:
        return host, port
    inside_host, _, inside_port = inside.rpartition(":")
    return inside_host, int(inside_port)


def _options(raw: dict[str, str]) -> dict[str, Any]:
    return {key: int(value) if value.isdigit() else value for key, value in raw.items()}


def _needs(module: str, package: str, kind: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"a {kind} connection needs {package}: add it to the app's requirements (manifest.toml)"
        ) from None


def connection(name: str, *, engine: bool = False) -> Any:
    """The connection ``name``, opened: see the module's description for what each kind gives."""
    found = details(name)
    kind = found["kind"]
    if kind == "service":
        return service_session(found["url"], found.get("headers") or {})
    if engine or kind == "sqlalchemy":
        return _engine(found)
    host, port = _reach(found["host"], int(found["port"]))
    options = _options(found.get("options") or {})
    if kind == "mysql":
        pymysql = _needs("pymysql", "PyMySQL", kind)
        return pymysql.connect(
            host=host,
            port=port,
            user=found.get("username") or None,
            password=found.get("password") or "",
            database=found.get("database") or None,
            **options,
        )
    if kind == "postgresql":
        psycopg = _needs("psycopg", "psycopg[binary]", kind)
        return psycopg.connect(
            host=host,
            port=port,
            user=found.get("username") or None,
            password=found.get("password") or None,
            dbname=found.get("database") or None,
            **options,
        )
    raise ValueError(f"connection {name!r} has an unknown kind {kind!r}")


DRIVERS = {"mysql": "mysql+pymysql", "postgresql": "postgresql+psycopg"}


def _engine(found: dict[str, Any]) -> Any:
    sqlalchemy = _needs("sqlalchemy", "SQLAlchemy", found["kind"])
    url = sqlalchemy.engine.make_url(found["url"])
    if found["kind"] in DRIVERS and "+" not in url.drivername:
        url = url.set(drivername=DRIVERS[found["kind"]])
    host, port = _reach(found["host"], int(found["port"]))
    return sqlalchemy.create_engine(url.set(host=host, port=port))


def service_session(base_url: str, headers: dict[str, str]) -> Any:
    """A ``requests.Session`` for a web service: paths are relative to its base URL, its headers
    (the token) go with every request, and it goes straight to the service (through the sandbox's
    relay), never through a proxy."""
    requests = _needs("requests", "requests", "service")
    base = base_url if base_url.endswith("/") else base_url + "/"

    class ServiceSession(requests.Session):  # type: ignore[name-defined]
        base_url = base

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", 60)
            return super().request(method, urljoin(self.base_url, url.lstrip("/")), *args, **kwargs)

    session = ServiceSession()
    session.headers.update(headers)
    session.trust_env = False  # the HTTP(S)_PROXY of an outbound grant must not carry the token
    return session


def masked(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each of ``secrets`` (longest first) shown as ``********``: an app that prints
    its password does not put it in a log that others read."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "********")
    return text
