"""Access control everywhere: every route that takes an object id, for another user and for nobody.

The routes are read from the URL configuration itself, so a new route with an object id fails
``test_every_object_route_is_in_the_matrix`` until it is added to ``object_paths`` below.
For each route and each method its view answers: another user gets 404 or 403, an anonymous
caller 401 (API) or a redirect to the login page (portal). The owner's GET must succeed, which
proves the path in the matrix really names the object.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.test import APIClient

from tests.helpers import publish_as

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).parents[1] / "examples"
METHODS = ("get", "post", "put", "patch", "delete")
# Routes whose owner's GET does not answer 200 for a reason unrelated to access: (status, text).
OWNER_GET_EXCEPTIONS = {
    "job-result": (404, b"has no result (queued)"),  # the job has not run: found, but no result yet
    "job-submit": (405, b""),
    "job-action": (405, b""),
    "session-action": (405, b""),
    "app-manage": (405, b""),
    # Runtimes, environments and the wheelhouse are the admins' (alice publishes, she is no admin).
    "runtime": (403, b""),
    "environment": (403, b""),
    "wheel": (405, b""),
    "connection": (403, b""),  # connections are the admins' too
}
# The attempt API answers only the ticket of that attempt (tests/test_remote_attempts.py): the owner's own is refused.
ATTEMPT_ROUTES = ("bundle", "environment", "files", "heartbeat", "log", "progress", "result", "finish", "release")
OWNER_GET_EXCEPTIONS.update({f"attempt-{name}": (403, b"not this attempt") for name in ATTEMPT_ROUTES})


def object_routes() -> dict[str, str]:
    """``namespace:name`` → route, for every non-admin route with a path parameter."""
    found: dict[str, str] = {}

    def walk(patterns, prefix: str, namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or namespace
                walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern) and pattern.pattern.regex.groupindex:
                found[f"{namespace}:{pattern.name}"] = prefix + str(pattern.pattern)

    walk(get_resolver().url_patterns, "/", "")
    return {name: route for name, route in found.items() if not name.startswith("admin:") and name not in BY_TOKEN}


# Routes whose parameters are a capability, not an object's name: anyone holding the link may use
# it, and its own tests check what a wrong or used token gets (tests/test_password_reset.py).
BY_TOKEN = {"portal:password-reset-confirm"}


@pytest.fixture
def world(alice, bob, carol, dave, admin_user, runtime, platform_public_key):
    """Alice's app, version, grant, job, data session, case, file and API key (and an admin's connection)."""
    from apps.accounts.api_keys import api_key_create
    from apps.connections.services import connection_create
    from apps.schedules.services import Spec, schedule_create
    from apps.storage.services import storage_put
    from sessions import cases, data_sessions, jobs
    from sessions.runtime import package
    from sessions.runtime.case import CaseData, case_to_bytes

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    version = publish_as(alice, blob)
    app = version.app
    grant = app.grants.create(user=carol, level="viewer")
    job = jobs.job_submit(user=alice, app_name=app.name, procedure="solve")
    session = data_sessions.session_launch(user=alice, app_name=app.name)
    case = cases.case_store(owner=alice, app=app, blob=case_to_bytes(CaseData(meta={})), name="mine")
    storage_put(user=alice, path="users/alice/secret.txt", stream=io.BytesIO(b"alice's"))
    _, key = api_key_create(user=alice, name="alice's script")
    schedule = schedule_create(user=alice, spec=Spec(app=app.name, procedure="solve", cron="0 6 * * *"))
    connection_create(user=admin_user, name="warehouse", url="mysql://planner:pw@127.0.0.1:3306/plans")
    return {
        "app": app,
        "version": version,
        "grant": grant,
        "job": job,
        "session": session,
        "case": case,
        "key": key,
        "schedule": schedule,
    }


def object_paths(world) -> dict[str, str]:
    """A concrete path naming one of Alice's objects, for every object route."""
    app, v = world["app"].name, world["version"].version
    job, session, case = world["job"].pk, world["session"].pk, world["case"].pk
    return {
        "api:key": f"/api/v1/auth/keys/{world['key'].pk}",
        "api:app": f"/api/v1/apps/{app}",
        "api:app-icon": f"/api/v1/apps/{app}/icon",
        "api:app-versions": f"/api/v1/apps/{app}/versions",
        "api:app-version": f"/api/v1/apps/{app}/versions/{v}",
        "api:app-grants": f"/api/v1/apps/{app}/grants",
        "api:app-grant": f"/api/v1/apps/{app}/grants/{world['grant'].pk}",
        "api:app-task": f"/api/v1/apps/{app}/tasks/solve",
        "api:schedule": f"/api/v1/schedules/{world['schedule'].pk}",
        "api:schedule-runs": f"/api/v1/schedules/{world['schedule'].pk}/runs",
        "api:connection": "/api/v1/connections/warehouse",
        "api:connection-grant": f"/api/v1/connections/warehouse/apps/{app}",
        "api:job": f"/api/v1/jobs/{job}",
        "api:job-log": f"/api/v1/jobs/{job}/log",
        "api:job-interrupt": f"/api/v1/jobs/{job}/interrupt",
        "api:job-cancel": f"/api/v1/jobs/{job}/cancel",
        "api:job-result": f"/api/v1/jobs/{job}/result",
        **{f"api:attempt-{name}": f"/api/v1/jobs/{job}/attempts/1/{name}" for name in ATTEMPT_ROUTES},
        "api:session": f"/api/v1/sessions/{session}",
        "api:session-stop": f"/api/v1/sessions/{session}/stop",
        "api:session-restart": f"/api/v1/sessions/{session}/restart",
        "api:case": f"/api/v1/cases/{case}",
        "api:storage": "/api/v1/storage/users/alice/secret.txt",
        "api:runtime": f"/api/v1/runtimes/{world['version'].runtime.key}",
        "api:environment": "/api/v1/environments/0123abcd",
        "api:wheel": "/api/v1/wheelhouse/tiny-1.0-py3-none-any.whl",
        "portal:app": f"/apps/{app}/",
        "portal:app-manage": f"/apps/{app}/manage",
        "portal:launch": f"/launch/{app}/{v}",
        "portal:version": f"/apps/{app}/versions/{v}/",
        "portal:job-submit": f"/apps/{app}/versions/{v}/submit",
        "portal:job": f"/jobs/{job}/",
        "portal:job-action": f"/jobs/{job}/action",
        "portal:session": f"/sessions/{session}/",
        "portal:session-action": f"/sessions/{session}/action",
        "portal:files": "/files/users/alice/secret.txt",
    }


