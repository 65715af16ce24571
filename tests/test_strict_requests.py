"""Strict request bodies: an unknown field, a value of the wrong type for an identifier, a number no
float holds or a body nested too deep is refused with 400 in the one error shape, and changes nothing.

The checks on every JSON body are found from the API's own schema (each operation that takes a
JSON body), so that an endpoint added later is held to them without being listed here.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.helpers import EXAMPLES, LAB, api_as, publish_folder

pytestmark = pytest.mark.django_db

DEEP = "[" * 10_000 + "]" * 10_000
HUGE_INTEGER = "1" + "0" * 400


@pytest.fixture
def lab_app(alice, runtime, platform_public_key):
    """alice's lab app (scalars: cap a number, status text, steps an integer), verified."""
    return publish_folder(alice, LAB, platform_public_key)


def counts() -> dict[str, int]:
    """How many rows of everything a request body could create."""
    from apps.accounts.models import ApiKey, ApiTicket
    from apps.catalog.models import App, AppGrant, AppVersion
    from apps.connections.models import ConnectionGrant
    from sessions.models import Case, DataSession, Job

    models = (App, AppVersion, AppGrant, Job, Case, DataSession, ApiKey, ApiTicket, ConnectionGrant)
    return {model.__name__: model.objects.count() for model in models}


def state_of_lab() -> dict:
    from apps.catalog.models import App, Runtime

    app = App.objects.get(name="lab")
    version = app.versions.get()
    return {
        "app": (app.title, app.description, app.category, app.network_outbound, list(app.network_targets or [])),
        "version": (version.is_hidden, app.latest_version_id),
        "runtimes": sorted(Runtime.objects.values_list("key", "deprecated_at")),
    }


def send(client, method: str, url: str, body: str):
    return client.generic(method, url, body, content_type="application/json")


def refused(response, code: str) -> dict:
    """The one error shape, with ``code``; return its ``error``."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def json_body_operations() -> list[tuple[str, str]]:
    """(method, path template) of every API operation that takes a JSON body, from the OpenAPI schema."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                found.append((method.upper(), path))
    return found


def test_the_schema_lists_the_json_bodies_this_module_reaches():
    """If this fails, an endpoint was added or removed: make ``PATH_VALUES`` fill its path."""
    assert sorted(json_body_operations()) == sorted(
        [
            ("POST", "/api/v1/auth/tickets"),
            ("POST", "/api/v1/auth/keys"),
            ("PATCH", "/api/v1/runtimes/{key}"),
            ("POST", "/api/v1/apps/{name}/grants"),
            ("PATCH", "/api/v1/apps/{name}"),
            ("PATCH", "/api/v1/apps/{name}/versions/{version}"),
            ("POST", "/api/v1/jobs"),
            ("POST", "/api/v1/sessions"),
            ("POST", "/api/v1/apps/{app}/tasks/{procedure}"),
            ("POST", "/api/v1/schedules"),
            ("PATCH", "/api/v1/schedules/{schedule_id}"),
            ("PATCH", "/api/v1/webhooks/settings"),
            ("POST", "/api/v1/connections"),
            ("PATCH", "/api/v1/connections/{name}"),
            ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/log"),
            ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/progress"),
            ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/finish"),
            ("POST", "/api/v1/jobs/{job_id}/attempts/{attempt}/release"),
        ]
    )


PATH_VALUES = {
    "{key}": "py311-highs@1.0",
    "{name}": "lab",
    "{version}": "1.0.0",
    "{app}": "lab",
    "{procedure}": "solve",
}


@pytest.fixture
def remote_attempt(alice, lab_app):
    """A job of lab claimed for an engine, and the ticket of its attempt (the attempt API takes no other)."""
    from sessions import attempts, jobs
    from sessions.models import Job

    Job.objects.create(owner=alice, app_version=lab_app, procedure="solve", time_limit=60, memory_limit_mb=512)
    job = jobs.job_claim_next(node="engine-node", executor="slurm")
    ticket, _ = attempts.attempt_ticket_issue(job=job)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ticket}")
    return job, client


