"""``manage.py run_platform``: start this node's processes and keep them running.

The children are web (uvicorn), the task workers (qcluster), the solve worker, the session
manager and the node agent, as the node's roles ask. A child that exits while the platform is
not stopping is started again after a backoff: 1 s, doubling with every failure in a row up to
60 s; a child that stayed up for 60 s has recovered, and its next failure waits 1 s again. Every
restart is written on stderr (the child, how it ended, the delay) and counted on the node's row
(the nodes page shows it); a database that cannot record it does not hold the restart back.

A child that cannot start at all is a configuration error, not a crash: when the same child
dies within 10 s of starting 5 times in a row (e.g. the web server cannot bind its port), the
platform stops, saying which child and how it ended, and exits with status 1.

Ctrl-C or SIGTERM stops every child: SIGTERM, then SIGKILL for those still running after 10 s.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from apps.cluster.services import node_child_restarted
from pro_portal.env import env_int, env_str
from sessions.management.lifecycle import stop_on_signals

STOP_GRACE_SECONDS = 10
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
STABLE_SECONDS = 60.0  # a child up this long has recovered: the backoff starts again at its first delay
QUICK_SECONDS = 10.0  # a child dead this soon after its start could not start at all
MAX_QUICK_FAILURES = 5  # quick failures in a row of one child that stop the platform
POLL_SECONDS = 0.5


def web_workers() -> int:
    """How many web server processes: PRO_WEB_WORKERS, else one per core this process may use."""
    configured = env_int("PRO_WEB_WORKERS", 0, minimum=0)
    return configured or max(1, len(os.sched_getaffinity(0)))


def port_free(host: str, port: int) -> None:
    """Refuse to start when something holds the port already (a platform left running, say): the
    web processes' SO_REUSEPORT would otherwise share the port with it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections do not count
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"Cannot serve on {host}:{port}: {exc.strerror} (is the platform running already?)"
            ) from None


def fresh_metrics_folder() -> Path:
    """Where the web server processes of this node keep their request metrics (prometheus_client's
    multiprocess files), emptied at each start: the counts of a previous run are not carried over."""
    folder = Path(settings.DATA_DIR) / "metrics" / settings.PRO_NODE_NAME
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return folder


def backoff_delay(failures: int) -> float:
    """Seconds to wait before restarting a child after its ``failures``-th failure in a row (1 or more)."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(failures - 1, 32))


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


class GiveUp(Exception):
    """A child keeps failing as soon as it starts: the platform stops."""


@dataclass
class Child:
    """One child of the platform, its process and its record of failures."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the platform's own environment
    process: subprocess.Popen | None = None
    started_at: float = 0.0  # time.monotonic() of its last start
    failures: int = 0  # failures in a row (reset once it stayed up for STABLE_SECONDS)
    quick_failures: int = 0  # failures in a row within QUICK_SECONDS of a start
    restart_at: float | None = None  # set while it is dead and waits for its restart

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=settings.BASE_DIR, env={**os.environ, **self.env})
        self.started_at = time.monotonic()
        self.restart_at = None

    def failed(self, now: float) -> float:
        """Count the exit of its process; the delay before its restart. Raise GiveUp when it cannot start."""
        uptime = now - self.started_at
        self.failures = 1 if uptime >= STABLE_SECONDS else self.failures + 1
        self.quick_failures = self.quick_failures + 1 if uptime < QUICK_SECONDS else 0
        if self.quick_failures >= MAX_QUICK_FAILURES:
            raise GiveUp(
                f"{self.name} failed {self.quick_failures} times in a row within {QUICK_SECONDS:g}s of its start"
                f" (last: {how_it_ended(self.process.returncode)}); stopping the platform. Its output above says why."
            )
        delay = backoff_delay(self.failures)
        self.restart_at = now + delay
        return delay


