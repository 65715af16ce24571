"""The runner of one attempt inside an engine's job (Slurm, Kubernetes): ``python -m sessions.remote_runner``.

It needs the platform's code and the sandbox (bubblewrap) on the engine's node, and nothing of the
platform's configuration: no database, no secret key, no storage. From its environment it gets
the API's address, a ticket scoped to this attempt, and the job and attempt; everything else
comes from the attempt API (:mod:`sessions.attempt_api`): the app, the input case, the
environment's archive (checked by its SHA-256), the granted connections. It then runs the same
sandbox and the same watch (:class:`sessions.attempt.AttemptWatch`) as a node's solve worker and
reports through :class:`RemoteChannel`, so that the log, progress, interrupt, cancel, limits and
results a user sees are those of a local job.

SIGTERM (the engine cancels, preempts or reaches its time limit) stops the sandbox and gives the
job back to the queue; when the platform itself cancelled, that release changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

if TYPE_CHECKING:
    from .attempt import AttemptEnd

logger = logging.getLogger("sessions.remote_runner")

TIMEOUT = 30
REQUESTS_EVERY = 1.0  # the most often the runner asks about interrupt and cancel (one heartbeat)
APP_LIMIT = 512 * 1024 * 1024  # the bundle's share beside its input case (PRO_MAX_CASE_BYTES)


class RunnerError(Exception):
    """The attempt cannot run here; the message says why (it becomes the job's error)."""


def configure(environ: Mapping[str, str]) -> None:
    """Django settings of the runner alone: what the sandbox and the watch read, nothing else."""
    from django.conf import settings

    if settings.configured:
        return
    root = Path(environ.get("PRO_RUNNER_WORK_DIR") or tempfile.gettempdir()) / "pro-attempts"
    settings.configure(
        BASE_DIR=Path(__file__).resolve().parent.parent,
        PRO_SANDBOX=environ.get("PRO_SANDBOX", "bubblewrap"),
        PRO_WORK_DIR=root,
        PRO_NODE_NAME=socket.gethostname(),
        PRO_SANDBOX_MAX_PROCESSES=int(environ.get("PRO_SANDBOX_MAX_PROCESSES", "256")),
        PRO_SANDBOX_TMP_MB=int(environ.get("PRO_SANDBOX_TMP_MB", "1024")),
        PRO_JOB_LEASE_SECONDS=int(environ.get("PRO_JOB_LEASE_SECONDS", "60")),
        PRO_JOB_LOG_MAX_BYTES=int(environ.get("PRO_JOB_LOG_MAX_BYTES", str(10 * 1024 * 1024))),
        PRO_MAX_CASE_BYTES=int(environ.get("PRO_MAX_CASE_BYTES", str(2 * 1024**3))),
        # What an outbound grant's proxy refuses besides the node's own addresses: the platform.
        PRO_INTERNAL_API_URL=environ["PRO_API_URL"],
        DATABASES={"default": {"HOST": environ.get("PRO_PLATFORM_DATABASE_HOST", "")}},
        REDIS_URL=environ.get("PRO_PLATFORM_REDIS_URL", ""),
    )


class RemoteChannel:
    """An attempt's channel from an engine's node: the attempt API, with the attempt's ticket.

    A 409 answer means the attempt is over (requeued, cancelled): the watch then stops the solve.
    A platform out of reach for a moment costs a retry; one out of reach for good ends in the
    job's lease running out, and the platform requeues the job.
    """

    def __init__(self, api_url: str, ticket: str, job_id: int, attempt: int, bundle_limit: int = APP_LIMIT):
        self.base = f"{api_url.rstrip('/')}/api/v1/jobs/{job_id}/attempts/{attempt}"
        self.http = requests.Session()
        self.http.trust_env = False  # the node's proxy settings are not the platform's way in
        self.http.headers["Authorization"] = f"Bearer {ticket}"
        retry = Retry(total=6, backoff_factor=0.5, status_forcelist=(502, 503, 504), allowed_methods=None)
        self.http.mount("http://", HTTPAdapter(max_retries=retry))
        self.http.mount("https://", HTTPAdapter(max_retries=retry))
        self.lost = False
        self.bundle_limit = bundle_limit
        self.asked: dict[str, bool] = {}
        self.asked_at = 0.0

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response | None:
        """The API's answer; None once the attempt is over. Other refusals raise RunnerError."""
        if self.lost:
            return None
        answer = self.http.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        if answer.status_code == 409:
            self.lost = True
            return None
        if answer.status_code >= 400:
            try:
                message = answer.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = answer.text[:500]
            raise RunnerError(f"the platform answered {answer.status_code} to {method} {path}: {message}")
        return answer

    def _quiet(self, method: str, path: str, **kwargs: Any) -> requests.Response | None:
        """A report that may fail without ending the attempt (the platform out of reach for a while)."""
        try:
            return self.call(method, path, **kwargs)
        except (requests.RequestException, RunnerError) as exc:
            logger.warning("%s %s failed: %s", method, path, exc)
            return None

    def bundle(self) -> bytes:
        answer = self.call("GET", "/bundle", stream=True)
        if answer is None:
            raise RunnerError("the attempt was over before it started")
        data = answer.raw.read(self.bundle_limit + 1, decode_content=True)
        if len(data) > self.bundle_limit:
            raise RunnerError("the attempt's bundle is too large")
        if hashlib.sha256(data).hexdigest() != answer.headers.get("X-Pro-Sha256"):
            raise RunnerError("the attempt's bundle does not match its hash")
        return data

    def download(self, path: str, sink: BinaryIO, params: dict[str, str] | None = None) -> str:
        """Write a download into ``sink``; return its SHA-256."""
        answer = self.call("GET", path, params=params, stream=True)
        if answer is None:
            raise RunnerError("the attempt is over")
        digest = hashlib.sha256()
        for chunk in answer.iter_content(1024 * 1024):
            digest.update(chunk)
            sink.write(chunk)
        return digest.hexdigest()

    # ------------------------------------------------------------ AttemptChannel
    def append_log(self, offset: int, text: str) -> int:
        answer = self._quiet("POST", "/log", json={"offset": offset, "text": text})
        return int(answer.json()["offset"]) if answer is not None else offset + len(text.encode())

    def report_progress(self, progress: dict[str, Any], points: list[dict[str, Any]]) -> None:
        self._quiet("POST", "/progress", json={"progress": progress, "points": points})

    def renew_lease(self) -> bool:
        return not self.requests().get("lost")

    def requests(self) -> dict[str, bool]:
        """What users asked (one heartbeat a second at most, which also renews the job's lease)."""
        if self.lost:
            return {"lost": True}
        if time.monotonic() - self.asked_at >= REQUESTS_EVERY:
            answer = self._quiet("POST", "/heartbeat")
            if answer is not None:
                self.asked, self.asked_at = answer.json(), time.monotonic()
        return {"lost": True} if self.lost else self.asked

    def open_file(self, path: str) -> tuple[str, contextlib.AbstractContextManager[BinaryIO]]:
        from .attempt import FileRefused

        try:
            answer = self.call("GET", "/files", params={"path": path}, stream=True)
        except RunnerError as exc:
            raise FileRefused(str(exc)) from None
        if answer is None:
            raise FileRefused("the attempt is over")
        answer.raw.decode_content = True
        return path.strip("/"), contextlib.closing(cast(BinaryIO, answer.raw))

    def finish(self, end: AttemptEnd) -> None:
        if end.log:
            self.append_log(end.log_offset, end.log)
        if end.result is not None and self.call("PUT", "/result", data=end.result) is None:
            return
        fields = {"state": end.state, "error": end.error, "solver_status": end.solver_status, **end.usage}
        self.call("POST", "/finish", json=fields)

    def release(self, *, reason: str, usage: Any) -> None:
        self.call("POST", "/release", json={"reason": reason, **usage})


def _unpack(bundle: bytes, workdir: Path) -> dict[str, Any]:
    """Fill the working folder from the bundle; return the attempt's description."""
    from .runtime import package

    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:") as tar:
        members = {member.name: member for member in tar.getmembers() if member.isfile()}

        def read(name: str) -> bytes | None:
            member = members.get(name)
            handle = tar.extractfile(member) if member is not None else None
            return handle.read() if handle is not None else None

        package.extract_archive(read("app.tar") or b"", workdir / "app")
        (workdir / "job.json").write_bytes(read("job.json") or b"{}")
        case = read("input.case")
        if case is not None:
            (workdir / "input.case").write_bytes(case)
        return json.loads(read("attempt.json") or b"{}")


def _environment_sites(channel: RemoteChannel, environment: dict[str, Any] | None, root: Path) -> tuple[Path, ...]:
    """The app environment's packages on this node, fetched once and checked by their hash."""
    from .runtime import folder_archive

    if not environment:
        return ()
    folder = root / ".pro-envs" / environment["key"]
    if (folder / ".pro-ready").exists():
        return (folder / "site",)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        with tempfile.TemporaryFile(dir=building) as payload:
            if channel.download("/environment", payload) != environment["sha256"]:
                raise RunnerError("the app environment's archive does not match its hash")
            payload.seek(0)
            folder_archive.extract(payload, building / "site")
        (building / ".pro-ready").touch()
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another attempt on this node was first: use its copy
            building.rename(folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return (folder / "site",)


def run_attempt(environ: Mapping[str, str]) -> int:
    """Run the attempt the environment names; return the runner's exit code (0: its end is recorded)."""
    configure(environ)
    from . import launcher
    from .attempt import AttemptInfo, AttemptWatch, launch_solve
    from .network import NetworkGrant

    job_id, attempt = int(environ["PRO_JOB_ID"]), int(environ["PRO_JOB_ATTEMPT"])
    bundle_limit = APP_LIMIT + int(environ.get("PRO_MAX_CASE_BYTES", str(2 * 1024**3)))
    channel = RemoteChannel(environ["PRO_API_URL"], environ["PRO_JOB_TICKET"], job_id, attempt, bundle_limit)
    launcher.node_work_dir().mkdir(parents=True, exist_ok=True)
    workdir = launcher.new_workdir(f"job-{job_id}-{attempt}")
    info = AttemptInfo(job_id, attempt, "", 0.0, 0, 0)
    watch = AttemptWatch(info, channel, workdir)
    signal.signal(signal.SIGTERM, lambda *_: watch.shutdown.set())
    try:
        meta = _unpack(channel.bundle(), workdir)
        watch.info = AttemptInfo(
            job_id, attempt, meta["procedure"], meta["time_limit"], meta["memory_limit_mb"], meta["log_size"]
        )
        watch.log_offset = meta["log_size"]
        watch.secrets = tuple(meta.get("secrets", ()))
        engine = environ.get("PRO_EXECUTOR", "remote")
        watch.log(f"--- attempt {attempt} of job {job_id} on {engine} node {socket.gethostname()}: {meta['title']} ---")
        sites = _environment_sites(channel, meta.get("environment"), launcher.node_work_dir())
        network = meta.get("network") or {}
        grant = NetworkGrant(
            outbound=bool(network.get("outbound")), targets=tuple((h, int(p)) for h, p in network.get("targets", []))
        )
        watch.process, control_read = launch_solve(
            workdir,
            interpreter=sys.executable,
            site_dirs=sites,
            memory_limit_mb=watch.info.memory_limit_mb,
            grant=grant,
            connections=meta.get("connections") or {},
        )
        watch.start_readers(control_read)
        watch.record(watch.watch())
        return 0
    except Exception as exc:
        logger.exception("Attempt %s of job %s failed in its runner", attempt, job_id)
        with contextlib.suppress(Exception):
            watch.fail(f"The runner on {socket.gethostname()} could not run the job: {exc}")
        return 1
    finally:
        if watch.process is not None:
            watch.process.cleanup(remove_workdir=False)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = [
        name for name in ("PRO_API_URL", "PRO_JOB_TICKET", "PRO_JOB_ID", "PRO_JOB_ATTEMPT") if not os.environ.get(name)
    ]
    if missing:
        print(f"remote_runner: set {', '.join(missing)} (the platform's executor does)", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    os.environ.pop("PRO_JOB_TICKET")  # the sandbox's environment is made anew; this is one more guard
    return run_attempt(environ)


if __name__ == "__main__":
    sys.exit(main())
