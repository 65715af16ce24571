"""The real web server for tests, serving the platform against the test database.

``platform_server`` starts the ASGI server exactly as ``run_platform`` starts it (uvicorn since
the platform moved off daphne), in a process group of its own, on a free port, with the test's
database and storage folder; it waits until ``/healthz`` answers and stops the group after the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    """A ``DATABASE_URL`` naming the database this test process uses (the test database)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"].endswith("postgresql"):
        auth = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "127.0.0.1"
        return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL for the engine {db['ENGINE']}")


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns something truthy; return that, or ``None`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def stop_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group led by ``process``, then SIGKILL it if it is still there."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left in the group, the leader included
    process.wait()


def web_server_command(host: str, port: int) -> list[str]:
    """The web server's command line, taken from ``run_platform`` so that tests serve what production serves."""
    from apps.cluster.management.commands.run_platform import Command

    return Command()._children(host, port)["web"]


@dataclass
class PlatformServer:
    url: str
    port: int
    pid: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def platform_server(transactional_db, storage_folder, tmp_path):
    """The platform's web server, on the test database and this test's storage folder."""
    from django.conf import settings

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pro_portal.test_settings",
        "PRO_DATA_DIR": str(settings.DATA_DIR),
        "PRO_STORAGE_URL": storage_folder.as_uri(),
        "DATABASE_URL": database_url(),
        "PRO_HTTP_PORT": str(port),
    }
    log_path = tmp_path / "web.log"
    command = web_server_command("127.0.0.1", port)
    with open(log_path, "wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = PlatformServer(
        url=f"http://127.0.0.1:{port}", port=port, pid=process.pid, process=process, log_path=log_path
    )
    try:
        up = wait_until(lambda: process.poll() is not None or healthy(server.url), START_TIMEOUT, interval=0.1)
        if not up or process.poll() is not None:
            raise AssertionError(
                f"{command[2]} did not answer /healthz within {START_TIMEOUT:.0f}s "
                f"(exit code {process.poll()}); its output:\n{server.log()[-5000:]}"
            )
        yield server
    finally:
        stop_group(process)
        # Shown by pytest when the test fails: what the server logged.
        print(f"---- web server output ({log_path}) ----\n{server.log()[-20000:]}")
