"""Failover with real nodes: separate ``run_platform`` process groups, killed with SIGKILL.

Each node heartbeats every second (``tests.cluster.HEARTBEAT``); the lab app's ``steady``
procedure solves the egout MIP with HiGHS again and again for as long as the job asks, so a
node can be killed in the middle of a real solve. The timings are written for
``bench/failover_bench.py``; they are not asserted on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sessions.runtime import package
from tests.cluster import HEARTBEAT, master, record_timings
from tests.helpers import browser, wait_until

pytestmark = [
    pytest.mark.live,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="a cluster's nodes share a PostgreSQL admin database; SQLite is the one-machine default",
    ),
]

LAB = Path(__file__).parent / "apps" / "lab"
EGOUT = 568.1007
WAIT = 90  # seconds: a generous bound on anything the cluster does, for a loaded machine


def submit_steady(user, seconds: float):
    from sessions import jobs

    return jobs.job_submit(user=user, app_name="lab", procedure="steady", input_values={"seconds": seconds})


def job_now(job_id: int):
    from sessions.models import Job

    return Job.objects.get(pk=job_id)


def running_on(job_id: int, attempt: int) -> str | None:
    """The node running this attempt of the job, once its solve has logged a round."""
    from sessions import jobs

    job = job_now(job_id)
    if job.state != "running" or job.attempt != attempt:
        return None
    header = f"--- attempt {attempt} of job {job_id} on node {job.node}:"
    log = jobs.job_log(job)[0]
    return job.node if header in log and "round 1:" in log.split(header, 1)[1] else None


def result_objective(job) -> float:
    from sessions.cases import case_read_bytes
    from sessions.runtime.case import read_case

    return read_case(case_read_bytes(job.result_case)).values["objective"]


def assert_nothing_lost_or_doubled(job, storage_folder: Path) -> None:
    """One result case, one log file in storage, no log pieces left in the database."""
    from sessions.models import Case, JobLogChunk

    results = Case.objects.filter(kind="result", name=f"result of job {job.pk}")
    assert results.count() == 1 and results.get() == job.result_case
    assert (storage_folder / job.result_case.storage_path).is_file()
    assert job.log_path and (storage_folder / job.log_path).is_file()
    assert not JobLogChunk.objects.filter(job=job).exists()
    assert [p.name for p in (storage_folder / "jobs" / str(job.pk)).iterdir()] == [Path(job.log_path).name]


def test_a_job_whose_node_is_killed_mid_solve_completes_on_another_node(cluster, alice, lab, storage_folder):
    from apps.cluster.models import Node

    first, second = cluster.start("node-a"), cluster.start("node-b")
    cluster.wait_up(first, second)
    job = submit_steady(alice, seconds=12)
    victim_name = wait_until(lambda: running_on(job.pk, 1), WAIT)
    assert victim_name, job_now(job.pk).__dict__
    victim = next(n for n in cluster.nodes if n.name == victim_name)
    survivor = next(n for n in cluster.nodes if n is not victim)

    killed = victim.kill()
    assert wait_until(lambda: job_now(job.pk).state == "queued" or job_now(job.pk).attempt == 2, WAIT)
    requeued = time.monotonic()
    assert wait_until(lambda: running_on(job.pk, 2), WAIT) == survivor.name
    restarted = time.monotonic()
    assert wait_until(lambda: job_now(job.pk).is_finished, WAIT)
    done = time.monotonic()

    job = job_now(job.pk)
    assert (job.state, job.attempt, job.node) == ("succeeded", 2, survivor.name), job.error_message
    assert result_objective(job) == pytest.approx(EGOUT, rel=1e-6)
    dead = Node.objects.get(name=victim.name)
    assert dead.state == "dead" and dead.declared_dead_by == survivor.name
    log = (storage_folder / job.log_path).read_text()
    assert log.count(f"--- attempt 1 of job {job.pk} on node {victim.name}") == 1
    assert log.count(f"--- attempt 2 of job {job.pk} on node {survivor.name}") == 1
    assert log.count(f"--- attempt 1: Node {victim.name} stopped answering") == 1
    assert_nothing_lost_or_doubled(job, storage_folder)
    record_timings(
        "kill_mid_solve",
        kill_to_requeue=requeued - killed,
        kill_to_restart=restarted - killed,
        kill_to_completion=done - killed,
    )


def test_a_new_master_takes_over_when_the_master_is_killed(cluster):
    from apps.cluster.models import MasterLease

    nodes = [cluster.start(f"node-{n}", roles=()) for n in "abc"]
    cluster.wait_up(*nodes)
    old = wait_until(master, WAIT)
    assert old in {n.name for n in nodes}
    term = MasterLease.objects.get().term
    killed = next(n for n in nodes if n.name == old).kill()
    new = wait_until(lambda: (master() or old) != old and master(), WAIT)
    elected = time.monotonic()
    assert new and new != old
    lease = MasterLease.objects.get()
    assert lease.holder == new and lease.term == term + 1
    assert wait_until(lambda: MasterLease.objects.get().holder == new and master() == new, 5)
    record_timings("kill_master", kill_to_new_master=elected - killed)
    # The others saw one master at a time: each "is master now" line names a term of its own.
    claims = [line for n in nodes for line in n.log().splitlines() if "is master now (term" in line]
    terms = [line.rsplit("(term ", 1)[1].rstrip(")") for line in claims]
    assert len(terms) == len(set(terms)), claims


def test_an_old_master_back_from_a_stall_steps_down(cluster):
    from apps.cluster.models import MasterLease

    nodes = [cluster.start(f"node-{n}", roles=()) for n in "ab"]
    cluster.wait_up(*nodes)
    old_name = wait_until(master, WAIT)
    old = next(n for n in nodes if n.name == old_name)
    other = next(n for n in nodes if n is not old)
    old.pause()  # a network stall, as far as the cluster can tell
    assert wait_until(lambda: master() == other.name, WAIT)
    old.resume()
    assert wait_until(lambda: f"Node {old.name} is no longer master" in old.log(), WAIT), old.log()[-3000:]
    assert MasterLease.objects.get().holder == other.name
    time.sleep(3 * HEARTBEAT)  # three heartbeats: the old master does not take the lease back
    assert MasterLease.objects.get().holder == other.name


def test_a_job_whose_node_dies_three_times_fails_and_says_so(cluster, alice, lab, storage_folder):
    names = iter(f"node-{n}" for n in "abcde")
    alive = [cluster.start(next(names)), cluster.start(next(names))]
    cluster.wait_up(*alive)
    job = submit_steady(alice, seconds=60)
    for attempt in (1, 2, 3):
        runner_name = wait_until(lambda attempt=attempt: running_on(job.pk, attempt), WAIT)
        assert runner_name, (attempt, job_now(job.pk).__dict__)
        runner = next(n for n in alive if n.name == runner_name)
        runner.kill()
        alive.remove(runner)
        if attempt < 3:
            alive.append(cluster.start(next(names)))
            cluster.wait_up(alive[-1])
    assert wait_until(lambda: job_now(job.pk).is_finished, WAIT)
    job = job_now(job.pk)
    assert (job.state, job.attempt) == ("failed", 3)
    assert job.error_message.endswith(
        "stopped answering (declared dead by master "
        f"{job.error_message.split('master ')[1].split(')')[0]}); the job was attempted 3 times, the limit."
    )
    log = (storage_folder / job.log_path).read_text()
    for attempt in (1, 2, 3):
        assert log.count(f"--- attempt {attempt} of job {job.pk} on node") == 1
        assert log.count(f"--- attempt {attempt}: Node") == 1
    assert job.result_case is None


def test_a_node_back_after_being_declared_dead_does_not_overwrite_the_requeued_work(
    cluster, alice, lab, storage_folder
):
    from apps.cluster.models import Node

    first, second = (
        cluster.start("node-a", PRO_JOB_LEASE_SECONDS="3"),
        cluster.start("node-b", PRO_JOB_LEASE_SECONDS="3"),
    )
    cluster.wait_up(first, second)
    job = submit_steady(alice, seconds=6)
    stalled_name = wait_until(lambda: running_on(job.pk, 1), WAIT)
    stalled = next(n for n in cluster.nodes if n.name == stalled_name)
    other = next(n for n in cluster.nodes if n is not stalled)
    stalled.pause()
    assert wait_until(lambda: running_on(job.pk, 2), WAIT) == other.name
    stalled.resume()
    assert wait_until(lambda: "is no longer ours" in stalled.log() or "Discarding the late end" in stalled.log(), WAIT)
    assert wait_until(lambda: job_now(job.pk).is_finished, WAIT)
    job = job_now(job.pk)
    assert (job.state, job.attempt, job.node) == ("succeeded", 2, other.name)
    assert result_objective(job) == pytest.approx(EGOUT, rel=1e-6)
    log = (storage_folder / job.log_path).read_text()
    tail = log.split(f"--- attempt 2 of job {job.pk}")[1]
    assert "attempt 1" not in tail  # nothing of the late attempt after the new one began
    assert_nothing_lost_or_doubled(job, storage_folder)
    # And the node is up again for new work.
    assert wait_until(lambda: Node.objects.filter(name=stalled.name, state="up").exists(), WAIT)


def _ticket(url: str, username: str) -> str:
    import requests

    answer = requests.post(
        f"{url}/api/v1/auth/tickets", json={"username": username, "password": f"{username}-Secret-pw-1"}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["ticket"]


def _first_frame_through(web, session_id: str, ticket: str) -> dict:
    """Open the session through ``web``'s websocket proxy, as a script does; the first frame it relays."""
    import json

    from websockets.sync.client import connect

    with connect(
        f"ws://127.0.0.1:{web.port}/ws/sessions/{session_id}/",
        additional_headers={"Authorization": f"Bearer {ticket}", "Origin": web.url},
        open_timeout=30,
    ) as socket:
        return json.loads(socket.recv(timeout=30))


