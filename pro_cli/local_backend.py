"""The cases and solves of ``pro app run``: cases in a local folder, solves in a local process or
delegated to a platform. No Django, no server install.

A local solve is the platform's own solve process (:mod:`sessions.runtime.solve_runner`) started
unsandboxed with the modeler's Python on the modeler's own app folder: the modeler's code, on
the modeler's machine. Its log, progress, interrupt (SIGUSR1) and cancel behave as on a server.
Storage files the solve asks for come from ``--storage DIR`` or, with a platform, from the
platform's storage with the user's API key.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sessions
from sessions.runtime.api_client import ApiClient, ApiError
from sessions.runtime.case import read_case
from sessions.runtime.session_backend import JOB_ENDED_STATES, BackendRefused, PlatformBackend

CASE_SUFFIX = ".case"
REMOTE_PREFIX = "platform:"  # a platform case's id in the local list, beside the local files' names
CANCEL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a cancelled local solve


class LocalError(BackendRefused):
    """What the local runner refuses; the WebUI shows the message."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class LocalJob:
    id: int
    procedure: str
    created_at: str = field(default_factory=now_iso)
    state: str = "queued"
    progress: dict[str, Any] = field(default_factory=dict)
    progress_points: list[dict[str, Any]] = field(default_factory=list)
    solver_status: str = ""
    error_message: str = ""
    log: list[str] = field(default_factory=list)
    finished: bool = False
    result: bytes | None = None
    process: subprocess.Popen | None = None
    cancelled: bool = False
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> dict[str, Any]:
        keys = ("id", "procedure", "state", "progress", "progress_points", "solver_status", "error_message")
        return {"attempt": 1, "created_at": self.created_at, "result_case": self.result is not None} | {
            k: getattr(self, k) for k in keys
        }


