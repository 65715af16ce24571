import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pro_portal.env import env_int, env_str

STOP_GRACE_SECONDS = 10


class Command(BaseCommand):
    help = "Start the platform on this node: web (uvicorn), task workers (qcluster), the solve worker, the session manager and the node agent."

    def _children(self, host: str, port: int) -> dict[str, list[str]]:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # uvicorn rather than daphne: daphne queues a whole request body in memory, uvicorn streams it.
        web = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            host,
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            # The platform reads X-Forwarded-For itself, from PRO_TRUSTED_PROXIES only.
            "--no-proxy-headers",
        ]
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
        web += ["--no-access-log", "pro_portal.asgi:application"]
        roles = set(settings.PRO_NODE_ROLES)
        children = {"agent": [*manage, "node_agent"]}
        if "web" in roles:
            children["web"] = web
        children["workers"] = [*manage, "qcluster"]
        if "solves" in roles:
            children["solves"] = [*manage, "solve_worker"]
        if "sessions" in roles:
            children["sessions"] = [*manage, "session_manager"]
        return children

    def handle(self, **options):
        host = env_str("PRO_HTTP_HOST", "127.0.0.1")
        port = env_int("PRO_HTTP_PORT", 8000, minimum=1)
        children = self._children(host, port)  # refuses a bad configuration before anything starts
        stopping = []
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        processes = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in children.items()}
        scheme = "https" if env_str("PRO_TLS_CERT") else "http"
        where = f"at {scheme}://{host}:{port}/" if "web" in children else f"on node {settings.PRO_NODE_NAME}"
        self.stdout.write(f"Platform up {where} ({', '.join(children)}; data in {settings.DATA_DIR}); Ctrl-C stops it.")
        failed = None
        while not stopping and failed is None:
            time.sleep(0.5)
            failed = next((name for name, p in processes.items() if p.poll() is not None), None)
        if failed and not stopping:
            # Ctrl-C in a terminal reaches every child too; this process's own signal may land a moment later.
            time.sleep(1.0)
        if failed and stopping:
            failed = None
        if failed:
            self.stderr.write(
                f"{failed} stopped unexpectedly (exit {processes[failed].returncode}); stopping the platform."
            )
        self._stop(processes)
        self.stdout.write("Platform stopped.")
        sys.exit(1 if failed else 0)

    def _stop(self, processes: dict[str, subprocess.Popen]) -> None:
        """Ask every child to stop, then kill what is still running after the grace period."""
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in {STOP_GRACE_SECONDS}s; killing it.")
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
