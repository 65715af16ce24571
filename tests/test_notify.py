"""Wake-ups instead of polling (pro_portal.notify): delivered after a commit and never for a rollback,
across processes, and across nodes, where a worker whose own poll would take ten minutes still
runs a job queued on another node."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from pro_portal import notify
from sessions import jobs
from sessions.models import JobState
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_notification_arrives_after_the_commit_and_never_for_a_rollback():
    waiting = notify.hub().subscribe("jobs")
    try:
        with transaction.atomic():
            notify.notify("jobs", id=1, state="queued")
            if connection.vendor == "postgresql":  # NOTIFY is sent by the commit
                assert waiting.wait(0.3) == []
        assert waiting.wait(10) == [{"id": 1, "state": "queued"}]

        with pytest.raises(RuntimeError), transaction.atomic():
            notify.notify("jobs", id=2, state="queued")
            raise RuntimeError("rolled back")
        assert waiting.wait(0.5) == []
    finally:
        waiting.close()


def test_another_process_is_told(tmp_path, settings):
    """A subscriber in a separate Python process (as the solve worker is) hears this one."""
    import subprocess
    import sys

    from tests.live import platform_env

    listener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from pro_portal import notify; s = notify.hub().subscribe('sessions');"
            "print('LISTENING', flush=True); print(s.wait(20), flush=True)",
        ],
        env=platform_env(8000),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout.readline().strip() == "LISTENING", listener.stderr.read()
        notify.notify("sessions", id="abc", state="starting")
        assert listener.stdout.readline().strip() == "[{'id': 'abc', 'state': 'starting'}]"
    finally:
        listener.kill()
        listener.wait()


def test_an_unknown_topic_is_refused():
    with pytest.raises(ValueError, match="unknown topic"):
        notify.notify("gossip", id=1)


def test_an_idle_wait_ends_on_a_poke_or_when_stopping():
    waiting = notify.hub().subscribe("nodes")
    stopping = threading.Event()
    try:
        threading.Timer(0.1, waiting.poke).start()
        assert waiting.idle(stopping, 30) == []  # woken by the poke, long before 30 s
        threading.Timer(0.1, stopping.set).start()
        assert waiting.idle(stopping, 30) == []
        assert stopping.is_set()
    finally:
        waiting.close()


@pytest.mark.cluster
def test_a_job_queued_on_one_node_wakes_the_worker_of_another(cluster, alice, lab):
    """The solver's own look at the queue comes every ten minutes: only a notification runs the jobs."""
    web = cluster.start("front", roles=("web",))
    solver = cluster.start("solver", roles=("solves",), PRO_QUEUE_SAFETY_POLL_SECONDS="600")
    cluster.wait_up(web, solver)
    for _ in range(2):
        job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        wait_for(job, JobState.SUCCEEDED, timeout=60)
        assert job.node == "solver"
