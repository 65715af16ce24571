"""Real platform processes for tests, against the test database and the test's storage folder.

One harness for every test that starts the platform's own processes:

- ``platform_env``, ``start_group``, ``stop_groups``/``stop_group``, ``wait_healthy``: the
  environment a platform process of the tests gets (test settings, this run's data folder, the
  test database, a port), a process started in a process group of its own with its output in a
  file, stopped as a whole (SIGTERM, then SIGKILL; a process that ignored SIGTERM dumps its
  stacks first, on SIGUSR2), and the wait for ``/healthz``;
- ``platform_server`` (fixture): the web server alone, started exactly as ``run_platform`` starts it;
- ``start_node`` and ``live_node`` (fixture): a node's web server, solve worker and session manager.

Whole ``run_platform`` nodes for failover tests are in ``tests/cluster.py``, on the same harness.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.helpers import ROOT, wait_until

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


# ---------------------------------------------------------------- ports, database, environment


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


def platform_env(port: int, storage_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a platform process of the tests: this process's, with the test settings,
    this run's data folder, the test database and ``port``; ``extra`` adds or overrides."""
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pro_portal.test_settings",
        "PRO_DATA_DIR": str(settings.DATA_DIR),
        "DATABASE_URL": database_url(),
        "PRO_HTTP_PORT": str(port),
    }
    if storage_url:
        env["PRO_STORAGE_URL"] = storage_url
    env.update(extra)
    return env


# ---------------------------------------------------------------- process groups


def start_group(command: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start ``command`` in a session (and process group) of its own, appending its output to ``log_path``."""
    with open(log_path, "ab") as sink:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_groups(processes: dict[str, subprocess.Popen], timeout: float = STOP_TIMEOUT) -> list[str]:
    """SIGTERM every group led by one of ``processes``, wait for their leaders, then SIGKILL what is left.

    A leader still running after ``timeout`` gets SIGUSR2 first (the platform's commands dump
    their threads' stacks into their logs on it). Return the names of those that had to be killed.
    """
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGUSR2)
            time.sleep(1)
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left in the group, the leader included
        process.wait()
    return killed


def stop_group(process: subprocess.Popen, timeout: float = 15) -> bool:
    """Stop the group led by ``process`` (see ``stop_groups``); whether it stopped on SIGTERM."""
    return not stop_groups({"": process}, timeout)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_healthy(url: str, processes: Iterable[subprocess.Popen], timeout: float = START_TIMEOUT) -> bool:
    """Until ``url`` answers ``/healthz``: True; False at the timeout or as soon as one of ``processes`` exits."""
    processes = list(processes)

    def settled() -> bool:
        return any(p.poll() is not None for p in processes) or healthy(url)

    return bool(wait_until(settled, timeout, interval=0.1)) and all(p.poll() is None for p in processes)


def web_server_command(host: str, port: int) -> list[str]:
    """The web server's command line, taken from ``run_platform`` so that tests serve what production serves."""
    from apps.cluster.management.commands.run_platform import Command

    return Command()._children(host, port)["web"]


# ---------------------------------------------------------------- the web server alone


@dataclass
class PlatformServer:
    url: str
    port: int
    pid: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start_web_server(env: dict[str, str], log_path: Path) -> Iterator[PlatformServer]:
    """The web server on ``env``'s ``PRO_HTTP_PORT`` until the block ends; its log is printed then
    (pytest shows it when the test fails)."""
    port = int(env["PRO_HTTP_PORT"])
    command = web_server_command("127.0.0.1", port)
    process = start_group(command, env, log_path)
    server = PlatformServer(
        url=f"http://127.0.0.1:{port}", port=port, pid=process.pid, process=process, log_path=log_path
    )
    try:
        if not wait_healthy(server.url, [process]):
            raise AssertionError(
                f"{command[2]} did not answer /healthz within {START_TIMEOUT:.0f}s "
                f"(exit code {process.poll()}); its output:\n{server.log()[-5000:]}"
            )
        yield server
    finally:
        stop_group(process)
        print(f"---- web server output ({log_path}) ----\n{server.log()[-20000:]}")


@pytest.fixture
def platform_server(transactional_db, storage_folder, tmp_path):
    """The platform's web server, on the test database and this test's storage folder."""
    env = platform_env(free_port(), storage_folder.as_uri())
    with start_web_server(env, tmp_path / "web.log") as server:
        yield server


# ---------------------------------------------------------------- a node: web server, solve worker, session manager


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
        self.processes[name] = start_group(self.commands[name], self.env, self.logs[name])

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def stop(self) -> None:
        """Stop every process of the node; fail when one of them did not stop on SIGTERM."""
        killed = stop_groups(self.processes)
        if killed:
            raise AssertionError(
                "\n".join(f"{name} did not stop on SIGTERM:\n{self.log(name)[-3000:]}" for name in killed)
            )


def start_node(
    tmp_path: Path, storage_folder: Path, roles=("web", "solves", "sessions"), extra_env: dict | None = None
) -> LiveNode:
    port = free_port()
    node_env = {
        "PRO_INTERNAL_API_URL": f"http://127.0.0.1:{port}",
        "PRO_NODE_NAME": f"test-node-{port}",
        "PRO_SESSION_POOL": "1",
    }
    env = platform_env(port, storage_folder.as_uri(), **{**node_env, **(extra_env or {})})
    manage = [sys.executable, str(ROOT / "manage.py")]
    commands = {"web": web_server_command("127.0.0.1", port)}
    if "solves" in roles:
        commands["solves"] = [*manage, "solve_worker"]
    if "sessions" in roles:
        commands["sessions"] = [*manage, "session_manager"]
    node = LiveNode(url=f"http://127.0.0.1:{port}", port=port, commands=commands, env=env)
    for name in commands:
        node.logs[name] = tmp_path / f"{name}.log"
        node.start(name)
    if wait_healthy(node.url, [node.processes["web"]]):
        return node
    node.stop()
    raise AssertionError(f"the web server did not start:\n{node.log('web')[-3000:]}")


@pytest.fixture
def live_node(transactional_db, tmp_path, storage_folder):
    node = start_node(tmp_path, storage_folder)
    yield node
    node.stop()
