"""Shared fixtures: personas, an app folder factory, packages, storage in a temporary folder, published
sample apps, a solve worker and a session manager in threads, real platform processes.

Plain helpers (``publish_as``, ``api_as``, ``wait_until`` ...) are in ``tests/helpers.py``; the real
processes in ``tests/live.py`` and ``tests/cluster.py``; the browser in ``tests/browser.py``. Test modules import from those, never from
conftest nor from one another.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from sessions.runtime import package
from tests.browser import browser_page  # noqa: F401 - fixture: a page of a real Chromium
from tests.cluster import cluster  # noqa: F401 - fixture: nodes as separate process groups
from tests.helpers import EXAMPLES, LAB, RunningManager, RunningWorker, api_as, password, publish_as, publish_folder
from tests.hostile import hostile, targets  # noqa: F401 - fixtures: the hostile app and its aims
from tests.ldap_server import ldap_server_fixture  # noqa: F401 - fixture ldap_server: a real slapd
from tests.live import live_node, platform_server  # noqa: F401 - fixtures: real platform processes
from tests.oidc import oidc_provider_fixture  # noqa: F401 - fixture oidc_provider: a real OpenID provider
from tests.slurm_cluster import slurm_cluster  # noqa: F401 - fixture: a real Slurm cluster, one per test process

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
    from apps.catalog.runtimes import runtime_ensure_builtin

    return runtime_ensure_builtin()


def _user(username: str, role: str):
    from apps.accounts.services import user_create

    return user_create(username=username, password=password(username), role=role)


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


@pytest.fixture
def api():
    return api_as


@pytest.fixture
def published(runtime, alice, pack):
    """alice's app ``demo`` 1.0.0."""
    return publish_as(alice, pack())


@pytest.fixture
def lab(alice, runtime, platform_public_key):
    """alice's ``lab`` app (tests/apps/lab: quick, slow, crashing, greedy and stubborn solves), verified."""
    return publish_folder(alice, LAB, platform_public_key)


@pytest.fixture
def transport(alice, carol, runtime, platform_public_key):
    """The sample app ``transport``, published by alice and granted to carol."""
    version = publish_folder(alice, EXAMPLES / "transport", platform_public_key)
    version.app.grants.create(user=carol, level="viewer")
    return version


@pytest.fixture
def worker():
    """A solve worker (node ``test-node``, two solves at a time) in a thread of the test process."""
    with RunningWorker(capacity=2) as running:
        yield running


@pytest.fixture
def manager(settings):
    """A session manager (node ``proxy-node``, a pool of one) in a thread of the test process."""
    settings.PRO_SESSION_POOL = 1
    with RunningManager("proxy-node") as running:
        yield running


# Tests that start real platform processes, or run real app processes, marked by the fixtures they
# use (beside the modules' own ``pytestmark``), so that ``make test-fast`` leaves out every one of them.
MARKS_BY_FIXTURE = {
    "browser_page": ("browser",),
    "platform_server": ("live",),
    "live_node": ("live",),
    "s3_server": ("live",),
    "oidc_provider": ("live",),
    "ldap_server": ("live",),
    "cluster": ("live", "cluster"),
    "worker": ("slow",),
    "manager": ("slow",),
    "k8s_cluster": ("slow",),
    "slurm_cluster": ("slurm", "slow"),
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & MARKS_BY_FIXTURE.keys():
            for mark in MARKS_BY_FIXTURE[fixture]:
                item.add_marker(mark)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs) -> None:
    """Under pytest-xdist (``-n``), a data folder of its own for each worker: their processes, work
    folders and leftover checks never meet (the settings read PRO_DATA_DIR before any conftest runs)."""
    from django.conf import settings

    for spec in specs:
        spec.env["PRO_DATA_DIR"] = str(settings.DATA_DIR / f"xdist-{spec.id}")


def _started_by_tests(pid: str, folders: tuple[str, ...]) -> bool:
    """Whether a process works in one of ``folders`` (not in a platform or a test run beside this one)."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return (cwd + "/").startswith(folders)


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path_factory):
    """Fail a test that leaves a session or solve process of its own running (and kill it).

    Its own: working in this run's data folder or temporary folders, so that a test run beside
    this one (another checkout, another xdist worker) is none of its business.
    """
    from django.conf import settings

    folders = (f"{settings.DATA_DIR}/", f"{tmp_path_factory.getbasetemp()}/")

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
            if b"sessions.runtime." in command and state != "Z" and _started_by_tests(entry.name, folders):
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
