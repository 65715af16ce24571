"""A small client of the platform's REST API for session processes (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT = 30


class ApiError(Exception):
    """The platform refused a call or could not be reached; the message says why."""


class ApiClient:
    def __init__(self, base_url: str, ticket: str):
        self.base = base_url.rstrip("/") + "/api/v1/"
        self.ticket = ticket

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
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                return response.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {exc.code}"
            raise ApiError(message) from None
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

    def submit_job(self, app: str, version: str, procedure: str, case_id: str) -> dict[str, Any]:
        return self.post("jobs", {"app": app, "version": version, "procedure": procedure, "input_case": case_id})
