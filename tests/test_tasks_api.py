"""Tasks: POST /api/v1/apps/{app}/tasks/{procedure} runs a solve as a job of the caller, answering
with its outputs once it ended within ``?wait=N`` seconds, else 202 with the job's URLs; each
app's typed task operations in the OpenAPI schema."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.helpers import LAB, api_as, publish_as

URL = "/api/v1/apps/lab/tasks/{}"


@pytest.fixture
def lab_for_carol(alice, carol, runtime, platform_public_key):
    from sessions.runtime import package

    publish_as(alice, package.pack_folder(LAB, platform_public_key)[0]).app.grants.create(user=carol, level="viewer")


@pytest.mark.django_db
def test_a_task_without_wait_is_queued_and_named_by_its_urls(lab_for_carol, carol):
    answer = api_as(carol).post(URL.format("solve"), {"input": {"cap": 3}}, format="json")
    assert answer.status_code == 202 and answer.json()["state"] == "queued"
    body = answer.json()
    assert answer["Location"] == body["url"] == f"/api/v1/jobs/{body['job']['id']}"
    assert body["result_url"].endswith("/result?format=json") and "outputs" not in body
    # Waiting without a node to run it: 202 at the end of the wait, the job still queued.
    waited = api_as(carol).post(URL.format("solve") + "?wait=0.3", {}, format="json")
    assert waited.status_code == 202 and waited.json()["state"] == "queued"


@pytest.mark.django_db
def test_refusals_say_why_and_queue_nothing(lab_for_carol, carol, dave):
    from sessions.models import Job

    client = api_as(carol)
    assert client.post("/api/v1/apps/nowhere/tasks/solve", {}, format="json").status_code == 404
    unknown = client.post(URL.format("nothing"), {}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_procedure"
    bad = client.post(URL.format("solve"), {"input": {"cap": "lots"}}, format="json")
    assert bad.status_code == 400 and "cap" in bad.json()["error"]["message"]
    extra = client.post(URL.format("solve"), {"input": {}, "app": "other"}, format="json")
    assert extra.status_code == 400 and "app" in extra.json()["error"]["message"]
    too_long = client.post(URL.format("solve") + "?wait=100000", {}, format="json")
    assert too_long.status_code == 400 and "wait" in str(too_long.json()["error"])
    assert api_as(dave).post(URL.format("solve"), {}, format="json").status_code == 404  # not granted
    from rest_framework.test import APIClient

    assert APIClient().post(URL.format("solve"), {}, format="json").status_code == 401
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_each_app_has_its_typed_task_operations_in_the_schema(lab_for_carol, carol, dave):
    schema = api_as(carol).get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/apps/lab/tasks/solve"]["post"]
    assert operation["operationId"] == "task_lab_solve"
    assert schema["components"]["schemas"]["LabSolveInput"]["properties"]["cap"]["type"] == "number"
    assert set(schema["components"]["schemas"]["LabSolveOutputs"]["properties"]) == {"objective", "status", "steps"}
    assert "/api/v1/apps/lab/tasks/slow" in schema["paths"]
    assert "/api/v1/apps/lab/tasks/solve" not in api_as(dave).get("/api/v1/schema/?format=json").json()["paths"]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_task_waited_for_answers_with_its_outputs_and_holds_no_request_thread(live_node, lab_for_carol, carol):
    from apps.accounts.api_keys import api_key_create

    key, _ = api_key_create(user=carol, name="erp")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    task = f"{live_node.url}{URL}"

    done = http.post(task.format("solve") + "?wait=60", json={"input": {"cap": 3.5}}, timeout=90)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "succeeded" and done.json()["outputs"]["objective"] == 3.5
    assert set(done.json()["outputs"]) == {"objective", "status", "steps"}

    # Three callers wait on slow jobs: more than the web processes have request threads.
    answered: list[str] = []

    def call(name: str) -> None:
        reply = http.post(task.format("slow") + "?wait=60", json={"input": {"seconds": 3}}, timeout=90)
        answered.append(f"{name} {reply.status_code}")

    callers = [threading.Thread(target=call, args=(f"task{i}",)) for i in range(3)]
    for caller in callers:
        caller.start()
    listed = http.get(f"{live_node.url}/api/v1/jobs", timeout=30)  # served while they all wait
    answered.append(f"list {listed.status_code}")
    for caller in callers:
        caller.join()
    assert answered[0] == "list 200" and sorted(answered[1:]) == ["task0 200", "task1 200", "task2 200"]

    pending = http.post(task.format("slow") + "?wait=0.5", json={"input": {"seconds": 30}}, timeout=30)
    assert pending.status_code == 202 and pending.json()["state"] in ("queued", "running")
    http.post(f"{live_node.url}{pending.json()['url']}/cancel", timeout=30)
