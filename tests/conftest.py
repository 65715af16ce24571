"""Shared fixtures: personas, an app folder factory, packages, storage in a temporary folder."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from sessions.runtime import package

MINIMAL_MODEL = """
from pro_sdk import App, Button, Field, Table

app = App("{name}", title="{title}")
items = app.set("items", default=["a", "b"])
weight = app.parameter("weight", index=[items], default=1.0, unit="kg")
total = app.output("total", unit="kg")


@app.procedure(title="Add up")
def add_up(data):
    data["total"] = sum(data["weight"].values())


app.page("Data", [Table(weight), Field(total), Button(add_up)])
"""


@pytest.fixture(autouse=True)
def storage_folder(settings, tmp_path) -> Path:
    """Every test gets an empty storage folder of its own."""
    folder = tmp_path / "storage"
    folder.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "apps.storage.backends.AtomicFileSystemStorage",
            "OPTIONS": {"location": str(folder), "allow_overwrite": True},
        },
    }
    return folder


@pytest.fixture
def make_app_folder(tmp_path):
    """Write a small app folder; keyword arguments change its manifest fields."""

    made = []

    def make(name: str = "demo", version: str = "1.0.0", runtime: str = "py311-highs", **fields) -> Path:
        made.append(name)
        folder = tmp_path / "apps" / f"{name}-{version}-{len(made)}"
        folder.mkdir(parents=True)
        manifest = {
            "name": name,
            "version": version,
            "runtime": runtime,
            "entry_point": "demo_model:app",
            "title": fields.pop("title", name.title()),
            **fields,
        }
        lines = [f"{key} = {value!r}".replace("'", '"') for key, value in manifest.items()]
        (folder / "manifest.toml").write_text("\n".join(lines) + "\n")
        (folder / "demo_model.py").write_text(textwrap.dedent(MINIMAL_MODEL.format(name=name, title=manifest["title"])))
        return folder

    return make


@pytest.fixture
def platform_public_key(db):
    from apps.catalog.keys import platform_private_key

    return platform_private_key().public_key()


@pytest.fixture
def pack(make_app_folder, platform_public_key):
    """Build an encrypted package for this platform: ``pack(name=..., version=...) -> bytes``."""

    def build(**kwargs) -> bytes:
        blob, _ = package.pack_folder(make_app_folder(**kwargs), platform_public_key)
        return blob

    return build


@pytest.fixture
def runtime(db):
    from apps.catalog.services import runtime_ensure_builtin

    return runtime_ensure_builtin()


def _user(username: str, role: str):
    from apps.accounts.services import user_create

    return user_create(username=username, password=f"{username}-Secret-pw-1", role=role)


@pytest.fixture
def admin_user(db):
    return _user("root", "admin")


@pytest.fixture
def alice(db):
    """A publisher."""
    return _user("alice", "publisher")


@pytest.fixture
def bob(db):
    """Another publisher."""
    return _user("bob", "publisher")


@pytest.fixture
def carol(db):
    """An end user."""
    return _user("carol", "user")


@pytest.fixture
def dave(db):
    """An end user nobody shares anything with."""
    return _user("dave", "user")


def api_as(user) -> APIClient:
    from apps.accounts.services import ticket_issue_for_user

    client = APIClient()
    if user is not None:
        raw, _ = ticket_issue_for_user(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api():
    return api_as


def publish_as(user, blob: bytes, verify: bool = True, **query):
    """Publish a package and, unless told not to, run its verification now (a real subprocess)."""
    from apps.catalog.services import app_publish
    from apps.catalog.verification import version_verify

    version = app_publish(user=user, blob=blob, **query)
    if verify:
        version_verify(version_id=version.pk)
        version.refresh_from_db()
    return version


@pytest.fixture
def published(runtime, alice, pack):
    """alice's app ``demo`` 1.0.0."""
    return publish_as(alice, pack())


def verify_pending() -> None:
    """Run the verification of every version waiting for it, as the task queue would."""
    from apps.catalog.models import AppVersion
    from apps.catalog.verification import version_verify

    for version_id in AppVersion.objects.filter(verification_state="pending").values_list("pk", flat=True):
        version_verify(version_id=version_id)


from tests.cluster import cluster  # noqa: E402, F401 - nodes as separate process groups
from tests.live import free_port, platform_server  # noqa: E402,F401
from tests.livenode import live_node  # noqa: E402, F401 - a fixture for the tests that need real processes


def _started_by_tests(pid: str) -> bool:
    """Whether a process works in a folder of the tests (not a platform someone runs beside them)."""
    import tempfile

    from django.conf import settings

    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd.startswith((str(settings.DATA_DIR), tempfile.gettempdir() + "/pytest-of-"))


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Fail a test that leaves a session or solve process of its own running (and kill it)."""

    def ours() -> set[int]:
        found = set()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    command = handle.read()
                with open(f"/proc/{entry.name}/stat") as handle:
                    state = handle.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"sessions.runtime." in command and state != "Z" and _started_by_tests(entry.name):
                found.add(int(entry.name))
        return found

    before = ours()
    yield
    deadline = time.monotonic() + 10
    left = ours() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = ours() - before
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {sorted(left)}"


def body_of(response) -> bytes:
    """The bytes of a response, streamed synchronously or asynchronously."""
    import asyncio

    content = response.streaming_content if response.streaming else [response.content]
    if hasattr(content, "__aiter__"):

        async def collect() -> bytes:
            return b"".join([part async for part in content])

        return asyncio.run(collect())
    return b"".join(content)


@pytest.fixture(scope="session", autouse=True)
def close_stray_connections(django_db_setup, django_db_blocker):
    """End connections that worker threads of the tests left open, so the test database can be dropped."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def browser(user):
    """A Django test client logged in as ``user``."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]