def every_json_body_gets(client, admin, body: str, attempt=None) -> list[tuple[str, object]]:
    """Send ``body`` to every operation that takes JSON (with an ``admin``'s client, which passes every
    permission; the attempt API with the ticket of ``attempt``, a (job, client) pair)."""
    from apps.connections.services import connection_create
    from apps.schedules.services import Spec, schedule_create

    schedule = schedule_create(user=admin, spec=Spec(app="lab", procedure="solve", cron="0 6 * * *"))
    connection_create(user=admin, name="lab", url="mysql://planner:pw@127.0.0.1:3306/lab")  # {name} is "lab"
    answers = []
    for method, template in json_body_operations():
        url = template.replace("{schedule_id}", str(schedule.pk))
        for placeholder, value in PATH_VALUES.items():
            url = url.replace(placeholder, value)
        caller = client
        if "/attempts/" in template:
            assert attempt is not None, "the attempt API needs an attempt's ticket"
            job, caller = attempt
            url = url.replace("{job_id}", str(job.pk)).replace("{attempt}", str(job.attempt))
        answers.append((f"{method} {template}", send(caller, method, url, body)))
    return answers


@pytest.mark.parametrize(
    "body, code, says",
    [
        ('{"zzz_unknown": 1}', "invalid", "zzz_unknown: Unknown field: this request takes "),
        ('{"zzz_unknown": 1e400}', "parse_error", "the number 1e400 is too large for a float"),
        ('{"zzz_unknown": ' + HUGE_INTEGER + "}", "parse_error", "(401 digits) is too large for a float"),
        ('{"zzz_unknown": -1e309}', "parse_error", "too large for a float"),
        ('{"zzz_unknown": NaN}', "parse_error", "NaN is not a number JSON allows"),
        (DEEP, "parse_error", "The JSON body is nested deeper than 32 levels."),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "parse_error", "The JSON body is nested deeper than 32 levels."),
    ],
    ids=["unknown-field", "1e400", "400-digit-integer", "-1e309", "NaN", "10000-nested-lists", "40-nested-lists"],
)
def test_every_json_body_refuses(body, code, says, admin_user, lab_app, remote_attempt):
    client = api_as(admin_user)
    before, lab_before = counts(), state_of_lab()
    for operation, response in every_json_body_gets(client, admin_user, body, remote_attempt):
        assert response.status_code == 400, (operation, response.status_code, response.content)
        error = refused(response, code)
        assert says in error["message"], (operation, error)
        if code == "invalid":
            assert error["detail"]["zzz_unknown"][0].startswith("Unknown field"), (operation, error)
    assert counts() == before
    assert state_of_lab() == lab_before


def test_an_unknown_field_is_named_even_beside_valid_ones(api, alice, lab_app):
    """``data`` for ``input``: refused, where it once queued a job that solved the default input."""
    from sessions.models import Job

    body = {"app": "lab", "procedure": "solve", "data": {"cap": 3}}
    error = refused(api(alice).post("/api/v1/jobs", body, format="json"), "invalid")
    assert error["message"] == (
        "data: Unknown field: this request takes app, input, input_case, memory_limit_mb, notify_email, priority, "
        "procedure, start_at, time_limit, version, webhook_url."
    )
    assert list(error["detail"]) == ["data"]
    assert not Job.objects.exists()


def test_an_unknown_field_of_a_nested_body_is_named_with_its_path(api, admin_user, lab_app):
    body = {"network": {"outbound": True, "targets": [], "ports": [80]}}
    error = refused(api(admin_user).patch("/api/v1/apps/lab", body, format="json"), "invalid")
    assert error["message"].startswith("network.ports: Unknown field: this request takes outbound, targets.")
    assert state_of_lab()["app"][3:] == (False, [])


def test_a_form_body_is_as_strict_as_json(client, alice):
    from apps.accounts.models import ApiTicket

    response = client.post(
        "/api/v1/auth/tickets", {"username": "alice", "password": "alice-Secret-pw-1", "remember": "yes"}
    )
    assert refused(response, "invalid")["message"].startswith("remember: Unknown field")
    assert not ApiTicket.objects.exists()


