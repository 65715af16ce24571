"""The Slurm test cluster (tests/slurm_cluster.py) does what the Slurm executor's tests rely on:
jobs run and end with their output, a full cluster queues, a dead node fails its jobs, scancel ends one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> SlurmCluster:
    """The session's cluster, idle: no job of an earlier test, every node up."""
    slurm_cluster.reset()
    return slurm_cluster


def test_a_job_completes_with_its_output(slurm: SlurmCluster, tmp_path: Path) -> None:
    job_id = slurm.submit(
        "--no-requeue", "--time=5", "--mem=100", "--job-name=hello", "--wrap", "echo hi", cwd=tmp_path
    )

    job = slurm.wait_job(job_id, "COMPLETED", timeout=20)

    assert job["ExitCode"] == "0:0"
    assert (tmp_path / f"slurm-{job_id}.out").read_text() == "hi\n"


def test_a_failing_job_ends_failed_with_its_exit_code(slurm: SlurmCluster, tmp_path: Path) -> None:
    job_id = slurm.submit("--wrap", "exit 3", cwd=tmp_path)

    job = slurm.wait_job(job_id, ("FAILED", "COMPLETED"), timeout=20)

    assert (job["JobState"], job["Reason"], job["ExitCode"]) == ("FAILED", "NonZeroExitCode", "3:0")


def test_a_full_cluster_queues_the_next_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    running = [slurm.submit("--wrap", "sleep 300", cwd=tmp_path) for _ in slurm.nodes]
    waiting = slurm.submit("--wrap", "sleep 300", cwd=tmp_path)

    nodes = {slurm.wait_job(job_id, "RUNNING", timeout=20)["NodeList"] for job_id in running}
    assert nodes == set(slurm.nodes)  # one CPU a node: one job on each
    # PENDING, with reason Priority until a scheduler has tried it (about a second), then Resources.
    wait_until(lambda: slurm.job(waiting)["Reason"] == "Resources", timeout=10, message="never PENDING (Resources)")
    assert slurm.job(waiting)["JobState"] == "PENDING"
    assert slurm.run("squeue", "-h", "-j", waiting, "-o", "%T %r").stdout.strip() == "PENDING Resources"

    slurm.run("scancel", running[0])
    assert slurm.wait_job(waiting, "RUNNING", timeout=20)["NodeList"] in slurm.nodes


def test_scancel_ends_a_running_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    job_id = slurm.submit("--wrap", "sleep 300", cwd=tmp_path)
    slurm.wait_job(job_id, "RUNNING", timeout=20)

    slurm.run("scancel", job_id)

    job = slurm.wait_job(job_id, "CANCELLED", timeout=10)
    assert job["ExitCode"] == "0:15"
    assert slurm.run("squeue", "-h", "-j", job_id).stdout.strip() == ""  # squeue's default: active jobs only
    assert slurm.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip() == "CANCELLED"


def test_a_dead_node_fails_its_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    marker = tmp_path / "alive"
    job_id = slurm.submit(
        "--no-requeue", "--wrap", f"while true; do date +%s.%N > {marker}; sleep 0.2; done", cwd=tmp_path
    )
    node = slurm.wait_job(job_id, "RUNNING", timeout=20)["NodeList"]
    wait_until(marker.exists, timeout=10, message="the job did not start writing")

    started = time.monotonic()
    slurm.kill_node(node)

    # The job's processes died with the node (they would outlive a plain slurmd without cgroups).
    time.sleep(1)
    written = marker.stat().st_mtime
    time.sleep(1)
    assert marker.stat().st_mtime == written
    job = slurm.wait_job(job_id, "NODE_FAIL", timeout=40)
    assert time.monotonic() - started < 35
    assert job["Reason"] == "NodeDown"
    assert slurm.node_states()[node] == "down*"

    slurm.restart_node(node)  # back in service on its own (ReturnToService=2)
    assert slurm.node_states()[node] == "idle"
    assert slurm.job(job_id)["JobState"] == "NODE_FAIL"
