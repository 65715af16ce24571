"""Query counts of every list endpoint and list page: they do not grow with the rows they list.

Each test asks a page or an endpoint with a few rows (``FEW``), adds rows until there are
``MANY``, asks again, and asserts that both answers took the same number of queries, and no more
than a fixed bound: ``API_BOUND`` (6) for an API request, ``PAGE_BOUND`` (10) for a portal page.
A query per app, version, job or session fails it at once. Requests are counted warm (``queries``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.api_keys import api_key_create
from apps.accounts.events import security_event
from apps.accounts.models import ApiTicket
from apps.accounts.services import credentials_forget
from apps.catalog.models import AccessLevel, App, AppVersion, Environment, Runtime, VerificationState
from apps.catalog.selectors import app_access_level, apps_for_user
from apps.catalog.services import grant_access
from apps.cluster.models import Node
from sessions import data_sessions, jobs
from sessions.models import DataSession, Job, JobState, SessionState
from sessions.runtime import package
from tests.helpers import LAB, api_as, browser, publish_as

pytestmark = pytest.mark.django_db

FEW, MANY = 2, 20

# The most queries a list may take, whatever its length: an API request (credential, the
# selector's reads, the list) and a portal page (session, user, the header's role, the page's reads).
API_BOUND = 6
PAGE_BOUND = 10


def queries(get: Callable[[], Any]) -> list[str]:
    """The SQL of one request once warm: the shortest of two, asked after a first one.

    A client's first request may write (a credential's last use is noted once a minute), and each
    process keeps credentials and group address ranges for a second: the fewest of two requests
    is the steady count, whichever of those caches is warm.
    """
    first = get()
    assert first.status_code == 200, first.content[:500]
    runs = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured:
            response = get()
        assert response.status_code == 200, response.content[:500]
        runs.append([query["sql"] for query in captured.captured_queries])
    return min(runs, key=len)


def assert_flat(get: Callable[[], Any], grow: Callable[[], Any], bound: int) -> int:
    """Count ``get`` with the rows there are, call ``grow`` to add many, count again: equal, within ``bound``.

    Each count starts with the credential cache empty: it keeps a ticket a second, and ``grow``
    may take longer than that, which would count the ticket's look-up once and not the other time.
    """
    credentials_forget()
    few = queries(get)
    grow()
    credentials_forget()
    many = queries(get)
    print(f"\n{os.environ.get('PYTEST_CURRENT_TEST', '')}: {len(few)} -> {len(many)} queries")  # pytest -s
    listed = "\n".join(sql[:200] for sql in many)
    assert len(many) == len(few), f"{len(few)} queries before the rows were added, {len(many)} after:\n{listed}"
    assert len(many) <= bound, f"{len(many)} queries, more than the {bound} this list may take:\n{listed}"
    return len(many)


def api_client(user):
    """``api_as(user)``, its ticket marked as used just now: a credential's last use is written at
    most once a minute, and never by a request counted here."""
    client = api_as(user)
    ApiTicket.objects.filter(user=user).update(last_used_at=timezone.now())
    return client


def persona(request, who: str):
    return request.getfixturevalue(who)


# ---------------------------------------------------------------- apps and their versions


@pytest.fixture
def planners(carol):
    """A group carol is in: some apps are granted to it rather than to her."""
    group = Group.objects.create(name="planners")
    carol.groups.add(group)
    return group


def verified(version: AppVersion) -> AppVersion:
    """Mark a version verified without running its verification (a sandboxed process)."""
    AppVersion.objects.filter(pk=version.pk).update(verification_state=VerificationState.VERIFIED)
    version.refresh_from_db()
    return version


@pytest.fixture
def add_apps(alice, carol, planners, runtime, pack):
    """``add_apps(n)``: n more apps of alice, shared with carol in every way there is.

    Each app has a verified version 1.0.0 (tagged latest) and an unverified 1.1.0 that only
    those who manage it see. Carol is granted them in turn as a viewer, as a collaborator, and
    through her group; every fourth app also has a hidden verified version.
    """
    made: list[App] = []

    def add(count: int) -> list[App]:
        for _ in range(count):
            number = len(made)
            name = f"app-{number:02d}"
            app = verified(publish_as(alice, pack(name=name, category=f"Group {number % 3}"), verify=False)).app
            publish_as(alice, pack(name=name, version="1.1.0"), verify=False)
            if number % 4 == 3:
                hidden = verified(publish_as(alice, pack(name=name, version="0.9.0"), verify=False))
                AppVersion.objects.filter(pk=hidden.pk).update(is_hidden=True)
            if number % 3 == 0:
                grant_access(user=alice, app=app, level=AccessLevel.VIEWER, username=carol.username)
            elif number % 3 == 1:
                grant_access(user=alice, app=app, level=AccessLevel.COLLABORATOR, username=carol.username)
            else:
                grant_access(user=alice, app=app, level=AccessLevel.VIEWER, group_name=planners.name)
            made.append(app)
        return made

    return add


@pytest.fixture
def add_versions(alice, carol, runtime, pack):
    """``add_versions(n)``: n more verified versions of alice's app ``demo`` (one unverified besides),
    which carol may view; ``demo`` is made by the first call."""
    made: list[AppVersion] = []

    def add(count: int) -> list[AppVersion]:
        for _ in range(count):
            made.append(verified(publish_as(alice, pack(name="demo", version=f"1.{len(made)}.0"), verify=False)))
            if len(made) == 1:
                grant_access(user=alice, app=made[0].app, level=AccessLevel.VIEWER, username=carol.username)
                publish_as(alice, pack(name="demo", version="9.0.0"), verify=False)
        return made

    return add


@pytest.mark.parametrize("who", ["alice", "carol", "admin_user"])
def test_app_list_api(request, who, add_apps):
    user = persona(request, who)
    client = api_client(user)
    add_apps(FEW)
    assert_flat(lambda: client.get("/api/v1/apps"), lambda: add_apps(MANY - FEW), API_BOUND)
    listed = client.get("/api/v1/apps").json()
    assert len(listed) == MANY
    assert {app["access"] for app in listed} == ({"viewer", "collaborator"} if who == "carol" else {"manager"})
    for number, app in enumerate(sorted(listed, key=lambda app: app["name"])):
        shown = [version["version"] for version in app["versions"]]
        if who == "carol" and number % 3 != 1:  # a viewer: the verified versions that are not hidden
            assert shown == ["1.0.0"], app
        else:  # a manager or collaborator: every version
            assert shown == ["1.1.0", "1.0.0", "0.9.0"][: 3 if number % 4 == 3 else 2], app


def test_access_read_along_is_only_the_readers(alice, bob, carol, add_apps, django_assert_num_queries):
    """The access ``apps_for_user`` reads along answers for that user only; others' is asked for."""
    add_apps(3)
    apps = list(apps_for_user(carol).order_by("name"))
    with django_assert_num_queries(0):
        assert [app_access_level(carol, app) for app in apps] == ["viewer", "collaborator", "viewer"]
    assert [app_access_level(alice, app) for app in apps] == ["manager"] * 3
    assert [app_access_level(bob, app) for app in apps] == [None] * 3


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_app_detail_and_versions_api(request, who, add_versions):
    client = api_client(persona(request, who))
    add_versions(FEW)
    assert_flat(lambda: client.get("/api/v1/apps/demo"), lambda: add_versions(MANY - FEW), API_BOUND)
    assert_flat(lambda: client.get("/api/v1/apps/demo/versions"), lambda: add_versions(MANY - FEW), API_BOUND)
    seen = len(client.get("/api/v1/apps/demo/versions").json())
    assert seen == 2 * MANY - FEW + (1 if who == "alice" else 0)  # the unverified 9.0.0: managers only


