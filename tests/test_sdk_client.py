"""The public Python client (pro_sdk/client.py) against a real node: submit, follow the log, wait,
interrupt, results, cases and storage; the platform's refusals as one exception type; transient
failures retried, a submit never sent twice."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from pro_sdk.client import Client, PlatformError
from tests.helpers import LAB, publish_as

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(live_node, alice, runtime, platform_public_key) -> Client:
    from apps.accounts.api_keys import api_key_create
    from sessions.runtime import package

    publish_as(alice, package.pack_folder(LAB, platform_public_key)[0])
    raw, _ = api_key_create(user=alice, name="sdk test")
    return Client(live_node.url, api_key=raw)


def test_submit_follow_the_log_wait_and_read_the_result(client):
    assert [app["name"] for app in client.apps()] == ["lab"]
    job = client.submit("lab", "slow", input={"seconds": 1.0})
    lines = list(job.logs(follow=True))
    assert any(line.startswith("step ") for line in lines) and lines[0].startswith("--- attempt 1 of job")
    assert job.wait(timeout=60)["state"] == "succeeded"
    values = job.result()
    assert values["status"] == "Finished" and values["steps"] >= 1
    assert client.job(job.id).state == "succeeded" and job.id in [j.id for j in client.jobs(state="succeeded")]


def test_interrupt_keeps_the_best_solution(client):
    job = client.submit("lab", "slow", input={"seconds": 60.0})
    while job.status()["state"] != "running" or not job.progress():
        time.sleep(0.05)
    job.interrupt()
    assert job.wait(timeout=60)["state"] == "succeeded"
    assert job.result()["status"] == "Interrupted"


def test_refusals_are_platform_errors_with_the_code(client):
    with pytest.raises(PlatformError) as missing:
        client.submit("nowhere", "solve")
    assert missing.value.status == 404 and missing.value.code == "not_found"
    with pytest.raises(PlatformError) as bad:
        client.submit("lab", "solve", input={"cap": [1, 2]})
    assert bad.value.status == 400 and "cap" in bad.value.message
    with pytest.raises(ValueError, match="API key"):
        Client("http://127.0.0.1:1")


def test_cases_and_storage_round_trip(client, tmp_path):
    job = client.submit("lab", "solve")
    job.wait(timeout=60)
    result = client.download_case(job.info["result_case"], tmp_path / "result.case")
    stored = client.upload_case("lab", result, name="again")
    assert stored["name"] == "again" and stored["id"] in [case["id"] for case in client.cases("lab")]
    rerun = client.submit("lab", "solve", case=stored["id"])
    assert rerun.wait(timeout=60)["state"] == "succeeded"
    local = tmp_path / "notes.txt"
    local.write_text("numbers\n")
    client.storage_put(local, "users/alice/notes.txt")
    assert "users/alice/notes.txt" in [entry["path"] for entry in client.storage_list("users/alice")]
    assert client.storage_get("users/alice/notes.txt", tmp_path / "back.txt").read_text() == "numbers\n"


class FlakyServer(http.server.BaseHTTPRequestHandler):
    """Answers 503 (with Retry-After) to the first two requests of each method, then 200."""

    failures: dict[str, int]

    def _answer(self) -> None:
        seen = self.failures.get(self.command, 0)
        self.failures[self.command] = seen + 1
        if seen < 2:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            body = json.dumps({"error": {"code": "unavailable", "message": "restarting"}}).encode()
        else:
            self.send_response(200)
            body = json.dumps([] if self.command == "GET" else {"id": 1, "state": "queued"}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's names for the handlers

    def log_message(self, *args) -> None:
        pass


def test_transient_failures_are_retried_and_a_submit_is_never_sent_twice():
    FlakyServer.failures = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", api_key="key", retries=3)
        assert client.apps() == []  # two 503s, then the answer
        assert FlakyServer.failures["GET"] == 3
        with pytest.raises(PlatformError) as refused:
            client.submit("lab", "solve")
        assert refused.value.status == 503 and refused.value.code == "unavailable"
        assert FlakyServer.failures["POST"] == 1  # it may have been queued: not sent again
    finally:
        server.shutdown()


def test_a_local_apps_solve_runs_on_the_platform_and_its_results_come_back(client):
    from pro_sdk import load_app
    from sessions.runtime.manifest import read_author_manifest, validate_manifest

    app = load_app(LAB, validate_manifest(read_author_manifest(LAB), require_interface=False))
    data = app.new_data()
    data["cap"] = 7.5
    solved = app.run("solve", data, remote=client)
    assert solved is data and data["objective"] == 7.5 and data["status"] == "Optimal"
    assert client.jobs(app="lab")[0].state == "succeeded"  # it ran there, as a job
    with pytest.raises(ValueError, match="only solves"):
        app.run("reset", data, remote=client)