class LocalCases:
    """Saved cases as ``<name>.case`` files in one folder (the platform's case files, byte for byte)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def list(self) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        found = sorted(self.folder.glob(f"*{CASE_SUFFIX}"), key=lambda path: path.stat().st_mtime, reverse=True)
        return [self._describe(path) for path in found]

    @staticmethod
    def _describe(path: Path) -> dict[str, Any]:
        stat = path.stat()
        created = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
        return {"id": path.name, "name": path.stem, "created_at": created, "size": stat.st_size, "where": "local"}

    def path_of(self, case_id: str) -> Path:
        if not case_id.endswith(CASE_SUFFIX) or "/" in case_id or case_id.startswith("."):
            raise LocalError(f"no local case {case_id!r}")
        path = self.folder / case_id
        if not path.is_file():
            raise LocalError(f"no local case {case_id!r}")
        return path

    def save(self, blob: bytes, name: str) -> dict[str, Any]:
        read_case(blob)  # only a whole, readable case is kept
        if not re.fullmatch(r"[^/\\\x00-\x1f]{1,120}", name) or name.startswith("."):
            raise LocalError("a case name is 1 to 120 characters, without slashes, and does not start with a dot")
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{name}{CASE_SUFFIX}"
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(blob)
        os.replace(partial, target)  # a case is replaced whole or not at all
        return self._describe(target)


class LocalBackend:
    """Cases in ``cases_dir``; solves here, or on ``platform`` (a :class:`PlatformBackend`) when
    ``solve_remote``. With a platform, its saved cases are listed too and can be pulled or pushed."""

    poll_seconds = 0.1

    def __init__(
        self,
        app_dir: Path,
        cases_dir: Path,
        *,
        time_limits: dict[str, float | None],
        storage_dir: Path | None = None,
        platform: PlatformBackend | None = None,
        solve_remote: bool = False,
    ):
        self.app_dir = app_dir
        self.cases = LocalCases(cases_dir)
        self.time_limits = time_limits
        self.storage_dir = storage_dir
        self.platform = platform
        self.solve_remote = solve_remote and platform is not None
        self.jobs: dict[int, LocalJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ solves
    def submit_solve(self, procedure: str, input_case: bytes) -> dict[str, Any]:
        if self.solve_remote:
            assert self.platform is not None
            return self.platform.submit_solve(procedure, input_case)
        job = LocalJob(next(self._ids), procedure)
        self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, input_case), name=f"local-job-{job.id}", daemon=True).start()
        return job.describe()

    def job(self, job_id: int) -> dict[str, Any]:
        if self.solve_remote:
            return self.platform.job(job_id)  # type: ignore[union-attr]
        return self._local_job(job_id).describe()

    def job_log(self, job_id: int, offset: int) -> dict[str, Any]:
        if self.solve_remote:
            return self.platform.job_log(job_id, offset)  # type: ignore[union-attr]
        job = self._local_job(job_id)
        with self._lock:
            text = "".join(job.log)
            finished = job.finished
        return {"text": text[offset:], "offset": len(text), "size": len(text), "finished": finished}

    def job_result(self, job_id: int) -> bytes:
        if self.solve_remote:
            return self.platform.job_result(job_id)  # type: ignore[union-attr]
        result = self._local_job(job_id).result
        if result is None:
            raise LocalError(f"job {job_id} has no result")
        return result

    def stop_job(self, job_id: int, interrupt: bool) -> dict[str, Any]:
        if self.solve_remote:
            return self.platform.stop_job(job_id, interrupt)  # type: ignore[union-attr]
        job = self._local_job(job_id)
        process = job.process
        if job.state in JOB_ENDED_STATES or process is None:
            return job.describe()
        if interrupt:
            process.send_signal(signal.SIGUSR1)  # the solver stops and keeps its best solution
        else:
            job.cancelled = True
            process.terminate()
            threading.Timer(CANCEL_GRACE, _kill_if_running, args=(process,)).start()
        return job.describe()

    def _local_job(self, job_id: int) -> LocalJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise LocalError(f"no job {job_id} in this session")
        return job

    def _run(self, job: LocalJob, input_case: bytes) -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"pro-local-job-{job.id}-"))
        try:
            self._solve(job, input_case, workdir)
        except Exception as exc:  # the runner itself failed to start: the job says why
            job.error_message = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
        finally:
            with self._lock:
                job.finished = True
            shutil.rmtree(workdir, ignore_errors=True)

    def _solve(self, job: LocalJob, input_case: bytes, workdir: Path) -> None:
        spec = {
            "procedure": job.procedure,
            "time_limit": self.time_limits.get(job.procedure),
            "app_dir": str(self.app_dir),
        }
        (workdir / "job.json").write_text(json.dumps(spec))
        (workdir / "input.case").write_bytes(input_case)
        control_read, control_write = os.pipe()
        # The runtime's package importable in the child whether this runs from a wheel or a checkout.
        here = str(Path(sessions.__file__).resolve().parent.parent)
        env = {**os.environ, "PRO_CONTROL_FD": str(control_write), "PYTHONPATH": here, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "sessions.runtime.solve_runner", str(workdir)]
        self._log(job, f"--- job {job.id}: {job.procedure}, solved on this machine ---\n")
        # Unsandboxed: the modeler's own app, on the modeler's machine, as `python model.py` would be.
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(control_write,),
        )
        os.close(control_write)
        job.process, job.state = process, "running"
        reader = threading.Thread(target=self._read_control, args=(job, control_read, process), daemon=True)
        reader.start()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        assert process.stdout is not None
        for raw in iter(lambda: process.stdout.readline(65536), b""):  # type: ignore[union-attr]
            self._log(job, decoder.decode(raw))
        code = process.wait()
        reader.join(timeout=5)
        self._finish(job, code, workdir)

    def _finish(self, job: LocalJob, code: int, workdir: Path) -> None:
        try:
            outcome = json.loads((workdir / "outcome.json").read_text())
        except (OSError, ValueError):
            outcome = {}
        result = workdir / "result.case"
        job.solver_status = outcome.get("status", "")
        if job.cancelled:
            job.state, job.error_message = "cancelled", "cancelled by the user"
        elif code == 0 and result.is_file():
            job.result, job.state = result.read_bytes(), "succeeded"
        else:
            job.state = "failed"
            job.error_message = outcome.get("error") or f"the solve process ended with exit code {code}"
        self._log(job, f"--- job {job.id} {job.state} in {time.monotonic() - job.started:.2f} s ---\n")

    def _log(self, job: LocalJob, text: str) -> None:
        with self._lock:
            job.log.append(text)

    def _read_control(self, job: LocalJob, fd: int, process: subprocess.Popen) -> None:
        with os.fdopen(fd, "r") as control:
            for line in control:
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if message.get("type") == "progress":
                        self._on_progress(job, message)
                    elif message.get("type") == "fetch":
                        self._answer(process.stdin, self._fetch(str(message.get("path", "")), process))

    def _on_progress(self, job: LocalJob, message: dict[str, Any]) -> None:
        job.progress = {k: message.get(k) for k in ("fraction", "message", "objective", "bound")}
        if message.get("objective") is not None or message.get("bound") is not None:
            point = {"objective": message.get("objective"), "bound": message.get("bound")}
            job.progress_points.append({"t": round(time.monotonic() - job.started, 3)} | point)

    def _fetch(self, path: str, process: subprocess.Popen) -> dict[str, Any]:
        """A storage file for the solve: from ``--storage DIR``, else from the platform's storage."""
        relative = Path(path.strip("/"))
        if not path.strip("/") or ".." in relative.parts:
            return {"ok": False, "error": f"{path!r} is not a storage path"}
        if self.storage_dir is not None and (self.storage_dir / relative).is_file():
            return {"ok": True, "local": str((self.storage_dir / relative).resolve())}
        if self.platform is None:
            where = (
                f"{self.storage_dir} has"
                if self.storage_dir
                else "no storage folder (--storage DIR) and no platform have"
            )
            return {"ok": False, "error": f"{where} no file {path!r}"}
        try:
            blob = self.platform.api.get_bytes(f"storage/{relative.as_posix()}")
        except ApiError as exc:
            return {"ok": False, "error": f"the platform's storage: {exc}"}
        target = Path(tempfile.mkdtemp(prefix="pro-local-file-")) / relative.name
        target.write_bytes(blob)
        return {"ok": True, "local": str(target)}

    @staticmethod
    def _answer(stdin: IO[bytes] | None, answer: dict[str, Any]) -> None:
        if stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.write((json.dumps(answer) + "\n").encode())
            stdin.flush()

    # ------------------------------------------------------------ cases
    def list_cases(self) -> list[dict[str, Any]]:
        cases = self.cases.list()
        if self.platform is not None:
            for case in self.platform.list_cases():
                cases.append(case | {"id": f"{REMOTE_PREFIX}{case['id']}", "where": "platform", "remote": True})
        return cases

    def save_case(self, blob: bytes, name: str) -> dict[str, Any]:
        return self.cases.save(blob, name)

    def case_bytes(self, case_id: str) -> bytes:
        if case_id.startswith(REMOTE_PREFIX):
            return self._platform().case_bytes(case_id.removeprefix(REMOTE_PREFIX))
        return self.cases.path_of(case_id).read_bytes()

    def delete_case(self, case_id: str) -> None:
        if case_id.startswith(REMOTE_PREFIX):
            self._platform().delete_case(case_id.removeprefix(REMOTE_PREFIX))
        else:
            self.cases.path_of(case_id).unlink()

    def push_case(self, case_id: str) -> dict[str, Any]:
        """A local case stored on the platform under its name (a copy: the local file stays)."""
        path = self.cases.path_of(case_id)
        return self._platform().save_case(path.read_bytes(), path.stem)

    def pull_case(self, case_id: str) -> dict[str, Any]:
        """A platform case kept as a local file under its name."""
        remote_id = case_id.removeprefix(REMOTE_PREFIX)
        listed = {str(case["id"]): case for case in self._platform().list_cases()}
        name = listed.get(remote_id, {}).get("name") or f"case {remote_id}"
        return self.cases.save(self._platform().case_bytes(remote_id), name)

    def _platform(self) -> PlatformBackend:
        if self.platform is None:
            raise LocalError("no platform: start with --remote URL and an API key to reach its cases")
        return self.platform


def _kill_if_running(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()


def platform_backend(url: str, api_key: str, app: str, version: str | None) -> PlatformBackend:
    """The platform's cases and jobs of ``app`` with an API key (``version`` None: its latest)."""
    return PlatformBackend(ApiClient(url, api_key), app, version)