def test_grant_list_api(alice, add_versions):
    app = add_versions(1)[0].app
    client = api_client(alice)

    def grant(count: int) -> None:
        for _ in range(count):
            group = Group.objects.create(name=f"team-{Group.objects.count()}")
            grant_access(user=alice, app=app, level=AccessLevel.VIEWER, group_name=group.name)

    grant(FEW - 1)  # carol's own grant makes it FEW
    assert_flat(lambda: client.get("/api/v1/apps/demo/grants"), lambda: grant(MANY - FEW), API_BOUND)
    assert len(client.get("/api/v1/apps/demo/grants").json()) == MANY


@pytest.mark.parametrize("who", ["alice", "carol", "admin_user"])
def test_catalogue_page(request, who, add_apps):
    client = browser(persona(request, who))
    add_apps(FEW)
    assert_flat(lambda: client.get("/"), lambda: add_apps(MANY - FEW), PAGE_BOUND)
    assert client.get("/").content.count(b'class="app-card"') == MANY


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_app_and_version_pages(request, who, add_versions):
    client = browser(persona(request, who))
    add_versions(FEW)
    assert_flat(lambda: client.get("/apps/demo/"), lambda: add_versions(MANY - FEW), PAGE_BOUND)
    assert_flat(lambda: client.get("/apps/demo/versions/1.0.0/"), lambda: add_versions(MANY - FEW), PAGE_BOUND)


