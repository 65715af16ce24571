"""A throwaway platform for the benchmarks: ``run_platform`` on a temporary data folder, as ``make run``.

with throwaway_platform(port=8790) as platform: ...   # platform.url, platform.process, platform.folder
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Bench-pass-123"  # noqa: S105 - the throwaway platform's admin
START_TIMEOUT = 120.0


@dataclass
class Platform:
    url: str
    folder: Path
    process: subprocess.Popen

    def ticket(self) -> str:
        answer = requests.post(
            f"{self.url}/api/v1/auth/tickets", json={"username": "admin", "password": PASSWORD}, timeout=30
        )
        return answer.json()["ticket"]


def start(folder: Path, port: int, **env: str) -> subprocess.Popen:
    """Migrate, bootstrap (sample apps) and start the platform; SQLite unless ``DATABASE_URL`` is given."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PRO_STORAGE_URL")}
    environment.update(
        PRO_DATA_DIR=str(folder),
        PRO_HTTP_PORT=str(port),
        PRO_ADMIN_PASSWORD=PASSWORD,
        DJANGO_SETTINGS_MODULE="pro_portal.settings",
        **env,
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["pro_bootstrap"]):
        subprocess.run([*manage, *command], env=environment, cwd=ROOT, check=True, capture_output=True)
    log = open(folder / "platform.log", "ab")  # noqa: SIM115 - the platform's processes keep it
    process = subprocess.Popen(
        [*manage, "run_platform"],
        env=environment,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                return process
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"the platform did not start; its log is {folder / 'platform.log'}")


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def throwaway_platform(port: int, **env: str) -> Iterator[Platform]:
    with tempfile.TemporaryDirectory(prefix="pro-bench-", ignore_cleanup_errors=True) as folder:
        process = start(Path(folder), port, **env)
        try:
            yield Platform(url=f"http://127.0.0.1:{port}", folder=Path(folder), process=process)
        finally:
            stop(process)
