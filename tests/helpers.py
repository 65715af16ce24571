"""Helpers the test modules share: plain functions and classes, no fixtures (those live in conftest.py).

Test modules import from here (``from tests.helpers import publish_as``), never from one another
nor from conftest. What touches the database or the platform's code imports it on use, so that
importing this module needs no configured Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAB = Path(__file__).parent / "apps" / "lab"
EXAMPLES = ROOT / "examples"
CHUNK = 1024 * 1024


def password(username: str) -> str:
    """The password conftest's personas are created with."""
    return f"{username}-Secret-pw-1"


# ---------------------------------------------------------------- waiting


def wait_until(condition: Callable[[], Any], timeout: float = 30, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy, and return that.

    On timeout: raise ``AssertionError(message)`` when a message is given, else return the last
    (falsy) result, for the caller to assert on with a message of its own.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            if message:
                raise AssertionError(message)
            return result
        time.sleep(interval)


# ---------------------------------------------------------------- users, apps and clients


def api_as(user):
    """A DRF test client with a ticket of ``user`` (anonymous for None)."""
    from rest_framework.test import APIClient

    from apps.accounts.services import ticket_issue_for_user

    client = APIClient()
    if user is not None:
        raw, _ = ticket_issue_for_user(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def browser(user):
    """A Django test client logged in as ``user``."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def body_of(response) -> bytes:
    """The bytes of a response, streamed synchronously or asynchronously."""
    content = response.streaming_content if response.streaming else [response.content]
    if hasattr(content, "__aiter__"):

        async def collect() -> bytes:
            return b"".join([part async for part in content])

        return asyncio.run(collect())
    return b"".join(content)


def publish_as(user, blob: bytes, verify: bool = True, **query):
    """Publish a package and, unless told not to, run its verification now (a real subprocess)."""
    from apps.catalog.services import app_publish
    from apps.catalog.verification import version_verify

    version = app_publish(user=user, blob=blob, **query)
    if verify:
        version_verify(version_id=version.pk)
        version.refresh_from_db()
    return version


def publish_folder(user, folder: Path, public_key):
    """Pack an app folder for this platform and publish it as ``user`` (verified)."""
    from sessions.runtime import package

    blob, _ = package.pack_folder(folder, public_key)
    return publish_as(user, blob)


def verify_pending() -> None:
    """Run the verification of every version waiting for it, as the task queue would."""
    from apps.catalog.models import AppVersion
    from apps.catalog.verification import version_verify

    for version_id in AppVersion.objects.filter(verification_state="pending").values_list("pk", flat=True):
        version_verify(version_id=version_id)


# ---------------------------------------------------------------- jobs and their worker


class RunningWorker:
    """A solve worker in a thread of this process: ``with RunningWorker(2): ...``."""

    def __init__(self, capacity: int, node: str = "test-node", executor: str = "local"):
        from sessions.supervisor import SolveWorker

        self.worker = SolveWorker(node, capacity, executor=executor)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stopping,), daemon=True)

    def __enter__(self) -> RunningWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def namespace_of(self, job) -> str | None:
        """The PID namespace of a running job's sandbox, as the worker knows it."""
        entry = dict(self.worker.running).get(job.pk)
        process = entry[0].process if entry else None
        return process.namespace if process is not None else None


class RunningManager:
    """A session manager in a thread of this process: ``with RunningManager("node") as manager: ...``."""

    def __init__(self, node: str, pool_size: int = 1):
        from sessions.session_manager import SessionManager

        self.manager = SessionManager(node, pool_size=pool_size)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.manager.run, args=(self.stopping,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.manager

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def wait_for(job, *states: str, timeout: float = 60):
    """Until ``job`` reaches one of ``states``; fail with its log otherwise."""
    from sessions import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} stayed {job.state} ({job.error_message}); log:\n{jobs.job_log(job)[0]}")


def sandboxed_sleepers() -> set[int]:
    """Host pids of the lab app's ``sleep 600`` children, in a PID namespace other than ours."""
    from sessions.launcher import procfs

    ours = procfs.pid_namespace(os.getpid())
    found = set()
    for pid in procfs.live_pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if command == b"sleep\x00600\x00" and procfs.pid_namespace(pid) != ours:
            found.add(pid)
    return found


# ---------------------------------------------------------------- data sessions and the websocket proxy

ORIGIN = (b"origin", b"http://testserver")
HOST = (b"host", b"testserver")


def wait_state(session, state: str, timeout: float = 30):
    """Until the data session reaches ``state``; fail with its error otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.refresh_from_db()
        if session.state == state:
            return session
        time.sleep(0.05)
    raise AssertionError(f"session stayed {session.state}: {session.error_message}")


def ticket_header(user) -> tuple[bytes, bytes]:
    from apps.accounts.services import ticket_issue_for_user

    raw, _ = ticket_issue_for_user(user=user)
    return (b"authorization", f"Bearer {raw}".encode())


def communicate(path: str, headers: list, script=None, scope: dict | None = None):
    """Connect as a browser would (with a ``Host`` header unless one is given); ``scope`` adds to the connection's."""
    from channels.testing import WebsocketCommunicator

    from pro_portal.asgi import application

    if not any(name == b"host" for name, _ in headers):
        headers = [HOST, *headers]

    async def app(connection, receive, send):
        return await application({**connection, **(scope or {})}, receive, send)

    async def run():
        communicator = WebsocketCommunicator(app, path, headers=headers)
        connected, code = await communicator.connect(timeout=30)
        result = None
        if connected and script is not None:
            result = await script(communicator)
        if connected:
            await communicator.disconnect()
        return connected, code, result

    return asyncio.run(run())


# ---------------------------------------------------------------- big files and memory


def write_big_file(path: Path, size: int) -> str:
    """``size`` bytes, written a chunk at a time; return their sha256.

    Random chunks alternate with holes (left sparse on disk), so no compression or
    deduplication anywhere on the way could make the transfer cheaper than it is.
    """
    digest = hashlib.sha256()
    with open(path, "wb") as sink:
        written = 0
        while written < size:
            step = min(CHUNK, size - written)
            if (written // CHUNK) % 2 == 0:
                chunk = os.urandom(step)
                sink.write(chunk)
            else:
                chunk = bytes(step)
                sink.seek(step, os.SEEK_CUR)
            digest.update(chunk)
            written += step
        sink.truncate(size)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    """The resident memory of a process now, in MB."""
    return status_kb(pid, "VmRSS") / 1024


class PeakRss:
    """The peak resident memory of a process during a block, in bytes.

    The kernel's high-water mark (VmHWM) is reset through ``clear_refs``; where that file
    cannot be written, VmRSS is sampled from a thread instead.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.baseline = self.peak = 0
        self.method = ""

    def _reset_hwm(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return status_kb(self.pid, "VmHWM") <= status_kb(self.pid, "VmRSS") + 1024

    @contextlib.contextmanager
    def measure(self):
        self.baseline = status_kb(self.pid, "VmRSS") * 1024
        if self._reset_hwm():
            self.method = "VmHWM"
            yield self
            self.peak = status_kb(self.pid, "VmHWM") * 1024
            return
        self.method = "sampled VmRSS"
        done = threading.Event()
        samples = [self.baseline]

        def sample():
            while not done.wait(0.01):
                samples.append(status_kb(self.pid, "VmRSS") * 1024)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            done.set()
            sampler.join()
            self.peak = max(samples)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


# ---------------------------------------------------------------- settings read in a fresh interpreter

SETTINGS_PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "db_name": str(db["NAME"]), "db_host": db.get("HOST", ""),
    "storage": settings.STORAGES["default"]["BACKEND"], "storage_options": {k: str(v) for k, v in settings.STORAGES["default"].get("OPTIONS", {}).items()},
    "q": {k: v for k, v in settings.Q_CLUSTER.items() if k in ("orm", "redis")},
    "channels": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "secret": settings.SECRET_KEY, "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS,
    "data_dir": str(settings.DATA_DIR),
}))
"""

PROBE_CLEARS = ("DATABASE_URL", "PRO_STORAGE_URL", "REDIS_URL", "PRO_SECRET_KEY", "PRO_DEBUG", "PRO_ALLOWED_HOSTS")


def probe(tmp_path, monkeypatch, *, script: str = SETTINGS_PROBE, **environment) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter on the production settings and only the given environment."""
    for name in PROBE_CLEARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "pro_portal.settings")
    monkeypatch.setenv("PRO_DATA_DIR", str(tmp_path / "data"))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- packages for app environments


def make_wheel(folder: Path, name: str, version: str, code: str = "") -> Path:
    """A pure-Python wheel of one module package ``name`` (``VERSION`` set, plus ``code``), as pip installs it."""
    import base64
    import zipfile

    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{code}",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join([*record, f"{name}-{version}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


# ---------------------------------------------------------------- the command-line client

PRO = Path(sys.executable).parent / "pro"
CLIENT_ENV = ("PRO_URL", "PRO_TICKET", "PRO_API_KEY", "PRO_USERNAME", "PRO_PASSWORD", "PRO_CONFIG_DIR")


class Pro:
    """One user's ``pro``: a config folder of its own."""

    def __init__(self, config_dir: Path, url: str = ""):
        self.config_dir, self.url = config_dir, url
        config_dir.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, ok: bool = True):
        clean = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
        completed = subprocess.run(
            [str(PRO), *args],
            env={**clean, "PRO_CONFIG_DIR": str(self.config_dir), **(env or {})},
            cwd=cwd or self.config_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok:
            assert completed.returncode == 0, f"pro {' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}"
        return completed

    def fails(self, *args: str, **kwargs) -> str:
        """Run a command that must fail: exit code 1, nothing on stdout; return stderr."""
        completed = self.run(*args, ok=False, **kwargs)
        assert completed.returncode == 1, (completed.returncode, completed.stdout, completed.stderr)
        assert completed.stdout == ""
        assert completed.stderr.startswith("pro: error: "), completed.stderr
        assert "Traceback" not in completed.stderr
        return completed.stderr

    def login(self, username: str):
        return self.run("login", "--url", self.url, "--username", username, env={"PRO_PASSWORD": password(username)})


def table(stdout: str) -> dict[str, list[str]]:
    """``pro``'s table output as {first column: the row's columns}, header left out."""
    lines = stdout.strip().splitlines()
    return {line.split()[0]: line.split() for line in lines[1:]}
