"""The public Python client of the platform's API: ``from pro_sdk.client import Client``.

    client = Client("https://platform.example.com", api_key="pro_key_...")   # or Client.from_env()
    job = client.submit("transport", "solve", input={"demand": [["Chicago", 320]]})
    for line in job.logs(follow=True):
        print(line)
    values = job.result()            # the result case's identifiers as Python data
    frames = job.result(frames=True) # tables as pandas DataFrames (pandas installed)

    result = client.solve(h)         # a highspy.Highs model (or an .mps/.lp file) solved there
    result.status, result.objective, result.col_values

Transient failures (a refused or reset connection, 502, 503, 504, 429 with ``Retry-After``) are
retried with backoff by urllib3's ``Retry``; a POST is retried only when it never reached the
server, so a job is never submitted twice. Every other failure raises :class:`PlatformError`
with the platform's error code and message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import remote_solve
from .remote_solve import SolveError, SolveResult

__all__ = ["Client", "Job", "PlatformError", "SolveError", "SolveResult"]

FINISHED = ("succeeded", "failed", "cancelled")
RETRIED_STATUSES = (429, 502, 503, 504)
FIRST_POLL = 0.05  # seconds before asking again whether a job has ended, doubled up to the caller's poll


class PlatformError(Exception):
    """What the platform refused, with its error code (``not_found``, ``bad_input`` ...) and message."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None):
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status, self.code, self.message, self.detail = status, code, message, detail


class Client:
    """One platform and one credential (an API key made on the account page, or a ticket)."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0, retries: int = 5):
        if not api_key:
            raise ValueError("an API key (or a ticket) is needed: make one on the platform's account page")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {api_key}"
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,  # an answer cut off may have done its work: not asked again
            status=retries,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"}),
            backoff_factor=0.5,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.http.mount(self.url, HTTPAdapter(max_retries=retry))
        self._own_folder: str | None = None

    @classmethod
    def from_env(cls) -> Client:
        """``PRO_URL`` and ``PRO_API_KEY`` from the environment."""
        url, key = os.environ.get("PRO_URL"), os.environ.get("PRO_API_KEY")
        if not url or not key:
            raise ValueError("set PRO_URL and PRO_API_KEY")
        return cls(url, key)

    # ------------------------------------------------------------ requests
    def request(self, method: str, path: str, **options: Any) -> requests.Response:
        """One API call (``path`` under ``/api/v1/``); a refusal raises :class:`PlatformError`."""
        response = self.http.request(method, f"{self.url}/api/v1/{path.lstrip('/')}", timeout=self.timeout, **options)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:500] or response.reason}
            raise PlatformError(
                response.status_code, error.get("code", ""), error.get("message", ""), error.get("detail")
            )
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # ------------------------------------------------------------ apps and jobs
    def apps(self) -> list[dict[str, Any]]:
        """The apps this user may use, with their versions."""
        return self.get("apps")

    def submit(
        self,
        app: str,
        procedure: str,
        *,
        input: dict[str, Any] | None = None,  # noqa: A002 - the API's name
        case: str | None = None,
        version: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        memory_limit_mb: int | None = None,
    ) -> Job:
        """Queue a solve of ``procedure`` on ``input`` values or a stored ``case``; return its job."""
        body: dict[str, Any] = {"app": app, "procedure": procedure}
        for name, value in (
            ("input", input),
            ("input_case", case),
            ("version", version),
            ("priority", priority),
            ("time_limit", time_limit),
            ("memory_limit_mb", memory_limit_mb),
        ):
            if value is not None:
                body[name] = value
        return Job(self, self.request("POST", "jobs", json=body).json())

    def solve(
        self,
        model: Any,
        *,
        log: Callable[[str], Any] | None = print,
        time_limit: float | None = None,
        app: str = "mps-solver",
        version: str | None = None,
        folder: str | None = None,
    ) -> SolveResult:
        """Solve ``model`` on the platform with the ``mps-solver`` app and return its solution.

        ``model`` is a ``highspy.Highs`` object or the path of an ``.mps`` or ``.lp`` file (also
        ``.gz``). It is uploaded into ``folder`` (your own ``users/<you>/remote-solve`` by
        default) and deleted once the job has ended; the job's log lines go to ``log`` as they
        come (``None``: not followed). The result maps the values back to the model's columns:
        ``values`` by name, ``col_values`` in column order. A job that fails raises
        :class:`SolveError`; a refusal (unknown app, no access) :class:`PlatformError`.
        """
        return remote_solve.solve(self, model, log=log, time_limit=time_limit, app=app, version=version, folder=folder)

    def job(self, job_id: int) -> Job:
        return Job(self, self.get(f"jobs/{job_id}"))

    def jobs(self, **filters: Any) -> list[Job]:
        """The user's jobs, newest first; filters as the API's (``state``, ``app``, ``limit`` ...)."""
        return [Job(self, found) for found in self.get("jobs", **filters)]

    # ------------------------------------------------------------ cases and storage
    def cases(self, app: str | None = None) -> list[dict[str, Any]]:
        return self.get("cases", app=app)

    def upload_case(self, app: str, source: str | Path | bytes, name: str = "", kind: str = "saved") -> dict[str, Any]:
        """Store a case file (``.case``) of ``app`` (``kind`` "saved", or "input" for a job's input);
        return its record (its ``id`` feeds ``submit(case=...)``)."""
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        params = {"app": app, "name": name, "kind": kind}
        headers = {"Content-Type": "application/octet-stream"}
        return self.request("POST", "cases", params=params, data=data, headers=headers).json()

    def download_case(self, case_id: str, target: str | Path) -> Path:
        return self._download(f"cases/{case_id}", Path(target))

    def case_bytes(self, case_id: str) -> bytes:
        """A case file's bytes (``pro_sdk``'s ``read_case`` reads them)."""
        return self.request("GET", f"cases/{case_id}").content

    def storage_list(self, path: str = "") -> list[dict[str, Any]]:
        return self.get(f"storage/{path.strip('/')}/" if path.strip("/") else "storage/")["entries"]

    def storage_get(self, path: str, target: str | Path) -> Path:
        return self._download(f"storage/{path.lstrip('/')}", Path(target))

    def storage_put(self, source: str | Path, path: str) -> dict[str, Any]:
        with open(source, "rb") as handle:
            return self.request("PUT", f"storage/{path.lstrip('/')}", data=handle).json()

    def storage_delete(self, path: str) -> None:
        self.request("DELETE", f"storage/{path.lstrip('/')}")

    def me(self) -> dict[str, Any]:
        """Whose the credential is: ``username``, ``role`` and ``credential`` (api_key or ticket)."""
        return self.get("auth/me")

    def own_folder(self) -> str:
        """This user's private storage folder, ``users/<username>``."""
        if self._own_folder is None:
            self._own_folder = f"users/{self.me()['username']}"
        return self._own_folder

    def _download(self, path: str, target: Path) -> Path:
        with self.request("GET", path, stream=True) as response, open(target, "wb") as sink:
            for chunk in response.iter_content(chunk_size=1024 * 1024):
                sink.write(chunk)
        return target


