"""The session manager of a node: starts, watches and stops its data session processes.

It keeps a pool of warm interpreters (started in their sandboxes, with the SDK, numpy and
HiGHS imported) so that a launch costs only decrypting the package and importing the app.
Each session runs in a sandbox of its own (:mod:`sessions.launcher`) with no network: it serves
on a listening socket this manager made for it on ``PRO_NODE_ADDRESS`` and reaches the API
through this manager's relay (:mod:`sessions.relay`). Its private folder is removed when the
session ends. Timeouts:

- ``START_TIMEOUT``: how long a session process may take to listen after its launch order;
- ``launcher.TERMINATE_GRACE``: between SIGTERM and SIGKILL of a sandbox.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from apps.accounts.models import ApiTicket
from apps.accounts.services import ticket_issue_for_user, ticket_revoke
from apps.catalog.archives import version_archive
from apps.catalog.environments import builtin_python, version_python
from apps.connections.services import Handover, connections_hand_over
from pro_portal import notify
from sessions.runtime import package
from sessions.runtime.connections import masked

from . import data_sessions as service
from . import launcher, selectors
from .models import DataSession, SessionState
from .network import NetworkGrant, grant_of
from .relay import Relays, forward_to, relays, socket_path, url_target

logger = logging.getLogger(__name__)

START_TIMEOUT = 20.0
API_SOCKET = "/pro/api.sock"  # where a session's sandbox sees its relay to the API


# (interpreter, package folders): what an app version runs with (apps.catalog.environments), and
# what a warm interpreter was started with.
Python = tuple[str, tuple[Path, ...]]
POOL_USE_SECONDS = 600.0  # an environment's pool lasts this long after its last launch


class WarmInterpreter:
    """A session process started ahead of need in its sandbox, waiting for its launch order on stdin."""

    def __init__(
        self,
        python: Python,
        relay: Relays,
        grant: NetworkGrant | None = None,
        preload: tuple[str, ...] = (),
        handover: Handover | None = None,
    ):
        self.handover = handover or Handover()
        self.workdir = launcher.new_workdir("session")
        (self.workdir / "app").mkdir()  # mounted read-only; the package is extracted into it later
        pool_args = ["--pool"]
        if preload:
            (self.workdir / "preload.txt").write_text("\n".join(preload))
            pool_args += ["--preload", f"{launcher.work_path(self.workdir)}/preload.txt"]
        self.api_socket = socket_path(self.workdir, "api")
        self.listener = socket.create_server((settings.PRO_NODE_ADDRESS, 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.relay = relay
        relay.open(self.api_socket, forward_to(*url_target(settings.PRO_INTERNAL_API_URL)))
        self.process = launcher.launch(
            launcher.LaunchSpec(
                name=self.workdir.name,
                interpreter=python[0],
                site_dirs=python[1],
                module="sessions.runtime.session_server",
                args=pool_args,
                workdir=self.workdir,
                env={"PRO_LISTEN_FD": str(self.listener.fileno())},
                memory_limit_mb=settings.PRO_SESSION_MEMORY_MB,
                network=grant or NetworkGrant(),
                connections=self.handover.details,
                read_only={API_SOCKET: self.api_socket},
                pass_fds=(self.listener.fileno(),),
                stdin=True,
            )
        )
        self.listener.close()  # the sandbox holds it now
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        if not self.ready:
            self.ready = launcher.read_until(self.process, "READY", timeout) == "READY"
        return self.ready

    def discard(self) -> None:
        self.process.stop()
        self.process.cleanup()
        self.relay.close(self.api_socket)


class RunningSession:
    def __init__(self, session: DataSession, warm: WarmInterpreter, ticket: ApiTicket):
        self.session, self.warm, self.ticket = session, warm, ticket
        self.process, self.workdir = warm.process, warm.workdir
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        """Keep the app's own output from filling the pipe; it goes to the session's folder, capped."""
        written = 0
        with open(self.workdir.with_name(self.workdir.name + ".log"), "ab") as sink:
            for raw in iter(lambda: self.process.stdout.readline(64 * 1024), b""):
                if written < settings.PRO_SESSION_LOG_BYTES:
                    raw = masked(raw.decode(errors="replace"), self.warm.handover.secrets).encode()
                    sink.write(raw)
                    sink.flush()
                    written += len(raw)


class SessionManager:
    def __init__(self, node: str, pool_size: int | None = None):
        self.node = node
        self.pool_size = settings.PRO_SESSION_POOL if pool_size is None else pool_size
        self.pool: dict[Python, list[WarmInterpreter]] = {}
        self.launches: dict[Python, list[float]] = {}  # recent launch times, which size the pools
        self.preloads: dict[Python, tuple[str, ...]] = {}  # what each environment's apps import
        self.running: dict[str, RunningSession] = {}
        self.relay = relays()

    # ------------------------------------------------------------ pool
    def _take_warm(self, python: Python) -> WarmInterpreter:
        self.launches.setdefault(python, []).append(time.monotonic())
        warm = self.pool.setdefault(python, [])
        while warm:
            candidate = warm.pop(0)
            if candidate.process.poll() is None and candidate.wait_ready(START_TIMEOUT):
                return candidate
            candidate.discard()
        return self._warm(python)

    def _warm(
        self, python: Python, grant: NetworkGrant | None = None, handover: Handover | None = None
    ) -> WarmInterpreter:
        return WarmInterpreter(python, self.relay, grant, self.preloads.get(python, ()), handover)

    def pool_sizes(self, default: Python | None) -> dict[Python, int]:
        """How many warm interpreters each Python gets: the default runtime's the full pool, every
        other as many as it had launches in the last ``POOL_USE_SECONDS`` (up to the pool size)."""
        since = time.monotonic() - POOL_USE_SECONDS
        sizes = {}
        for python, times in list(self.launches.items()):
            times[:] = [t for t in times if t > since]
            if times:
                sizes[python] = min(self.pool_size, len(times))
            else:
                del self.launches[python]
        if default is not None:
            sizes[default] = self.pool_size
        return sizes

    def refill_pools(self, default: Python | None) -> None:
        sizes = self.pool_sizes(default)
        for python in list(self.pool):
            if python not in sizes:
                for warm in self.pool.pop(python):
                    warm.discard()
        for python, size in sizes.items():
            self.refill_pool(python, size)

    def refill_pool(self, python: Python, size: int | None = None) -> None:
        warm = self.pool.setdefault(python, [])
        while len(warm) < (self.pool_size if size is None else size):
            warm.append(self._warm(python))

    # ------------------------------------------------------------ starting
    def start(self, session: DataSession) -> None:
        version = session.app_version
        warm = None
        try:
            archive = version_archive(version)
            handover = connections_hand_over(app=version.app, actor=session.owner, purpose=f"data session {session.pk}")
            grant = grant_of(version.app).with_targets(handover.targets)
            python = version_python(version)
            if version.environment is not None:
                self.preloads[python] = tuple(version.environment.preload)
            # The warm pool has no grants: an app with network grants gets a sandbox of its own.
            warm = self._warm(python, grant, handover) if grant else self._take_warm(python)
            package.extract_archive(archive, warm.workdir / "app")
            scope = {"session": str(session.pk), "app": version.app.name}
            raw_ticket, ticket = ticket_issue_for_user(
                user=session.owner, ttl_seconds=settings.PRO_SESSION_TICKET_TTL, scope=scope
            )
            order = {
                "app_dir": f"{launcher.work_path(warm.workdir)}/app",
                "secret": session.secret,
                "session": str(session.pk),
                "api_url": settings.PRO_INTERNAL_API_URL,
                "api_socket": API_SOCKET if launcher.mode() != "off" else str(warm.api_socket),
                "ticket": raw_ticket,
                "host": settings.PRO_NODE_ADDRESS,
            }
            self._send_order(warm, order)
        except Exception as exc:
            if warm is not None:
                warm.discard()
            logger.warning("Session %s failed to start: %s", session.pk, exc)
            service.session_mark_ended(
                session=session, state=SessionState.FAILED, error=f"The session could not start: {exc}"
            )
            return
        self.running[str(session.pk)] = RunningSession(session, warm, ticket)
        if not service.session_mark_running(
            session=session, host=settings.PRO_NODE_ADDRESS, port=warm.port, pid=warm.process.pid
        ):
            self.stop(str(session.pk))  # closed while it was starting

    @staticmethod
    def _send_order(warm: WarmInterpreter, order: dict[str, str]) -> None:
        if not warm.wait_ready(START_TIMEOUT):
            raise RuntimeError("the session interpreter did not start")
        warm.process.stdin.write((json.dumps(order) + "\n").encode())
        warm.process.stdin.flush()
        line = launcher.read_until(warm.process, "LISTENING", START_TIMEOUT)
        if not line.startswith("LISTENING"):
            raise RuntimeError(
                line.removeprefix("START FAILED ").strip() or "the session process did not start listening"
            )

    # ------------------------------------------------------------ watching and stopping
    def stop(self, session_id: str) -> None:
        running = self.running.pop(session_id, None)
        if running is None:
            return
        if running.process.poll() is None:
            try:
                self._record_usage(running)  # its last sample: closed, idle or the platform stopping
            except Exception:  # the process is stopped whatever
                logger.exception("Cannot record the last usage of session %s", session_id)
        running.warm.discard()
        running.warm.workdir.with_name(running.warm.workdir.name + ".log").unlink(missing_ok=True)
        ticket_revoke(ticket=running.ticket)

    def reconcile(self) -> None:
        """Stop what was closed, mark lost what died, close what is idle."""
        if not self.running:
            return
        states = selectors.session_states(self.running)
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
        for session in selectors.sessions_idle(node=self.node):
            service.session_mark_ended(session=session, state=SessionState.STOPPED, error="Closed after being idle.")
            self.stop(str(session.pk))

    def _record_usage(self, running: RunningSession) -> None:
        """Sample the session's sandbox: its memory now, its peak and CPU seconds kept as the most seen."""
        usage = running.process.usage()
        service.session_record_usage(
            session=running.session, memory_mb=round(usage.memory_mb, 1), cpu_seconds=round(usage.cpu_seconds, 2)
        )

    def mark_orphans(self) -> int:
        """Sessions this node was running before it restarted are gone: mark them lost."""
        return service.sessions_mark_lost_on_node(
            node=self.node, reason="The node restarted; the session process is gone."
        )

    def step(self) -> bool:
        if len(self.running) >= settings.PRO_MAX_SESSIONS:
            return False  # full: another node with the sessions role takes the next one
        session = service.session_claim_starting(node=self.node)
        if session is not None:
            self.start(session)
        return session is not None

    def run(self, stopping: threading.Event) -> None:
        launcher.mode()  # refuses to run app code where it cannot be sandboxed
        launcher.node_work_dir().mkdir(parents=True, exist_ok=True)
        launcher.remove_leftovers("session")
        self.mark_orphans()
        default = builtin_python()
        wake = notify.hub().subscribe("sessions")
        last_reconcile = 0.0
        while not stopping.is_set():
            try:
                started = self.step()
                if time.monotonic() - last_reconcile > 1.0:
                    last_reconcile = time.monotonic()
                    self.reconcile()
                    self.refill_pools(default)
            except Exception:
                logger.exception("The session manager's loop failed; trying again")
                started = False
            if not started:
                # Running sessions are reconciled every second (their processes are watched
                # here); an idle manager waits for a launch or a stop to be notified.
                wake.idle(stopping, 1.0 if self.running else settings.PRO_QUEUE_SAFETY_POLL_SECONDS)
        wake.close()
        self.shutdown()
        connection.close()

    def shutdown(self) -> None:
        for session_id, running in list(self.running.items()):
            service.session_mark_ended(
                session=running.session, state=SessionState.STOPPED, error="The platform stopped."
            )
            self.stop(session_id)
        for warm in (w for pool in self.pool.values() for w in pool):
            warm.discard()
        self.pool.clear()
