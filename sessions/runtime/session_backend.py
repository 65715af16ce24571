"""Where a data session keeps its cases and runs its solves. No Django.

A session on the platform uses :class:`PlatformBackend` (the platform's REST API, with the
session's scoped ticket); ``pro app run`` on a modeler's machine uses a local backend
(``pro_cli.local_backend``) that keeps cases in a folder and solves in a local process, and may
delegate solves to a platform. :class:`~sessions.runtime.session_server.LiveSession` sees only
this protocol.

Jobs and cases are described as the platform's API describes them (``id``, ``state``,
``progress`` ... for a job; ``id``, ``name``, ``created_at`` for a case), so that the WebUI
shows both the same way.
"""

from __future__ import annotations

from typing import Any, Protocol

from .api_client import ApiClient

JOB_SUCCEEDED = "succeeded"
JOB_ENDED_STATES = (JOB_SUCCEEDED, "failed", "cancelled")  # the API's final states of a job


class BackendRefused(Exception):
    """What a backend refuses (a case that is not there, no platform to push to); the WebUI shows it."""


class SessionBackend(Protocol):
    """The cases and jobs of one app, for one data session."""

    poll_seconds: float  # how often the session asks after a running job

    def submit_solve(self, procedure: str, input_case: bytes) -> dict[str, Any]: ...

    def job(self, job_id: int) -> dict[str, Any]: ...

    def job_log(self, job_id: int, offset: int) -> dict[str, Any]:
        """``{"text", "offset" (after the text), "size", "finished"}``."""
        ...

    def job_result(self, job_id: int) -> bytes: ...

    def stop_job(self, job_id: int, interrupt: bool) -> dict[str, Any]: ...

    def list_cases(self) -> list[dict[str, Any]]: ...

    def save_case(self, blob: bytes, name: str) -> dict[str, Any]: ...

    def case_bytes(self, case_id: str) -> bytes: ...

    def delete_case(self, case_id: str) -> None: ...


class PlatformBackend:
    """Cases and jobs on the platform, through its API (the session's ticket, or an API key)."""

    poll_seconds = 0.5

    def __init__(self, api: ApiClient, app: str, version: str | None):
        self.api, self.app, self.version = api, app, version

    def submit_solve(self, procedure: str, input_case: bytes) -> dict[str, Any]:
        case = self.api.upload_case(self.app, input_case, f"input of {procedure}", "input")
        return self.api.submit_job(self.app, self.version, procedure, case["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return self.api.get(f"jobs/{job_id}")

    def job_log(self, job_id: int, offset: int) -> dict[str, Any]:
        return self.api.get(f"jobs/{job_id}/log", {"offset": offset})

    def job_result(self, job_id: int) -> bytes:
        return self.api.get_bytes(f"jobs/{job_id}/result")

    def stop_job(self, job_id: int, interrupt: bool) -> dict[str, Any]:
        return self.api.post(f"jobs/{job_id}/{'interrupt' if interrupt else 'cancel'}")

    def list_cases(self) -> list[dict[str, Any]]:
        return self.api.get("cases", {"app": self.app, "kind": "saved"})

    def save_case(self, blob: bytes, name: str) -> dict[str, Any]:
        return self.api.upload_case(self.app, blob, name, "saved")

    def case_bytes(self, case_id: str) -> bytes:
        return self.api.get_bytes(f"cases/{case_id}")

    def delete_case(self, case_id: str) -> None:
        self.api.delete(f"cases/{case_id}")