def test_numbers_a_float_holds_and_shallow_bodies_still_pass(api, alice, lab_app):
    from sessions.models import Job

    body = '{"app": "lab", "procedure": "solve", "priority": 1e1, "input": {"cap": 1.7976931348623157e308}}'
    response = send(api(alice), "POST", "/api/v1/jobs", body)
    assert response.status_code == 201, response.content
    assert Job.objects.get().priority == 10


# ---------------------------------------------------------------- identifier values at submit


@pytest.mark.parametrize(
    "values, identifier, says",
    [
        ({"status": [1, 2]}, "status", "expected text, got a list"),
        ({"status": {"a": 1}}, "status", "expected text, got an object"),
        ({"cap": "12"}, "cap", "expected a number, got text"),
        ({"cap": True}, "cap", "expected a number, got a boolean"),
        ({"cap": None}, "cap", "expected a number, got null"),
        ({"cap": [4]}, "cap", "expected a number, got a list"),
        ({"steps": 2.5}, "steps", "expected an integer, got 2.5"),
        ({"steps": "3"}, "steps", "expected an integer, got text"),
    ],
)
def test_a_scalar_of_the_wrong_type_is_refused_at_submit(api, alice, lab_app, values, identifier, says):
    client = api(alice)
    before = counts()
    body = {"app": "lab", "procedure": "solve", "input": values}
    error = refused(client.post("/api/v1/jobs", body, format="json"), "bad_input")
    assert error["message"] == f"The input is not valid: {identifier}: {says}"
    assert error["detail"] == {"input": {identifier: [says]}}
    assert counts() == before


def test_values_of_the_declared_types_are_queued(api, alice, lab_app):
    from sessions.cases import case_load
    from sessions.models import Job

    body = {"app": "lab", "procedure": "solve", "input": {"cap": 6, "steps": 3.0, "status": 12}}
    response = api(alice).post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.content
    values = case_load(Job.objects.get().input_case).to_json()
    assert (values["cap"], values["steps"], values["status"]) == (6.0, 3, "12")


@pytest.fixture
def transport_app(alice, runtime, platform_public_key):
    """The sample transport app: sets plants and markets, tables supply (plants) and cost (plants x markets)."""
    return publish_folder(alice, EXAMPLES / "transport", platform_public_key)


@pytest.mark.parametrize(
    "values, identifier, says",
    [
        ({"plants": "Seattle"}, "plants", "expected a list of element names, got text"),
        ({"plants": ["Seattle", ["x"]]}, "plants", "expected a list of element names, got a list"),
        ({"supply": 350}, "supply", "expected a table (a list of rows or an object of values), got a number"),
        ({"supply": [["Seattle", "many"]]}, "supply", "expected a number, got text"),
        ({"supply": {"Seattle": [350]}}, "supply", "expected a number, got a list"),
        ({"supply": [350]}, "supply", "expected rows of [key, value], got a number"),
        ({"cost": [["Seattle", 2.5]]}, "cost", "expected rows of [key, key, value], got a row of 2"),
        (
            {"cost": [["Seattle", {"x": 1}, 2.5]]},
            "cost",
            "expected rows of [key, key, value] with element names for keys",
        ),
    ],
)
def test_a_set_or_table_of_the_wrong_shape_is_refused_at_submit(api, alice, transport_app, values, identifier, says):
    client = api(alice)
    before = counts()
    body = {"app": "transport", "procedure": "solve", "input": values}
    error = refused(client.post("/api/v1/jobs", body, format="json"), "bad_input")
    assert error["message"] == f"The input is not valid: {identifier}: {says}"
    assert counts() == before


def test_a_table_as_rows_or_as_an_object_is_queued(api, alice, transport_app):
    from sessions.cases import case_load
    from sessions.models import Job

    client = api(alice)
    rows = {"supply": [["Seattle", 300], ["San-Diego", 700]], "cost": [["Seattle", "New-York", 2.5]]}
    by_key = {"supply": {"Seattle": 301}}
    for values in (rows, by_key):
        body = {"app": "transport", "procedure": "solve", "input": values}
        response = client.post("/api/v1/jobs", body, format="json")
        assert response.status_code == 201, (values, response.content)
    first, second = (case_load(job.input_case).to_json() for job in Job.objects.order_by("pk"))
    assert json.dumps(first["supply"]) != json.dumps(second["supply"])
