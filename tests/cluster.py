"""A cluster for tests: whole nodes (``run_platform``) as separate process groups on this machine.

Each node runs against the test database and the test's storage folder, with a heartbeat of
``HEARTBEAT`` seconds. ``kill()`` is a node's death: SIGKILL to every process it has, solve and
session processes included (they run in process groups of their own, as on a real node, so
killing the node's group alone would leave them running). ``pause()`` and ``resume()`` are a
stall: the whole node stops, then goes on as if nothing had happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from tests.helpers import ROOT, wait_until
from tests.live import free_port, healthy, platform_env, start_group

HEARTBEAT = 1.0
TIMINGS = settings.DATA_DIR / "test-artifacts" / "failover-timings.jsonl"


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from the process table."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class ClusterNode:
    name: str
    roles: tuple[str, ...]
    port: int
    process: subprocess.Popen
    log_path: Path
    killed_at: float | None = None
    paused: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> float:
        """SIGKILL the node and everything it started, as a power cut would; return when."""
        pids = descendants(self.process.pid)
        self.killed_at = time.monotonic()
        signal_all(pids, signal.SIGKILL)
        self.process.wait()
        return self.killed_at

    def pause(self) -> None:
        self.paused = descendants(self.process.pid)
        signal_all(self.paused, signal.SIGSTOP)

    def resume(self) -> None:
        signal_all(self.paused, signal.SIGCONT)
        self.paused = []

    def stop(self) -> None:
        if self.paused:
            self.resume()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_all(descendants(self.process.pid), signal.SIGUSR2)  # stacks into the log
                time.sleep(1)
                self.kill()
                raise AssertionError(f"node {self.name} did not stop:\n{self.log()[-4000:]}") from None
        # Whatever a killed node left in groups of their own (solve and session processes).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Cluster:
    """Starts nodes on demand and stops every one of them after the test."""

    def __init__(self, tmp_path: Path, storage_folder: Path, extra_env: dict[str, str] | None = None):
        self.tmp_path, self.storage_folder = tmp_path, storage_folder
        self.extra_env = extra_env or {}
        self.nodes: list[ClusterNode] = []

    def start(self, name: str, roles: tuple[str, ...] = ("solves",), **env: str) -> ClusterNode:
        port = free_port()
        node_env = {
            "PRO_INTERNAL_API_URL": f"http://127.0.0.1:{port}",
            "PRO_NODE_NAME": name,
            "PRO_NODE_ROLES": ",".join(roles) or "none",
            "PRO_HEARTBEAT_SECONDS": str(HEARTBEAT),
            "PRO_WORKERS": "1",
            "PRO_SESSION_POOL": "1",
            "PYTHONUNBUFFERED": "1",
        }
        environment = platform_env(port, self.storage_folder.as_uri(), **{**node_env, **self.extra_env, **env})
        log_path = self.tmp_path / f"node-{name}.log"
        log_path.unlink(missing_ok=True)
        process = start_group([sys.executable, str(ROOT / "manage.py"), "run_platform"], environment, log_path)
        node = ClusterNode(name=name, roles=roles, port=port, process=process, log_path=log_path)
        self.nodes.append(node)
        return node

    def wait_up(self, *nodes: ClusterNode, timeout: float = 60) -> None:
        """Until each node's agent has registered it (and its web server answers, if it has one)."""
        from apps.cluster.models import Node, NodeState

        for node in nodes:

            def ready(node=node) -> bool:
                assert node.process.poll() is None, f"node {node.name} exited:\n{node.log()[-4000:]}"
                registered = Node.objects.filter(name=node.name, state=NodeState.UP, pid__isnull=False).exists()
                return registered and ("web" not in node.roles or healthy(node.url))

            assert wait_until(ready, timeout, interval=0.1), f"node {node.name} did not come up:\n{node.log()[-4000:]}"

    def stop_all(self) -> None:
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        for node in self.nodes:  # shown by pytest when the test fails
            print(f"---- node {node.name} ({node.log_path}) ----\n{node.log()[-8000:]}")
        assert not errors, "\n".join(errors)


def master() -> str | None:
    from apps.cluster.selectors import master_name

    return master_name()


def record_timings(test: str, **figures: float) -> None:
    """Append this run's failover timings for ``bench/failover_bench.py`` (never asserted on)."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with open(TIMINGS, "a") as sink:
        sink.write(json.dumps({"test": test, "heartbeat": HEARTBEAT, **figures}) + "\n")


@pytest.fixture
def cluster(transactional_db, tmp_path, storage_folder):
    nodes = Cluster(tmp_path, storage_folder)
    yield nodes
    nodes.stop_all()
