"""The master lease and the master's duties, in the admin database, without node processes.

The multi-process tests (``tests/test_cluster_failover.py``) kill real nodes; these pin the
rules those rest on: one holder at a time, takeover only after expiry, terms that fence an old
master's actions, and what a dead node's work becomes.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.cluster import election, failover
from apps.cluster.models import MasterLease, Node, NodeState
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def heartbeat(settings):
    settings.PRO_HEARTBEAT_SECONDS = 10.0  # the lease lasts 15 s


def test_one_holder_at_a_time_and_takeover_only_after_expiry():
    now = timezone.now()
    assert election.lease_claim(node="a", now=now) == 1
    assert election.lease_claim(node="b", now=now + timedelta(seconds=1)) is None
    assert election.lease_claim(node="a", now=now + timedelta(seconds=10)) == 1  # renewed, same term
    assert election.lease_claim(node="b", now=now + timedelta(seconds=24)) is None  # a's renewal still holds
    assert election.lease_claim(node="b", now=now + timedelta(seconds=25)) == 2  # ran out: b takes it
    assert election.lease_claim(node="a", now=now + timedelta(seconds=26)) is None  # a cannot renew b's lease
    lease = MasterLease.objects.get()
    assert (lease.holder, lease.term) == ("b", 2)


def test_a_released_lease_is_taken_at_once():
    assert election.lease_claim(node="a") == 1
    assert election.lease_release(node="b") is False
    assert election.lease_release(node="a") is True
    assert election.lease_claim(node="b") == 2


def test_an_old_master_cannot_act_once_another_holds_the_lease():
    a, b = election.Candidate("a"), election.Candidate("b")
    assert a.campaign() and a.is_master
    assert not b.campaign()
    assert a.act(lambda: "done") == "done"
    # a stalls: its lease runs out and b takes it, while a still believes it is master.
    MasterLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert b.campaign() and b.term == 2
    assert a.is_master  # by its own clock, which the fenced action does not trust
    assert a.act(lambda: "done") is None
    assert not a.is_master
    assert not a.campaign()  # and it does not take the lease back
    assert b.act(lambda: "done") == "done"


def test_a_master_whose_clock_says_the_lease_may_have_run_out_stops_acting(settings):
    settings.PRO_HEARTBEAT_SECONDS = 0.2  # lease 0.3 s, valid by its own clock for 0.25 s
    a = election.Candidate("a")
    assert a.campaign()
    time.sleep(0.3)
    assert not a.is_master
    assert a.act(lambda: "done") is None


def _node(name: str, age: float, state: str = NodeState.UP) -> Node:
    return Node.objects.create(
        name=name, roles=["solves"], state=state, last_heartbeat=timezone.now() - timedelta(seconds=age)
    )


def test_a_node_that_missed_two_heartbeats_is_dead():
    _node("fresh", 5)
    _node("late", 19)  # one heartbeat missed
    _node("silent", 23)  # two missed, and the slack
    _node("stopped", 600, NodeState.STOPPED)
    assert failover.nodes_declare_dead(master="m") == ["silent"]
    silent = Node.objects.get(name="silent")
    assert silent.state == NodeState.DEAD and silent.declared_dead_by == "m"
    assert failover.nodes_declare_dead(master="m") == []


def test_a_dead_nodes_jobs_go_back_to_the_queue_and_fail_after_their_attempts(alice, lab, storage_folder):
    from sessions import jobs
    from sessions.models import Job, JobLogChunk, JobState

    first = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    last = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    Job.objects.filter(pk=last.pk).update(attempt=2)  # it has run twice already
    for _ in (first, last):
        claimed = jobs.job_claim_next(node="gone")
        jobs.job_append_log(job=claimed, offset=0, text="Presolving\n")
    _node("gone", 60)
    _node("alive", 1)

    changed = failover.master_tick(master="m")

    assert changed["dead"] == ["gone"]
    assert changed["recovered"]["gone"]["jobs"] == {"queued": [first.pk], "failed": [last.pk]}
    first.refresh_from_db(), last.refresh_from_db()
    assert (first.state, first.attempt, first.node) == (JobState.QUEUED, 1, "")
    assert "Node gone stopped answering (declared dead by master m)" in first.error_message
    assert jobs.job_log(first)[0] == (
        "Presolving\n--- attempt 1: Node gone stopped answering (declared dead by master m) ---\n"
    )
    assert (last.state, last.attempt) == (JobState.FAILED, 3)
    assert last.error_message == (
        "Node gone stopped answering (declared dead by master m); the job was attempted 3 times, the limit."
    )
    assert last.log_path and (storage_folder / last.log_path).read_text().startswith("Presolving\n")
    assert not JobLogChunk.objects.filter(job=last).exists()
    # The next claim is the next attempt; the dead node's late end of the first one changes nothing.
    again = jobs.job_claim_next(node="alive")
    assert (again.pk, again.attempt) == (first.pk, 2)
    late = Job.objects.get(pk=first.pk)
    late.node, late.attempt = "gone", 1
    assert jobs.job_finish(job=late, state=JobState.SUCCEEDED, result_blob=b"late") is False
    assert jobs.job_append_log(job=late, offset=0, text="late line") == 0
    again.refresh_from_db()
    assert (again.state, again.node, again.result_case) == (JobState.RUNNING, "alive", None)
    assert failover.master_tick(master="m")["recovered"] == {}


def test_jobs_of_a_node_that_stopped_renewing_their_lease_are_requeued(settings, alice, lab):
    from sessions import jobs
    from sessions.models import Job, JobState

    settings.PRO_JOB_LEASE_SECONDS = 30
    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    jobs.job_claim_next(node="hung")
    _node("hung", 1)  # its agent heartbeats, its worker does not renew
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=31))
    changed = failover.master_tick(master="m")
    assert changed["dead"] == [] and changed["expired_leases"] == [(job.pk, JobState.QUEUED)]
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert job.error_message == "The worker on node hung stopped renewing its lease on the job"


def test_jobs_on_a_node_without_a_row_yet_are_left_alone(alice, lab):
    """A worker may claim a job a moment before its agent registers the node."""
    from sessions import jobs
    from sessions.models import JobState

    job = jobs.job_submit(user=alice, app_name="lab", procedure="solve")
    jobs.job_claim_next(node="booting")
    assert failover.master_tick(master="m")["recovered"] == {}
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_sessions_no_node_takes_fail_with_a_reason(alice, lab):
    from sessions import data_sessions
    from sessions.models import DataSession, SessionState

    session = data_sessions.session_launch(user=alice, app_name="lab")
    DataSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert failover.master_tick(master="m")["unclaimed_sessions"] == 1
    session.refresh_from_db()
    assert session.state == SessionState.FAILED
    assert "No node with the sessions role and free capacity took the session" in session.error_message


def test_a_node_back_from_the_dead_is_up_again(caplog):
    from apps.cluster.services import node_heartbeat

    node = _node("lazarus", 60)
    failover.nodes_declare_dead(master="m")
    assert node_heartbeat(node=node) is True
    node.refresh_from_db()
    assert (node.state, node.declared_dead_at) == (NodeState.UP, None)
    assert "Node lazarus is back after being declared dead" in caplog.text
    assert node_heartbeat(node=node) is False


def test_a_dead_nodes_sessions_are_lost_and_restartable(alice, lab):
    from sessions import data_sessions
    from sessions.models import DataSession, SessionState

    session = data_sessions.session_launch(user=alice, app_name="lab")
    DataSession.objects.filter(pk=session.pk).update(node="gone", state=SessionState.RUNNING)
    _node("gone", 60)
    changed = failover.master_tick(master="m")
    assert changed["dead"] == ["gone"] and changed["recovered"]["gone"]["sessions_lost"] == 1
    session.refresh_from_db()
    assert session.state == SessionState.LOST
    assert "node gone stopped answering (declared dead by master m)" in session.error_message
    again = data_sessions.session_restart(user=alice, session=session)
    assert again.state == SessionState.STARTING and again.node == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="row locks held across connections, and the server's idle-transaction timeout, are PostgreSQL's",
)
def test_a_master_frozen_inside_its_actions_does_not_block_the_takeover(settings):
    """Frozen mid-action, the old master holds the lease row's lock; the server cuts it off."""
    from django.db import DatabaseError, connection

    settings.PRO_HEARTBEAT_SECONDS = 0.4  # lease 0.6 s; cut off after 0.2 s idle in its transaction
    old, new = election.Candidate("old"), election.Candidate("new")
    assert old.campaign()
    frozen, thaw, outcome = threading.Event(), threading.Event(), []

    def freeze() -> None:
        def action():
            frozen.set()
            thaw.wait(30)  # the process stands still: its transaction is idle, holding the lock
            return MasterLease.objects.count()  # its first query after the freeze

        try:
            outcome.append(old.act(action))
        except DatabaseError as exc:
            outcome.append(exc)
        finally:
            connection.close()

    frozen_master = threading.Thread(target=freeze)
    frozen_master.start()
    try:
        assert frozen.wait(10)
        assert wait_until(new.campaign, 10, interval=0.1), "the takeover stayed blocked behind the frozen master"
        assert frozen_master.is_alive()  # taken over while the old master is still frozen
    finally:
        thaw.set()
        frozen_master.join(10)
    assert isinstance(outcome[0], DatabaseError)  # its action was cut off and rolled back
    lease = MasterLease.objects.get()
    assert (lease.holder, lease.term) == ("new", 2)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="row locks held across connections are PostgreSQL's (SQLite locks the whole file)",
)
def test_a_job_row_locked_by_a_frozen_writer_does_not_hold_up_the_rest(settings, alice, lab):
    """A node frozen in the middle of a write to one job's row: the master recovers the others now."""
    from django.db import connection, transaction

    from sessions import jobs
    from sessions.models import Job, JobState

    settings.PRO_HEARTBEAT_SECONDS = 2.0  # the master waits 0.5 s for a lock
    locked, free = (jobs.job_submit(user=alice, app_name="lab", procedure="solve") for _ in range(2))
    for _ in range(2):
        jobs.job_claim_next(node="frozen")
    _node("frozen", 60)
    holding, release = threading.Event(), threading.Event()

    def frozen_write() -> None:
        try:
            with transaction.atomic():
                Job.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    writer = threading.Thread(target=frozen_write)
    writer.start()
    master = election.Candidate("m")
    try:
        assert holding.wait(10) and master.campaign()
        changed = master.act(failover.master_tick, master="m")
        assert changed["dead"] == ["frozen"]
        assert changed["recovered"]["frozen"]["jobs"] == {"queued": [free.pk], "failed": []}
        assert Job.objects.get(pk=locked.pk).state == JobState.RUNNING
    finally:
        release.set()
        writer.join(10)
    assert master.campaign()
    assert master.act(failover.master_tick, master="m")["recovered"]["frozen"]["jobs"]["queued"] == [locked.pk]
