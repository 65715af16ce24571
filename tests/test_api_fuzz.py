"""Fuzzing the API: schemathesis sends what the OpenAPI schema allows (and what it does not) to a live server.

The server is the real one (uvicorn, as ``run_platform`` starts it) on the test database. A
publisher, alice, calls every operation with a ticket; her objects (a verified app with an
icon, a finished job with a log and a result, a queued job, a case, a grant, an API key, a
data session, files) and bob's (an app, a job, a case) exist, and the path parameters the
fuzzer draws are mixed with their real ids, so the object endpoints are reached and not only
answered 404. Every response must be no server error, carry a status code the schema
declares, and have a body that matches the schema (errors included: ``{"error": {...}}``).

``POST /auth/tickets`` is fuzzed with the rest: its bad logins lock the source address
(django-axes, answered 429, which the schema declares), while alice's ticket is minted in
this process and so is untouched by the lockout. Destructive operations (deleting apps,
versions, cases, files, keys, alice's own ticket) are fuzzed too: the setup below is made in
this process, not through the API, and alice gets a fresh ticket whenever the fuzzer revoked hers.

Bounded and reproducible: at most ``MAX_EXAMPLES`` generated requests per operation, plus
schemathesis's coverage cases (edges of each parameter and body) and a short stateful phase that
follows the links between operations, all in deterministic mode (the same requests every run).

schemathesis runs as its command line (``st run``): its pytest integration for schemas that only
exist at run time does not work with pytest 9.2 (it sets ``Node._nodeid``, which pytest removed).
The tests after the fuzz run hold the inputs it found on to the fixes they led to.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, publish_as
from tests.live import database_url

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = Path(__file__).parents[1] / "examples"
LAB = Path(__file__).parent / "apps" / "lab"
MAX_EXAMPLES = 25
CHECKS = ["not_a_server_error", "status_code_conformance", "response_schema_conformance"]
REQUEST_TIMEOUT = 30  # seconds; a request that hangs this long is a failure, not a slow machine
RUN_TIMEOUT = 600


def _finished_job(user, app_name: str):
    """A job that ran: claimed, logged and finished with a result, without a worker process."""
    from sessions import jobs
    from sessions.cases import case_read_bytes
    from sessions.models import JobState

    job = jobs.job_submit(user=user, app_name=app_name, procedure="solve")
    claimed = jobs.job_claim_next(node="fuzz-node")
    jobs.job_append_log(job=claimed, offset=0, text="Presolving model\nOptimal objective 42\n")
    jobs.job_finish(job=claimed, state=JobState.SUCCEEDED, result_blob=case_read_bytes(job.input_case))
    job.refresh_from_db()
    return job


@pytest.fixture
def fuzz_world(alice, bob, carol, runtime, platform_public_key) -> dict:
    """Alice's and bob's objects, made through the services (not through the API under test)."""
    from apps.accounts.api_keys import api_key_create
    from apps.storage.services import storage_put
    from sessions import cases, data_sessions, jobs
    from sessions.runtime import package
    from sessions.runtime.case import CaseData, case_to_bytes

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    version = publish_as(alice, blob)
    app = version.app
    lab_blob, _ = package.pack_folder(LAB, platform_public_key)
    lab = publish_as(bob, lab_blob).app
    grant = app.grants.create(user=carol, level="viewer")
    done = _finished_job(alice, app.name)
    queued = jobs.job_submit(user=alice, app_name=app.name, procedure="solve")
    bobs_job = jobs.job_submit(user=bob, app_name=lab.name, procedure="solve")
    session = data_sessions.session_launch(user=alice, app_name=app.name)
    case = cases.case_store(owner=alice, app=app, blob=case_to_bytes(CaseData(meta={})), name="mine")
    bobs_case = cases.case_store(owner=bob, app=lab, blob=case_to_bytes(CaseData(meta={})), name="bob's")
    storage_put(user=alice, path="users/alice/notes.txt", stream=io.BytesIO(b"alice's notes"))
    storage_put(user=alice, path=f"apps/{app.name}/data/plants.csv", stream=io.BytesIO(b"plant,supply\n"))
    storage_put(user=bob, path="users/bob/secret.txt", stream=io.BytesIO(b"bob's"))
    _, key = api_key_create(user=alice, name="alice's script")
    return {
        "name": [app.name, lab.name],
        "version": [version.version],
        "grant_id": [grant.pk],
        "job_id": [done.pk, queued.pk, bobs_job.pk],
        "case_id": [str(case.pk), str(bobs_case.pk), str(done.result_case_id)],
        "session_id": [str(session.pk)],
        "key_id": [key.pk],
        "path": [
            "users/alice/notes.txt",
            "users/alice/",
            f"apps/{app.name}/data/",
            f"apps/{app.name}/data/plants.csv",
            "users/bob/secret.txt",
            "",
        ],
    }


def run_schemathesis(server, world: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """``st run`` against the live server's schema, as alice, with the hooks in ``tests/fuzz_hooks.py``."""
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pro_portal.test_settings",
        "PRO_DATA_DIR": str(settings.DATA_DIR),
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "PRO_FUZZ_USER": "alice",
        "PRO_FUZZ_IDS": json.dumps(world),
    }
    # No crash cache between runs (it would replay old failures): each run stands on its own.
    config = tmp_path / "schemathesis.toml"
    config.write_text("[cache]\nenabled = false\n")
    command = [
        str(Path(sys.executable).with_name("st")),
        f"--config-file={config}",
        "run",
        f"{server.url}/api/v1/schema/?format=json",
        f"--url={server.url}",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-deterministic",  # the same requests in the same order on every run
        f"--request-timeout={REQUEST_TIMEOUT}",
        "--workers=1",
        "--no-color",
        # Its health checks include a speed check ("too_slow"): a loaded machine is no failure of the API.
        "--suppress-health-check=all",
    ]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


