"""The sample apps through the real queue: known optima of the public instances, a MIP interrupted."""

import json
import random
import shutil
from pathlib import Path

import pytest

from sessions.models import Job, JobState
from tests.helpers import RunningWorker, publish_as, wait_for, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).parents[1] / "examples"
OPTIMA = json.loads((EXAMPLES / "instances" / "optima.json").read_text())  # the known optima, shared by the tests


def publish_example(user, name: str, public_key):
    from sessions.runtime import package

    blob, _ = package.pack_folder(EXAMPLES / name, public_key)
    version = publish_as(user, blob)
    assert version.verification_state == "verified", version.verification_error
    return version


def test_instances_reach_their_known_optima(api, alice, runtime, platform_public_key, storage_folder):
    publish_example(alice, "mps-solver", platform_public_key)
    folder = storage_folder / "apps" / "mps-solver" / "data"
    folder.mkdir(parents=True)
    for name in OPTIMA:
        shutil.copy(EXAMPLES / "instances" / name, folder / name)
    client = api(alice)
    submitted = {}
    for name in OPTIMA:
        body = {"app": "mps-solver", "procedure": "solve", "input": {"model_file": f"apps/mps-solver/data/{name}"}}
        submitted[name] = client.post("/api/v1/jobs", body, format="json").json()["id"]
    with RunningWorker(capacity=2):
        for job_id in submitted.values():
            wait_for(Job.objects.get(pk=job_id), JobState.SUCCEEDED, timeout=120)
    for name, job_id in submitted.items():
        result = client.get(f"/api/v1/jobs/{job_id}/result?format=json").json()["identifiers"]
        assert result["status"] == "Optimal", name
        assert result["objective"] == pytest.approx(OPTIMA[name], rel=1e-6), name


def test_file_the_owner_cannot_read_fails_the_job(api, alice, bob, runtime, platform_public_key, storage_folder):
    publish_example(alice, "mps-solver", platform_public_key)
    private = storage_folder / "users" / "bob"
    private.mkdir(parents=True)
    shutil.copy(EXAMPLES / "instances" / "afiro.mps", private / "afiro.mps")
    response = api(alice).post(
        "/api/v1/jobs",
        {"app": "mps-solver", "procedure": "solve", "input": {"model_file": "users/bob/afiro.mps"}},
        format="json",
    )
    job = Job.objects.get(pk=response.json()["id"])
    with RunningWorker(capacity=1):
        wait_for(job, JobState.FAILED)
    assert "FileNotFoundError" in job.error_message and "users/bob/afiro.mps" in job.error_message


def test_interrupted_mip_returns_its_incumbent(api, alice, runtime, platform_public_key):
    publish_example(alice, "facility-location", platform_public_key)
    rng = random.Random(7)
    facilities = [f"F{i}" for i in range(40)]
    customers = [f"K{j}" for j in range(160)]
    values = {
        "facilities": facilities,
        "customers": customers,
        "fixed_cost": [[f, rng.uniform(80, 160)] for f in facilities],
        "capacity": [[f, rng.uniform(60, 140)] for f in facilities],
        "demand": [[c, rng.uniform(5, 25)] for c in customers],
        "unit_cost": [[f, c, rng.uniform(0.5, 9)] for f in facilities for c in customers],
    }
    client = api(alice)
    job = Job.objects.get(
        pk=client.post(
            "/api/v1/jobs", {"app": "facility-location", "procedure": "solve", "input": values}, format="json"
        ).json()["id"]
    )
    with RunningWorker(capacity=1):
        wait_until(
            lambda: any(p.get("objective") for p in Job.objects.get(pk=job.pk).progress_points),
            timeout=60,
            message="no incumbent reported",
        )
        assert client.post(f"/api/v1/jobs/{job.pk}/interrupt").status_code == 200
        wait_for(job, JobState.SUCCEEDED, timeout=60)
    assert job.solver_status == "Interrupted by user (interrupted)"
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]
    assert result["total_cost"] > 0
    served = sum(row[-1] for row in result["flow"])
    assert served == pytest.approx(sum(row[-1] for row in values["demand"]), rel=1e-6)
    assert job.progress_points[-1]["bound"] <= result["total_cost"] + 1e-6


def test_partial_input_keeps_the_apps_own_data(api, alice, runtime, platform_public_key):
    publish_example(alice, "transport", platform_public_key)
    client = api(alice)
    body = {"app": "transport", "procedure": "solve", "input": {"demand": [["Chicago", 320]]}}
    job = Job.objects.get(pk=client.post("/api/v1/jobs", body, format="json").json()["id"])
    with RunningWorker(capacity=1):
        wait_for(job, JobState.SUCCEEDED)
    result = client.get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]
    assert result["status"] == "Optimal"
    assert ["Seattle", 350.0] in result["supply"] and ["New-York", 325.0] in result["demand"]
    assert ["Chicago", 320.0] in result["demand"]
    assert result["total_cost"] > 153.675
