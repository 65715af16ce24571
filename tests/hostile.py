"""The hostile test app (``tests/apps/hostile``) and what it aims at, for the sandbox's tests.

Fixtures (``targets``, ``hostile``) are registered in ``tests/conftest.py``; ``submit`` and
``follow`` run one of its procedures as a job and wait for it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from sessions import jobs
from sessions.models import Job
from sessions.runtime import package
from tests.helpers import RunningWorker, api_as, publish_as

HOSTILE = Path(__file__).parent / "apps" / "hostile"
CANARY_ENV = "PRO_ADMIN_PASSWORD"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def targets(settings, storage_folder, platform_public_key, bob, monkeypatch) -> dict:
    """The host's secrets and services, as real paths and addresses."""
    monkeypatch.setenv(CANARY_ENV, f"canary-{secrets.token_hex(8)}")
    secret_key = Path(settings.DATA_DIR) / "secret_key"
    if not secret_key.exists():
        secret_key.write_text(secrets.token_urlsafe(50))
    other_user_file = storage_folder / "users" / "bob" / "private.txt"
    other_user_file.parent.mkdir(parents=True)
    other_user_file.write_text("bob's private numbers\n")
    host_tmp = Path("/tmp") / f"hostile-marker-{secrets.token_hex(4)}"
    host_tmp.write_text("the host's /tmp\n")
    work = Path(settings.PRO_WORK_DIR)
    work.mkdir(parents=True, exist_ok=True)
    read = {
        "secret key": str(secret_key),
        "platform key": str(settings.PRO_PLATFORM_KEY_PATH),
        "another user's file": str(other_user_file),
        "platform source": str(Path(settings.BASE_DIR) / "pro_portal" / "settings.py"),
        "test process environ": f"/proc/{os.getpid()}/environ",
        "host /tmp file": str(host_tmp),
    }
    if connection.vendor == "sqlite":
        read["database"] = str(connection.settings_dict["NAME"])
    connect = {"postgres": ("127.0.0.1", 5432), "redis": ("127.0.0.1", 6379), "internet": ("1.1.1.1", 53)}
    found = {
        "read": read,
        "list": {"data folder": str(settings.DATA_DIR), "work folders": str(work), "storage": str(storage_folder)},
        "create": {
            "source tree": str(Path(settings.BASE_DIR) / "pro_portal" / f"hostile_{secrets.token_hex(4)}.py"),
            "data folder": str(Path(settings.DATA_DIR) / f"hostile-{secrets.token_hex(4)}.txt"),
        },
        "connect": {name: list(address) for name, address in connect.items() if reachable(*address)},
        "platform_pid": os.getpid(),
        "secret_env": CANARY_ENV,
        "other_user_storage_path": "users/bob/private.txt",
    }
    yield found
    host_tmp.unlink(missing_ok=True)
    for path in found["create"].values():
        Path(path).unlink(missing_ok=True)


@pytest.fixture
def hostile(alice, runtime, platform_public_key, tmp_path, monkeypatch):
    """``hostile(targets, version=..., report_at_import=...)``: publish a copy aimed at ``targets``, verified."""

    def publish(targets: dict, version: str = "1.0.0", report_at_import: bool = False):
        folder = tmp_path / f"hostile-{version}"
        shutil.copytree(HOSTILE, folder, ignore=shutil.ignore_patterns("__pycache__", "targets.json"))
        manifest = folder / "manifest.toml"
        manifest.write_text(manifest.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
        (folder / "targets.json").write_text(json.dumps({**targets, "report_at_import": report_at_import}))
        with monkeypatch.context() as packing:
            packing.setenv("HOSTILE_PACKING", "1")  # packing imports the app here, outside any sandbox
            blob, _ = package.pack_folder(folder, platform_public_key)
        return publish_as(alice, blob, make_latest=not report_at_import)

    return publish


def submit(user, **body) -> Job:
    response = api_as(user).post("/api/v1/jobs", {"app": "hostile", **body}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def follow(
    job: Job, worker: RunningWorker, timeout: float = 60, watch: Callable[[str | None], None] | None = None
) -> tuple[Job, str | None]:
    """Wait until the job ends, calling ``watch(namespace)`` on the way; the job and its sandbox's namespace."""
    namespace = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        namespace = namespace or worker.namespace_of(job)
        if watch is not None:
            watch(namespace)
        job.refresh_from_db()
        if job.is_finished:
            return job, namespace
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} stayed {job.state}; log:\n{jobs.job_log(job)[0][-3000:]}")