@pytest.mark.live
def test_api_fuzz(platform_server, fuzz_world, tmp_path):
    done = run_schemathesis(platform_server, fuzz_world, tmp_path)
    report = done.stdout[-40000:] + done.stderr[-3000:]
    assert done.returncode == 0, f"schemathesis found failures:\n{report}"
    selected, total = map(int, re.search(r"Selected: (\d+)/(\d+)", done.stdout).groups())
    assert selected == total == int(re.search(r"Tested: (\d+)", done.stdout).group(1)), report
    # A failure after the response began (a broken stream) would not show as a 500: look in the log too.
    assert "Traceback" not in platform_server.log(), platform_server.log()[-20000:]


def test_every_operation_declares_its_errors_in_the_one_error_shape():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "403" in responses, f"{method} {path}"
            if "{" in path:
                assert "404" in responses, f"{method} {path}"
            for code, response in responses.items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == error, f"{method} {path} {code}"
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


# ---------------------------------------------------------------- what the fuzzer found, held on to


def test_multipart_without_boundary_is_refused_not_a_server_error(api, alice, runtime):
    """Found: POST /apps with ``Content-Type: multipart/form-data`` and no boundary answered 500."""
    from apps.catalog.models import App

    response = api(alice).generic("POST", "/api/v1/apps", b"", content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "boundary" in response.json()["error"]["message"]
    assert not App.objects.exists()


def test_deleting_an_app_whose_finished_jobs_remain_is_a_conflict(api, alice, runtime, platform_public_key):
    """Found: DELETE /apps/{name} answered 500 (ProtectedError) when only finished jobs named its version."""
    from apps.catalog.models import App, AppVersion
    from sessions.runtime import package

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    version = publish_as(alice, blob)
    _finished_job(alice, "transport")
    response = api(alice).delete("/api/v1/apps/transport")
    assert response.status_code == 409, response.content
    assert response.json()["error"] == {
        "code": "version_in_use",
        "message": "App transport cannot be deleted: the records of 1 job still name it.",
    }
    assert App.objects.filter(name="transport").exists() and AppVersion.objects.filter(pk=version.pk).exists()


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/v1/jobs?app=%00x"),
        ("get", "/api/v1/jobs?state=running%00"),
        ("get", "/api/v1/cases?kind=%00"),
        ("get", "/api/v1/cases?app=transport%00"),
        ("post", "/api/v1/cases?app=%00"),
        ("post", "/api/v1/cases?app=transport&name=a%00b"),
    ],
)
def test_nul_in_a_query_parameter_is_refused(api, alice, method, url):
    """Found on PostgreSQL: a NUL in ``app`` or ``kind`` reached the database, which cannot hold one: 500."""
    from sessions.models import Case

    response = getattr(api(alice), method)(url, b"", content_type="application/octet-stream")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"].split(":")[0] in url, error
    assert not Case.objects.exists()
