"""The session manager of a node: starts, watches and stops its data session processes.

It keeps a pool of warm interpreters (started, with the SDK, numpy and HiGHS imported) so that
a launch costs only decrypting the package and importing the app. Each session process runs
in a process group of its own, in a private folder removed when the session ends. Timeouts:

- ``START_TIMEOUT``: how long a session process may take to listen after its launch order;
- ``TERMINATE_GRACE`` (shared with the solve worker): between SIGTERM and SIGKILL.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from apps.accounts.models import ApiTicket
from apps.accounts.services import ticket_issue_for_user
from apps.catalog.keys import platform_private_key
from sessions.runtime import package

from . import data_sessions as service
from .models import DataSession, SessionState
from .supervisor import kill_process_group, process_group_members

logger = logging.getLogger(__name__)

START_TIMEOUT = 20.0


class WarmInterpreter:
    """A session process started ahead of need, waiting for its launch order on stdin."""

    def __init__(self, interpreter: str):
        self.process = subprocess.Popen(
            [interpreter, "-m", "sessions.runtime.session_server", "--pool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=settings.PRO_WORK_DIR,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(settings.BASE_DIR),
                "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1",
            },
            start_new_session=True,
        )
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        if not self.ready:
            self.ready = _read_until(self.process, "READY", timeout) == "READY"
        return self.ready


def _read_until(process: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The first stdout line starting with ``prefix`` (or a failure line), within ``timeout``."""
    result: list[str] = []

    def read() -> None:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith(prefix) or line.startswith("START FAILED"):
                result.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[-1] if result else ""


class RunningSession:
    def __init__(self, session: DataSession, process: subprocess.Popen, workdir: Path, ticket: ApiTicket):
        self.session, self.process, self.workdir, self.ticket = session, process, workdir, ticket
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        """Keep the app's own output from filling the pipe; it goes to the session's folder."""
        with open(self.workdir / "session.log", "ab") as sink:
            for raw in iter(self.process.stdout.readline, b""):
                sink.write(raw)
                sink.flush()


