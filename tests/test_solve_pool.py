"""The solve worker's warm runners (sessions/solve_pool.py): a job starts in a sandbox started
ahead of need, one sandbox per job all the same; jobs the pool cannot serve start cold; a warm
runner that died is never handed a job; the pool's sandboxes go with the worker."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from sessions import jobs, launcher
from sessions.models import JobState
from tests.helpers import RunningWorker, wait_for, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def warm_runners_only(settings):
    """Jobs of apps on their runtime's packages are forked (tests/test_fork_server.py); here the
    warm runners, which apps with an environment of their own take, are tried on the lab app."""
    settings.PRO_FORK_SERVER = False


def ready_runners(running: RunningWorker) -> list:
    pool = running.worker.pool
    if pool is None:
        return []
    with pool.lock:
        runners = [runner for warm in pool.warm.values() for runner in warm]
    return [runner for runner in runners if runner.wait_ready(0.01)]


def supervisor_of(running: RunningWorker, job):
    return wait_until(lambda: dict(running.worker.running).get(job.pk, (None,))[0], message=f"job {job.pk} never ran")


def test_jobs_start_in_warm_sandboxes_one_each_and_the_pool_refills(lab, alice):
    with RunningWorker(capacity=2) as running:
        wait_until(lambda: len(ready_runners(running)) == 2, message="the pool never filled")
        first = jobs.job_submit(user=alice, app_name="lab", procedure="slow", input_values={"seconds": 1.5})
        second = jobs.job_submit(user=alice, app_name="lab", procedure="slow", input_values={"seconds": 1.5})
        runners = [supervisor_of(running, job) for job in (first, second)]
        wait_until(lambda: all(s.process is not None for s in runners))
        assert all(s.warm is not None for s in runners), "both jobs took a warm runner"
        assert runners[0].workdir != runners[1].workdir
        assert [s.workdir.name.split("-")[:3] for s in runners] == [["job", str(j.pk), "1"] for j in (first, second)]
        assert running.namespace_of(first) != running.namespace_of(second)  # a PID namespace each
        for job in (first, second):
            done = wait_for(job, JobState.SUCCEEDED)
            assert done.result_case is not None
        wait_until(lambda: len(ready_runners(running)) == 2, message="the pool was not refilled")
        assert not {s.workdir for s in runners} & {r.workdir for r in ready_runners(running)}


def test_a_job_the_pool_cannot_serve_starts_cold(lab, alice):
    with RunningWorker(capacity=1) as running:
        wait_until(lambda: len(ready_runners(running)) == 2, message="the pool never filled")
        job = jobs.job_submit(
            user=alice,
            app_name="lab",
            procedure="slow",
            input_values={"seconds": 1.0},
            memory_limit_mb=settings.PRO_JOB_MEMORY_MB // 2,  # the pool's sandboxes have the default limit
        )
        supervisor = supervisor_of(running, job)
        wait_for(job, JobState.SUCCEEDED)
        assert supervisor.warm is None
        assert len(ready_runners(running)) == 2  # none was used up


def test_a_dead_warm_runner_is_not_given_a_job(lab, alice):
    with RunningWorker(capacity=1) as running:
        wait_until(lambda: len(ready_runners(running)) == 2, message="the pool never filled")
        for runner in ready_runners(running):
            runner.process.stop()
        job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        done = wait_for(job, JobState.SUCCEEDED)
        assert done.result_case is not None


def test_the_pools_sandboxes_end_with_the_worker(lab, alice):
    with RunningWorker(capacity=1) as running:
        wait_until(lambda: len(ready_runners(running)) == 2, message="the pool never filled")
        runners = ready_runners(running)
    assert all(runner.process.poll() is not None for runner in runners)
    assert not any(runner.workdir.exists() for runner in runners)
    for runner in runners:
        with pytest.raises(OSError):
            os.fstat(runner.control_read)
    assert not list(launcher.node_work_dir().glob("warm-job-*"))
