"""Jobs forked from a warm fork server (sessions/fork_pool.py, sessions/runtime/fork_server.py).

Jobs running side by side on one node, forked from the same server, never see each other's
files, temporary folders or processes and cannot undo their walls, exactly as jobs in sandboxes
of their own (the same probe runs both ways). The pool forks jobs ahead and refills; a job the
server cannot take starts as before; the server goes with the worker, and a dead one is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from sessions import jobs
from sessions.fork_pool import ForkedRunner
from sessions.models import JobState
from sessions.solve_pool import WarmRunner
from tests.helpers import RunningWorker, api_as, publish_folder, wait_for, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WALLS = Path(__file__).parent / "apps" / "walls"
NEIGHBOURS = 3


@pytest.fixture
def walls(alice, runtime, platform_public_key):
    return publish_folder(alice, WALLS, platform_public_key)


def forked_ahead(running: RunningWorker) -> list[ForkedRunner]:
    pool = running.worker.pool
    if pool is None:  # the worker's thread has not made it yet
        return []
    with pool.lock:
        return [runner for ready in pool.forked.values() for runner in ready]


def fork_server(running: RunningWorker):
    pool = running.worker.pool
    with pool.lock:
        return next(iter(pool.servers.values()), None)


def supervisor_of(running: RunningWorker, job):
    return wait_until(lambda: dict(running.worker.running).get(job.pk, (None,))[0], message=f"job {job.pk} never ran")


@pytest.mark.parametrize("forking", [True, False], ids=["forked", "sandbox-each"])
def test_jobs_side_by_side_never_reach_each_other(walls, alice, forking, settings):
    settings.PRO_FORK_SERVER = forking
    with RunningWorker(capacity=NEIGHBOURS) as running:
        if forking:
            wait_until(lambda: len(forked_ahead(running)) == settings.PRO_SOLVE_POOL, message="none forked ahead")
        submitted = [jobs.job_submit(user=alice, app_name="walls", procedure="look") for _ in range(NEIGHBOURS)]
        supervisors = [supervisor_of(running, job) for job in submitted]
        done = [wait_for(job, JobState.SUCCEEDED, JobState.FAILED) for job in submitted]
    kinds = {type(supervisor.warm) for supervisor in supervisors}
    assert kinds == {ForkedRunner} if forking else kinds <= {WarmRunner, type(None)}, kinds
    for job in done:
        assert job.state == JobState.SUCCEEDED, job.error_message
        result = api_as(alice).get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]
        found = json.loads(result["report"])
        token = found["token"]
        assert found["others' markers"] == [], found
        assert found["others' markers through /proc"] == [], found
        assert {f"{folder}/walls-marker-{token}" for folder in ("/dev/shm", "/pro/work", "/tmp")} <= set(
            found["own markers"]
        )
        assert found["signalable"] == [], found  # no process but its own (and its sandbox's init)
        assert [entry for entry in found["proc"] if entry.isdigit() and int(entry) > found["pid"]] == []
        assert found["capabilities"] == "0000000000000000"
        undo = found["undo"]
        # A sandbox's own init may be ptraced by its app: it holds nothing but that sandbox.
        walls = {name: outcome for name, outcome in undo.items() if forking or name != "ptrace the init"}
        assert all(outcome.startswith("denied: ") for outcome in walls.values()), undo
        assert undo["unmount the working folder"] == "denied: Operation not permitted", undo
        assert {"app", "job.json", f"walls-marker-{token}"} <= set(found["working folder"])
    if forking:
        assert found["no new privileges"] == "1"
        assert undo["ptrace the init"] == "denied: Operation not permitted", undo
        assert undo["make a user namespace"] == "denied: Operation not permitted", undo
        assert found["own markers"] == sorted(
            f"{folder}/walls-marker-{token}" for folder in ("/dev/shm", "/pro/work", "/tmp")
        ), "its /dev is read-only"
        assert found["proc"] == sorted(
            ["2", "cpuinfo", "filesystems", "loadavg", "meminfo", "mounts", "net", "self", "stat", "uptime", "version"]
        )


def test_jobs_take_forked_ahead_runners_and_the_pool_refills(lab, alice):
    with RunningWorker(capacity=2) as running:
        wait_until(lambda: len(forked_ahead(running)) == settings.PRO_SOLVE_POOL, message="none forked ahead")
        ahead = {runner.process.init_pid for runner in forked_ahead(running)}
        job = jobs.job_submit(user=alice, app_name="lab", procedure="slow", input_values={"seconds": 1.0})
        supervisor = supervisor_of(running, job)
        wait_until(lambda: supervisor.process is not None)
        assert isinstance(supervisor.warm, ForkedRunner)
        assert supervisor.process.init_pid in ahead, "the job took a runner forked ahead"
        assert supervisor.workdir.name.startswith(f"job-{job.pk}-1-")
        assert supervisor.workdir.parent == fork_server(running).workdir / "jobs"
        assert (supervisor.workdir / "app").is_dir()
        assert wait_for(job, JobState.SUCCEEDED).result_case is not None
        wait_until(lambda: len(forked_ahead(running)) == settings.PRO_SOLVE_POOL, message="the pool was not refilled")
        # The job's end is recorded before its supervisor removes the folder.
        wait_until(lambda: not supervisor.workdir.exists(), message="the job's folder outlived it")

        # A job with a memory limit of its own is forked when it is claimed, in a cgroup with its limit.
        limited = jobs.job_submit(
            user=alice, app_name="lab", procedure="slow", input_values={"seconds": 1.0}, memory_limit_mb=300
        )
        supervisor = supervisor_of(running, limited)
        wait_until(lambda: supervisor.process is not None)
        assert isinstance(supervisor.warm, ForkedRunner)
        assert supervisor.process.init_pid not in ahead
        if supervisor.process.cgroup is not None:
            assert supervisor.process.cgroup.memory_limit_bytes() == int((300 * 1.25 + 64) * 1024 * 1024)
        assert wait_for(limited, JobState.SUCCEEDED).result_case is not None
        server = fork_server(running)
        runners = forked_ahead(running)
    assert server.process.poll() is not None, "the fork server ended with the worker"
    assert all(runner.process.poll() is not None for runner in runners)
    assert not server.workdir.exists()


def test_a_dead_fork_server_is_replaced_and_jobs_still_run(lab, alice):
    with RunningWorker(capacity=1) as running:
        wait_until(lambda: len(forked_ahead(running)) == settings.PRO_SOLVE_POOL, message="none forked ahead")
        first = fork_server(running)
        first.process.kill()
        job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        assert wait_for(job, JobState.SUCCEEDED).result_case is not None
        wait_until(
            lambda: (server := fork_server(running)) is not None and server is not first and server.usable(),
            message="the fork server was not replaced",
            timeout=30,
        )
        again = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        assert wait_for(again, JobState.SUCCEEDED).result_case is not None
