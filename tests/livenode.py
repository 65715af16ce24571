"""A real node for tests: the web server (uvicorn), the solve worker and the session manager as processes.

They run against the test database and the test's storage folder, each in a process group
of its own, and are stopped (and checked gone) after the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class LiveNode:
    url: str
    port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, name: str) -> None:
        """Start (or start again, after a crash) one process of the node, appending to its log."""
        with open(self.logs[name], "ab") as sink:
            self.processes[name] = subprocess.Popen(
                self.commands[name],
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGUSR2)  # its threads' stacks, into its log
                time.sleep(1)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise AssertionError(f"{name} did not stop on SIGTERM:\n{self.log(name)[-3000:]}") from None


def start_node(
    tmp_path: Path, storage_folder: Path, roles=("web", "solves", "sessions"), extra_env: dict | None = None
) -> LiveNode:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pro_portal.test_settings",
        "PRO_DATA_DIR": str(settings.DATA_DIR),
        "PRO_STORAGE_URL": storage_folder.as_uri(),
        "DATABASE_URL": test_database_url(),
        "PRO_HTTP_PORT": str(port),
        "PRO_INTERNAL_API_URL": f"http://127.0.0.1:{port}",
        "PRO_NODE_NAME": f"test-node-{port}",
        "PRO_SESSION_POOL": "1",
        **(extra_env or {}),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    commands = {
        "web": [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--no-access-log",
            "--no-proxy-headers",
            "pro_portal.asgi:application",
        ]
    }
    if "solves" in roles:
        commands["solves"] = [*manage, "solve_worker"]
    if "sessions" in roles:
        commands["sessions"] = [*manage, "session_manager"]
    node = LiveNode(url=f"http://127.0.0.1:{port}", port=port, commands=commands, env=env)
    for name in commands:
        node.logs[name] = tmp_path / f"{name}.log"
        node.start(name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{node.url}/healthz", timeout=1).status_code == 200:
                return node
        except requests.ConnectionError:
            time.sleep(0.1)
    node.stop()
    raise AssertionError(f"the web server did not start:\n{node.log('web')[-3000:]}")


@pytest.fixture
def live_node(transactional_db, tmp_path, storage_folder):
    node = start_node(tmp_path, storage_folder)
    yield node
    node.stop()