def test_a_dead_nodes_data_session_is_lost_and_restarts_on_another_node(cluster, carol, lab):
    import requests

    from sessions.models import DataSession

    lab.app.grants.create(user=carol, level="viewer")
    web = cluster.start("web-1", roles=("web",))
    cluster.wait_up(web)
    host = cluster.start("sessions-1", roles=("sessions",), PRO_INTERNAL_API_URL=web.url)
    cluster.wait_up(host)
    ticket = _ticket(web.url, "carol")
    headers = {"Authorization": f"Bearer {ticket}"}
    launched = requests.post(f"{web.url}/api/v1/sessions", json={"app": "lab"}, headers=headers, timeout=10)
    assert launched.status_code == 201, launched.text
    session_id = launched.json()["id"]
    assert wait_until(lambda: DataSession.objects.get(pk=session_id).state == "running", WAIT)
    assert DataSession.objects.get(pk=session_id).node == "sessions-1"
    # The web node's proxy reaches the session process on the other node.
    assert _first_frame_through(web, session_id, ticket)["type"] == "state"

    host.kill()
    assert wait_until(lambda: DataSession.objects.get(pk=session_id).state == "lost", WAIT)
    seen = requests.get(f"{web.url}/api/v1/sessions/{session_id}", headers=headers, timeout=10).json()
    assert seen["state"] == "lost"
    assert "node sessions-1 stopped answering" in seen["error_message"], seen
    assert "Restart it to continue on another node" in seen["error_message"]
    page = browser(carol).get("/sessions/").content.decode()  # the portal's sessions page says so too
    assert "node sessions-1 stopped answering" in page and 'value="restart"' in page

    other = cluster.start("sessions-2", roles=("sessions",), PRO_INTERNAL_API_URL=web.url)
    cluster.wait_up(other)
    again = requests.post(f"{web.url}/api/v1/sessions/{session_id}/restart", headers=headers, timeout=10)
    assert again.status_code == 201, again.text
    new_id = again.json()["id"]
    assert wait_until(lambda: DataSession.objects.get(pk=new_id).state == "running", WAIT)
    assert DataSession.objects.get(pk=new_id).node == "sessions-2"
    assert _first_frame_through(web, new_id, ticket)["type"] == "state"