def methods_of(path: str) -> list[str]:
    view = resolve(path).func
    view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if view_class is None:
        return ["get", "post"]  # a function view of the portal: both reach it
    return [m for m in METHODS if hasattr(view_class, m)]


def test_every_object_route_is_in_the_matrix(world):
    routes = object_routes()
    paths = object_paths(world)
    missing = sorted(set(routes) - set(paths))
    assert not missing, f"add these routes to object_paths in {__file__}: {missing}"
    for name, path in paths.items():
        match = resolve(path)
        assert f"{match.namespace}:{match.url_name}" == name, (path, name)


def _call(client, method: str, path: str):
    return (
        getattr(client, method)(path, {} if method != "get" else None, format="json")
        if isinstance(client, APIClient)
        else getattr(client, method)(path)
    )


@pytest.mark.parametrize("stranger", ["dave", "bob"])
def test_another_user_gets_404_or_403(world, stranger, request):
    from tests.helpers import api_as

    user = request.getfixturevalue(stranger)
    api, portal = api_as(user), Client()
    portal.force_login(user)
    wrong = []
    for name, path in object_paths(world).items():
        client = api if name.startswith("api:") else portal
        for method in methods_of(path):
            response = _call(client, method, path)
            # 405 is decided by the method alone, before any object is looked at.
            if response.status_code not in (403, 404, 405):
                wrong.append(f"{method.upper()} {path} as {stranger}: {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_anonymous_gets_401_or_the_login_page(world):
    wrong = []
    for name, path in object_paths(world).items():
        client = APIClient() if name.startswith("api:") else Client()
        for method in methods_of(path):
            response = _call(client, method, path)
            if name.startswith("api:"):
                ok = response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
            else:
                ok = response.status_code == 302 and response["Location"].startswith("/login/")
            if not ok:
                wrong.append(f"{method.upper()} {path} anonymous: {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_the_owner_reaches_every_object(world, alice):
    from tests.helpers import api_as

    api, portal = api_as(alice), Client()
    portal.force_login(alice)
    wrong = []
    for name, path in object_paths(world).items():
        if "get" not in methods_of(path):
            continue
        response = (api if name.startswith("api:") else portal).get(path)
        expected, text = OWNER_GET_EXCEPTIONS.get(name.split(":")[1], (200, b""))
        body = b"" if response.streaming else response.content
        if response.status_code != expected or text not in body:
            wrong.append(f"GET {path} as alice: {response.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_security_events_are_for_admins_only(world, carol, admin_user):
    for user, expected in ((carol, 403), (admin_user, 200)):
        portal = Client()
        portal.force_login(user)
        assert portal.get("/security/").status_code == expected
        assert portal.get("/security/?format=csv").status_code == expected
    assert Client().get("/security/").status_code == 302


def _websocket(headers: list, session_id) -> int:
    from pro_portal.asgi import application

    async def run():
        communicator = WebsocketCommunicator(
            application,
            f"/ws/sessions/{session_id}/",
            headers=[(b"host", b"testserver"), (b"origin", b"http://testserver"), *headers],
        )
        connected, code = await communicator.connect(timeout=10)
        if connected:
            await communicator.disconnect()
        return code

    return asyncio.run(run())


@pytest.mark.django_db(transaction=True)
def test_websocket_route_refuses_strangers_and_nobody(world, dave):
    from apps.accounts.services import ticket_issue_for_user

    raw, _ = ticket_issue_for_user(user=dave)
    assert _websocket([(b"authorization", f"Bearer {raw}".encode())], world["session"].pk) == 4404
    assert _websocket([], world["session"].pk) == 4401