class SessionManager:
    def __init__(self, node: str, pool_size: int | None = None):
        self.node = node
        self.pool_size = settings.PRO_SESSION_POOL if pool_size is None else pool_size
        self.pool: dict[str, list[WarmInterpreter]] = {}
        self.running: dict[str, RunningSession] = {}

    # ------------------------------------------------------------ pool
    def _take_warm(self, interpreter: str) -> WarmInterpreter:
        warm = self.pool.setdefault(interpreter, [])
        while warm:
            candidate = warm.pop(0)
            if candidate.process.poll() is None and candidate.wait_ready(START_TIMEOUT):
                return candidate
            kill_process_group(candidate.process)
        return WarmInterpreter(interpreter)

    def refill_pool(self, interpreter: str) -> None:
        warm = self.pool.setdefault(interpreter, [])
        while len(warm) < self.pool_size:
            warm.append(WarmInterpreter(interpreter))

    # ------------------------------------------------------------ starting
    def start(self, session: DataSession) -> None:
        version = session.app_version
        workdir = Path(settings.PRO_WORK_DIR) / f"session-{session.pk}-{secrets.token_hex(4)}"
        workdir.mkdir(parents=True, mode=0o700)
        warm = None
        try:
            with default_storage.open(version.package_path, "rb") as handle:
                archive = package.decrypt(handle.read(), platform_private_key())
            package.extract_archive(archive, workdir / "app")
            scope = {"session": str(session.pk), "app": version.app.name}
            raw_ticket, ticket = ticket_issue_for_user(
                user=session.owner, ttl_seconds=settings.PRO_SESSION_TICKET_TTL, scope=scope
            )
            order = {
                "app_dir": str(workdir / "app"),
                "secret": session.secret,
                "session": str(session.pk),
                "api_url": settings.PRO_INTERNAL_API_URL,
                "ticket": raw_ticket,
                "host": settings.PRO_NODE_ADDRESS,
            }
            warm = self._take_warm(version.runtime.interpreter)
            if not warm.wait_ready(START_TIMEOUT):
                raise RuntimeError("the session interpreter did not start")
            warm.process.stdin.write((json.dumps(order) + "\n").encode())
            warm.process.stdin.flush()
            line = _read_until(warm.process, "LISTENING", START_TIMEOUT)
            if not line.startswith("LISTENING"):
                raise RuntimeError(
                    line.removeprefix("START FAILED ").strip() or "the session process did not start listening"
                )
            port = int(line.split()[1])
        except Exception as exc:
            if warm is not None:
                kill_process_group(warm.process)
            shutil.rmtree(workdir, ignore_errors=True)
            logger.warning("Session %s failed to start: %s", session.pk, exc)
            service.session_mark_ended(
                session=session, state=SessionState.FAILED, error=f"The session could not start: {exc}"
            )
            return
        self.running[str(session.pk)] = RunningSession(session, warm.process, workdir, ticket)
        if not service.session_mark_running(
            session=session, host=settings.PRO_NODE_ADDRESS, port=port, pid=warm.process.pid
        ):
            self.stop(str(session.pk))  # closed while it was starting

    # ------------------------------------------------------------ watching and stopping
    def stop(self, session_id: str) -> None:
        running = self.running.pop(session_id, None)
        if running is None:
            return
        kill_process_group(running.process)
        shutil.rmtree(running.workdir, ignore_errors=True)
        ApiTicket.objects.filter(pk=running.ticket.pk).update(revoked_at=timezone.now())

    def reconcile(self) -> None:
        """Stop what was closed, mark lost what died, close what is idle."""
        if not self.running:
            return
        states = dict(DataSession.objects.filter(pk__in=list(self.running)).values_list("pk", "state"))
        for session_id, running in list(self.running.items()):
            state = states.get(running.session.pk)
            if state != SessionState.RUNNING and state != SessionState.STARTING:
                self.stop(session_id)
            elif running.process.poll() is not None:
                code = running.process.returncode
                service.session_mark_ended(
                    session=running.session,
                    state=SessionState.LOST,
                    error=f"The session process ended unexpectedly (exit {code}).",
                )
                self.stop(session_id)
            else:
                self._record_usage(running)
        for session in service.sessions_idle(node=self.node):
            service.session_mark_ended(session=session, state=SessionState.STOPPED, error="Closed after being idle.")
            self.stop(str(session.pk))

    def _record_usage(self, running: RunningSession) -> None:
        rss = cpu = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in process_group_members(running.process.pid):
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
                cpu += (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError, ValueError):
                continue
        service.session_record_usage(session=running.session, memory_mb=round(rss, 1), cpu_seconds=round(cpu, 2))

    def mark_orphans(self) -> int:
        """Sessions this node was running before it restarted are gone: mark them lost."""
        return DataSession.objects.filter(
            node=self.node, state__in=[SessionState.STARTING, SessionState.RUNNING]
        ).update(state=SessionState.LOST, error_message="The node restarted; the session process is gone.")

    def step(self) -> bool:
        if len(self.running) >= settings.PRO_MAX_SESSIONS:
            return False  # full: another node with the sessions role takes the next one
        session = service.session_claim_starting(node=self.node)
        if session is not None:
            self.start(session)
        return session is not None

    def run(self, stopping: threading.Event) -> None:
        Path(settings.PRO_WORK_DIR).mkdir(parents=True, exist_ok=True)
        self.mark_orphans()
        from apps.catalog.models import Runtime

        interpreters = list(Runtime.objects.values_list("interpreter", flat=True))
        last_reconcile = 0.0
        while not stopping.is_set():
            try:
                started = self.step()
                if time.monotonic() - last_reconcile > 1.0:
                    last_reconcile = time.monotonic()
                    self.reconcile()
                    for interpreter in interpreters:
                        self.refill_pool(interpreter)
            except Exception:
                logger.exception("The session manager's loop failed; trying again")
                started = False
            if not started:
                stopping.wait(settings.PRO_JOB_POLL_SECONDS)
        self.shutdown()
        connection.close()

    def shutdown(self) -> None:
        for session_id, running in list(self.running.items()):
            service.session_mark_ended(
                session=running.session, state=SessionState.STOPPED, error="The platform stopped."
            )
            self.stop(session_id)
        for warm in (w for pool in self.pool.values() for w in pool):
            kill_process_group(warm.process)
        self.pool.clear()