class Job:
    """A job on the platform; ``info`` is its last answer from the API."""

    def __init__(self, client: Client, info: dict[str, Any]):
        self.client, self.info = client, info
        self.id: int = info["id"]

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.info.get('state')}>"

    @property
    def state(self) -> str:
        return self.info["state"]

    def status(self) -> dict[str, Any]:
        """The job's fresh state, progress, times and error (the API's answer)."""
        self.info = self.client.get(f"jobs/{self.id}")
        return self.info

    def progress(self) -> dict[str, Any]:
        return self.status().get("progress") or {}

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Until the job has ended (``TimeoutError`` after ``timeout`` seconds); its last status.

        It asks again after 50 ms, then twice as long each time, up to ``poll`` seconds: a
        short job is seen to end soon after it does, a long one costs a request per ``poll``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(FIRST_POLL, poll)
        while self.status()["state"] not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.state} after {timeout:g} s")
            time.sleep(pause)
            pause = min(pause * 2, poll)
        return self.info

    def logs(self, follow: bool = False, poll: float = 0.5) -> Iterator[str]:
        """The log's lines; with ``follow``, as they come until the job has ended and its log is
        whole (asking again at once while lines come, then as :meth:`wait` does)."""
        offset, pending, pause = 0, "", min(FIRST_POLL, poll)
        while True:
            page = self.client.get(f"jobs/{self.id}/log", offset=offset)
            text, offset = pending + page["text"], page["offset"]
            *lines, pending = text.split("\n")
            yield from lines
            if page.get("finished") or not follow:
                if pending:
                    yield pending
                return
            if page["text"]:
                pause = min(FIRST_POLL, poll)
            else:
                time.sleep(pause)
                pause = min(pause * 2, poll)

    def interrupt(self) -> dict[str, Any]:
        """Ask the solver to stop and keep its best solution."""
        self.info = self.client.request("POST", f"jobs/{self.id}/interrupt").json()
        return self.info

    def cancel(self) -> dict[str, Any]:
        self.info = self.client.request("POST", f"jobs/{self.id}/cancel").json()
        return self.info

    def result(self, frames: bool = False) -> dict[str, Any]:
        """The result case's identifiers: sets as lists, values as numbers or text, tables as
        ``[[element, ..., value], ...]``; with ``frames``, tables as pandas DataFrames."""
        identifiers = self.client.get(f"jobs/{self.id}/result", format="json")["identifiers"]
        if not frames:
            return identifiers
        import pandas as pd  # only for frames: the client does not need it otherwise

        return {
            name: pd.DataFrame(value).set_index(list(range(len(value[0]) - 1))) if _is_table(value) else value
            for name, value in identifiers.items()
        }


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, list) and len(row) >= 2 for row in value)