def test_published_versions_are_verified_by_a_node_through_the_redis_queue(
    cluster, alice, runtime, platform_public_key
):
    """django-q2 on Redis is the cluster's shared task queue: the web node enqueues, a backend node verifies."""
    import redis
    import requests

    from apps.catalog.models import AppVersion

    queue = "redis://127.0.0.1:6379/9"
    redis.Redis.from_url(queue).flushdb()
    web = cluster.start("web-1", roles=("web",), REDIS_URL=queue, PRO_WORKERS="1")
    backend = cluster.start("backend-1", roles=(), REDIS_URL=queue)
    cluster.wait_up(web, backend)
    blob, _ = package.pack_folder(LAB, platform_public_key)
    ticket = _ticket(web.url, "alice")
    published = requests.post(
        f"{web.url}/api/v1/apps",
        data=blob,
        headers={"Authorization": f"Bearer {ticket}", "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert published.status_code == 201, published.text
    version = AppVersion.objects.get(app__name="lab")
    assert wait_until(lambda: AppVersion.objects.get(pk=version.pk).verification_state == "verified", WAIT), (
        AppVersion.objects.get(pk=version.pk).verification_error
    )
    logs = {node.name: node.log() for node in (web, backend)}
    assert sum("processing verify lab 1.0.0" in log for log in logs.values()) == 1, logs
