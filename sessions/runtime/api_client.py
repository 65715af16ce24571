"""A small client of the platform's REST API for session processes (standard library only).

In a sandbox the session has no network: it reaches the API through the Unix socket its node
relays (``unix_socket``), speaking HTTP to the API's URL over it.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .api_errors import parse_error

TIMEOUT = 30


class ApiError(Exception):
    """The platform refused a call or could not be reached; the message says why."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    socket_path = ""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class _UnixHTTPSConnection(http.client.HTTPSConnection):
    socket_path = ""

    def connect(self) -> None:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(self.timeout)
        raw.connect(self.socket_path)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _unix_opener(path: str) -> urllib.request.OpenerDirector:
    """A urllib opener whose HTTP and HTTPS connections go through the Unix socket at ``path``."""

    class Plain(_UnixHTTPConnection):
        socket_path = path

    class Secure(_UnixHTTPSConnection):
        socket_path = path

    class Handler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
        def http_open(self, req):
            return self.do_open(Plain, req)

        def https_open(self, req):
            return self.do_open(Secure, req)

    return urllib.request.build_opener(Handler)


class ApiClient:
    def __init__(self, base_url: str, ticket: str, unix_socket: str = ""):
        self.base = base_url.rstrip("/") + "/api/v1/"
        self.ticket = ticket
        self.open = _unix_opener(unix_socket).open if unix_socket else urllib.request.urlopen

    def _call(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        url = self.base + path.lstrip("/")
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - the platform's own URL
        request.add_header("Authorization", f"Bearer {self.ticket}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with self.open(request, timeout=TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            error = parse_error(exc.read())
            raise ApiError(error.message if error and error.message else f"HTTP {exc.code}") from None
        except OSError as exc:
            raise ApiError(f"the platform cannot be reached: {exc}") from None

    def get(self, path: str, params: dict | None = None) -> Any:
        return json.loads(self._call("GET", path, params))

    def get_bytes(self, path: str) -> bytes:
        return self._call("GET", path)

    def post(self, path: str, payload: dict | None = None) -> Any:
        raw = self._call("POST", path, body=json.dumps(payload or {}).encode())
        return json.loads(raw) if raw else None

    def delete(self, path: str) -> None:
        self._call("DELETE", path)

    def upload_case(self, app: str, blob: bytes, name: str, kind: str) -> dict[str, Any]:
        raw = self._call("POST", "cases", {"app": app, "name": name, "kind": kind}, blob, "application/octet-stream")
        return json.loads(raw)

    def submit_job(self, app: str, version: str | None, procedure: str, case_id: str) -> dict[str, Any]:
        """Queue a solve of ``version`` of ``app`` (its latest published version when None)."""
        body = {"app": app, "procedure": procedure, "input_case": case_id}
        if version is not None:
            body["version"] = version
        return self.post("jobs", body)