class Command(BaseCommand):
    help = "Start the platform on this node: web (uvicorn, a process per core), task workers (qcluster), the solve worker, the session manager and the node agent; restart a child that dies."

    def _children(self, host: str, port: int) -> dict[str, list[str]]:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # uvicorn rather than daphne: daphne queues a whole request body in memory, uvicorn streams it.
        # One server process per core (PRO_WEB_WORKERS), each with a socket of its own on the same
        # port (pro_portal/web_process.py): Python runs one request at a time per process.
        web = [sys.executable, "-m", "pro_portal.web_process", "--host", host, "--port", str(port)]
        cert, key = env_str("PRO_TLS_CERT"), env_str("PRO_TLS_KEY")
        if cert or key:
            missing = [
                name for name, path in (("PRO_TLS_CERT", cert), ("PRO_TLS_KEY", key)) if not os.path.isfile(path)
            ]
            if missing:
                raise CommandError(
                    f"HTTPS needs a certificate and its key: set {' and '.join(missing)} to a readable file."
                )
            web += ["--ssl-certfile", cert, "--ssl-keyfile", key]
        roles = set(settings.PRO_NODE_ROLES)
        children = {"agent": [*manage, "node_agent"]}
        if "web" in roles:
            children["web"] = web
            for number in range(2, web_workers() + 1):
                children[f"web-{number}"] = web
        children["workers"] = [*manage, "qcluster"]
        if "solves" in roles:
            children["solves"] = [*manage, "solve_worker"]
        if "sessions" in roles:
            children["sessions"] = [*manage, "session_manager"]
        return children

    def handle(self, **options):
        host = env_str("PRO_HTTP_HOST", "127.0.0.1")
        port = env_int("PRO_HTTP_PORT", 8000, minimum=1)
        # Refuses a bad configuration before anything starts.
        # Every child keeps its database connections (a reconnection costs more than most of
        # its queries): the web server's request threads check theirs before each request
        # (pro_portal.handler); the background children skip the check (their loops reconnect
        # after an error).
        keep = {"PRO_DB_CONN_MAX_AGE": env_str("PRO_DB_CONN_MAX_AGE", "600")}
        background = {**keep, "PRO_DB_CONN_HEALTH_CHECKS": env_str("PRO_DB_CONN_HEALTH_CHECKS", "false")}
        web = {**keep, "PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_folder())}
        children = [
            Child(name, cmd, background if name in ("workers", "solves", "sessions", "agent") else web)
            for name, cmd in self._children(host, port).items()
        ]
        if "web" in settings.PRO_NODE_ROLES:
            port_free(host, port)
        stopping = stop_on_signals()
        for child in children:
            child.start()
        scheme = "https" if env_str("PRO_TLS_CERT") else "http"
        names = [c.name for c in children]
        shown = [name for name in names if not name.startswith("web-")]
        where = f"at {scheme}://{host}:{port}/" if "web" in names else f"on node {settings.PRO_NODE_NAME}"
        web_count = sum(1 for name in names if name == "web" or name.startswith("web-"))
        shown = [f"web ({web_count} processes)" if name == "web" and web_count > 1 else name for name in shown]
        self.stdout.write(f"Platform up {where} ({', '.join(shown)}; data in {settings.DATA_DIR}); Ctrl-C stops it.")
        try:
            self._supervise(children, stopping)
            failed = False
        except GiveUp as exc:
            self.stderr.write(str(exc))
            failed = True
        self._stop(children)
        self.stdout.write("Platform stopped.")
        sys.exit(1 if failed else 0)

    def _supervise(self, children: list[Child], stopping: threading.Event) -> None:
        """Restart the children that die, until the platform is asked to stop."""
        while not stopping.is_set():
            time.sleep(POLL_SECONDS)
            dead = [c for c in children if c.restart_at is None and c.process.poll() is not None]
            if dead:
                # Ctrl-C in a terminal reaches every child too; this process's own signal may land a moment later.
                time.sleep(1.0)
                if stopping.is_set():
                    return
            for child in dead:
                delay = child.failed(time.monotonic())
                self.stderr.write(
                    f"{child.name} stopped unexpectedly ({how_it_ended(child.process.returncode)});"
                    f" restarting it in {delay:g}s."
                )
            for child in children:
                if child.restart_at is not None and time.monotonic() >= child.restart_at and not stopping.is_set():
                    self._restart(child)

    def _restart(self, child: Child) -> None:
        ended = how_it_ended(child.process.returncode)
        child.start()
        self.stderr.write(f"{child.name} restarted (pid {child.process.pid}).")
        threading.Thread(target=self._record_restart, args=(child.name, ended), daemon=True).start()

    def _record_restart(self, child: str, ended: str) -> None:
        """Count the restart on this node's row, in a thread of its own: a slow database delays nothing."""
        try:
            node_child_restarted(child=child, reason=ended)
        except Exception as exc:  # the database may be down, or not migrated yet
            self.stderr.write(f"Could not record the restart of {child} in the admin database: {exc}")
        finally:
            connection.close()

    def _stop(self, children: list[Child]) -> None:
        """Ask every child to stop, then kill what is still running after the grace period."""
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop in {STOP_GRACE_SECONDS}s; killing it.")
                os.kill(child.process.pid, signal.SIGKILL)
                child.process.wait()