def test_app_page_of_many_grants(alice, add_versions):
    app = add_versions(1)[0].app
    client = browser(alice)

    def grant(count: int) -> None:
        for _ in range(count):
            group = Group.objects.create(name=f"team-{Group.objects.count()}")
            grant_access(user=alice, app=app, level=AccessLevel.COLLABORATOR, group_name=group.name)

    assert_flat(lambda: client.get("/apps/demo/"), lambda: grant(MANY - 1), PAGE_BOUND)


def test_storage_app_folders(carol, add_apps):
    """carol's ``apps/`` folder lists the apps she may use: one folder each."""
    add_apps(FEW)
    client, page = api_client(carol), browser(carol)
    assert_flat(lambda: client.get("/api/v1/storage/apps/"), lambda: add_apps(MANY // 2 - FEW), API_BOUND)
    assert_flat(lambda: page.get("/files/apps/"), lambda: add_apps(MANY // 2), PAGE_BOUND)
    assert len(client.get("/api/v1/storage/apps/").json()["entries"]) == MANY


# ---------------------------------------------------------------- jobs, cases, data sessions


@pytest.fixture
def lab_version(alice, carol, runtime, platform_public_key):
    """alice's ``lab`` app (a solve procedure), marked verified, granted to carol."""
    blob, _ = package.pack_folder(LAB, platform_public_key)
    version = verified(publish_as(alice, blob, verify=False))
    grant_access(user=alice, app=version.app, level=AccessLevel.VIEWER, username=carol.username)
    return version


@pytest.fixture
def add_jobs(alice, carol, lab_version):
    """``add_jobs(n)``: n more jobs (each with its input case), alice's and carol's in turn, in every state.

    Started ones ran on nodes ``node-0`` and ``node-1``; finished ones have a result case.
    """
    made: list[Job] = []
    states = [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]

    def add(count: int) -> list[Job]:
        now = timezone.now()
        for _ in range(count):
            number = len(made)
            job = jobs.job_submit(user=(alice, carol)[number % 2], app_name="lab", procedure="solve")
            state = states[number % len(states)]
            if state != JobState.QUEUED:
                Job.objects.filter(pk=job.pk).update(
                    state=state,
                    node=f"node-{number % 2}",
                    attempt=1,
                    created_at=now - timedelta(seconds=60),
                    started_at=now - timedelta(seconds=50),
                    finished_at=None if state == JobState.RUNNING else now,
                    result_case=job.input_case if state == JobState.SUCCEEDED else None,
                )
            made.append(job)
        return made

    return add


@pytest.mark.parametrize("who", ["alice", "admin_user"])
def test_job_list_api_and_page(request, who, add_jobs):
    user = persona(request, who)
    client, page = api_client(user), browser(user)
    add_jobs(FEW * 2)  # alice's are every other one
    assert_flat(lambda: client.get("/api/v1/jobs"), lambda: add_jobs(MANY - FEW), API_BOUND)
    assert_flat(lambda: page.get("/jobs/"), lambda: add_jobs(MANY - FEW), PAGE_BOUND)
    assert_flat(lambda: client.get("/api/v1/jobs?state=running"), lambda: add_jobs(MANY - FEW), API_BOUND)


@pytest.mark.parametrize("who", ["alice", "admin_user"])
def test_case_list_api(request, who, add_jobs):
    client = api_client(persona(request, who))
    add_jobs(FEW * 2)
    assert_flat(lambda: client.get("/api/v1/cases"), lambda: add_jobs(MANY * 2 - FEW * 2), API_BOUND)
    assert len(client.get("/api/v1/cases").json()) >= MANY


def test_statistics_page(admin_user, add_jobs, add_apps):
    page = browser(admin_user)
    add_jobs(FEW * 5)
    add_apps(FEW)

    def grow() -> None:
        add_jobs(MANY * 5 - FEW * 5)
        add_apps(MANY - FEW)

    assert_flat(lambda: page.get("/statistics/"), grow, PAGE_BOUND)
    assert_flat(lambda: page.get("/statistics/?app=lab&days=7"), lambda: add_jobs(MANY), PAGE_BOUND)


@pytest.fixture
def add_sessions(alice, carol, lab_version, settings):
    """``add_sessions(n)``: n more data sessions of alice and carol in turn, every other one closed."""
    settings.PRO_SESSIONS_PER_USER = settings.PRO_SESSIONS_STARTING_LIMIT = 1000
    made: list[DataSession] = []

    def add(count: int) -> list[DataSession]:
        for _ in range(count):
            owner = (alice, carol)[len(made) % 2]
            session = data_sessions.session_launch(user=owner, app_name="lab")
            if len(made) % 4 < 2:
                data_sessions.session_stop(user=owner, session=session)
            else:
                DataSession.objects.filter(pk=session.pk).update(state=SessionState.RUNNING, node="node-0")
            made.append(session)
        return made

    return add


@pytest.mark.parametrize("who", ["alice", "admin_user"])
def test_session_list_api_and_page(request, who, add_sessions):
    user = persona(request, who)
    client, page = api_client(user), browser(user)
    add_sessions(FEW * 2)
    assert_flat(lambda: client.get("/api/v1/sessions"), lambda: add_sessions(MANY - FEW), API_BOUND)
    assert_flat(lambda: client.get("/api/v1/sessions?live=1"), lambda: add_sessions(MANY - FEW), API_BOUND)
    assert_flat(lambda: page.get("/sessions/"), lambda: add_sessions(MANY - FEW), PAGE_BOUND)


def test_catalogue_with_live_sessions(alice, add_apps, add_sessions):
    """The catalogue's Resume links: the live sessions of every app, read at once."""
    add_apps(FEW)
    page = browser(alice)
    add_sessions(FEW * 2)
    assert_flat(lambda: page.get("/"), lambda: (add_apps(MANY - FEW), add_sessions(MANY * 2)), PAGE_BOUND)


def test_nodes_page(admin_user, add_jobs, add_sessions):
    page = browser(admin_user)

    def add_nodes(count: int) -> None:
        for _ in range(count):
            Node.objects.create(name=f"node-{Node.objects.count()}", roles=["web", "solves", "sessions"])

    add_nodes(FEW)
    add_jobs(FEW * 5)
    add_sessions(FEW * 4)

    def grow() -> None:
        add_nodes(MANY - FEW)
        add_jobs(MANY * 2)
        add_sessions(MANY * 2)

    assert_flat(lambda: page.get("/nodes/"), grow, PAGE_BOUND)


# ---------------------------------------------------------------- files, keys, security events


def add_files(folder: str, count: int) -> None:
    """``count`` more files in a storage folder, and as many sub-folders."""
    for _ in range(count):
        number = len(default_storage.listdir(folder)[1]) if default_storage.exists(folder) else 0
        default_storage.save(f"{folder}/file-{number:03d}.txt", ContentFile(b"x"))
        default_storage.save(f"{folder}/folder-{number:03d}/inner.txt", ContentFile(b"y"))


def test_storage_folder_listing(carol):
    client, page = api_client(carol), browser(carol)
    add_files("users/carol/models", FEW)
    assert_flat(
        lambda: client.get("/api/v1/storage/users/carol/models/"),
        lambda: add_files("users/carol/models", MANY // 2 - FEW),
        API_BOUND,
    )
    assert_flat(
        lambda: page.get("/files/users/carol/models/"), lambda: add_files("users/carol/models", MANY // 2), PAGE_BOUND
    )
    assert len(client.get("/api/v1/storage/users/carol/models/").json()["entries"]) == 2 * MANY


def test_app_data_folder_listing(carol, add_apps):
    [app] = add_apps(1)
    folder = f"apps/{app.name}/data"
    client = api_client(carol)
    add_files(folder, FEW)
    assert_flat(lambda: client.get(f"/api/v1/storage/{folder}/"), lambda: add_files(folder, MANY - FEW), API_BOUND)


def test_wheelhouse_api(admin_user):
    client = api_client(admin_user)

    def add_wheels(count: int) -> None:
        for _ in range(count):
            number = len(default_storage.listdir("wheelhouse")[1]) if default_storage.exists("wheelhouse") else 0
            default_storage.save(f"wheelhouse/pkg{number}-1.0-py3-none-any.whl", ContentFile(b"wheel"))

    add_wheels(FEW)
    assert_flat(lambda: client.get("/api/v1/wheelhouse"), lambda: add_wheels(MANY - FEW), API_BOUND)
    assert len(client.get("/api/v1/wheelhouse").json()) == MANY


def test_api_keys_api_and_account_page(carol):
    client, page = api_client(carol), browser(carol)

    def add_keys(count: int) -> None:
        for _ in range(count):
            api_key_create(user=carol, name=f"script {carol.api_keys.count()}")

    add_keys(FEW)
    assert_flat(lambda: client.get("/api/v1/auth/keys"), lambda: add_keys(MANY // 2 - FEW), API_BOUND)
    assert_flat(lambda: page.get("/account/"), lambda: add_keys(MANY // 2), PAGE_BOUND)
    assert len(client.get("/api/v1/auth/keys").json()) == MANY


def test_security_events_page(admin_user, carol):
    page = browser(admin_user)

    def add_events(count: int) -> None:
        for number in range(count):
            security_event(f"test.kind{number % 5}", actor=carol, target=f"thing {number}")

    add_events(FEW)
    assert_flat(lambda: page.get("/security/"), lambda: add_events(MANY * 5), PAGE_BOUND)
    assert_flat(lambda: page.get("/security/?kind=test.kind1&actor=carol"), lambda: add_events(MANY), PAGE_BOUND)


# ---------------------------------------------------------------- runtimes and environments


@pytest.fixture
def add_runtimes(runtime):
    """``add_runtimes(n)``: n more runtimes of a family ``py311-extra``."""
    made: list[Runtime] = []

    def add(count: int) -> list[Runtime]:
        for _ in range(count):
            number = len(made)
            made.append(
                Runtime.objects.create(
                    key=f"py311-extra@1.{number}", name="py311-extra", version=f"1.{number}", title=f"Extra {number}"
                )
            )
        return made

    return add


@pytest.fixture
def add_environments(runtime, add_versions):
    """``add_environments(n)``: n more environments of the built-in runtime, each used by a version of ``demo``."""
    made: list[Environment] = []

    def add(count: int) -> list[Environment]:
        for version in add_versions(count)[-count:]:
            number = len(made)
            environment = Environment.objects.create(
                key=f"env-{number:03d}", runtime=runtime, requirements=[f"pkg{number}==1.0"], packages={"pkg": "1.0"}
            )
            AppVersion.objects.filter(pk=version.pk).update(environment=environment)
            made.append(environment)
        return made

    return add


def test_runtime_list_api(admin_user, add_runtimes, add_versions):
    client = api_client(admin_user)
    add_runtimes(FEW)
    add_versions(FEW)

    def grow() -> None:
        for runtime_row, version in zip(add_runtimes(MANY - FEW), add_versions(MANY - FEW), strict=True):
            AppVersion.objects.filter(pk=version.pk).update(runtime=runtime_row)

    assert_flat(lambda: client.get("/api/v1/runtimes"), grow, API_BOUND)
    assert len(client.get("/api/v1/runtimes").json()) == MANY + 1  # and the built-in one


def test_runtime_detail_and_environments_api(admin_user, runtime, add_environments):
    client = api_client(admin_user)
    add_environments(FEW)
    assert_flat(
        lambda: client.get(f"/api/v1/runtimes/{runtime.key}"), lambda: add_environments(MANY // 2 - FEW), API_BOUND
    )
    assert_flat(lambda: client.get("/api/v1/environments"), lambda: add_environments(MANY // 2), API_BOUND)
    assert len(client.get("/api/v1/environments").json()) == MANY
    assert len(client.get(f"/api/v1/runtimes/{runtime.key}").json()["environments"]) == MANY
