"""run_platform's restart policy (backoff, giving up) and the restart count on the node's row."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from django.db import DatabaseError

from apps.cluster.management.commands import run_platform
from apps.cluster.management.commands.run_platform import (
    MAX_QUICK_FAILURES,
    QUICK_SECONDS,
    STABLE_SECONDS,
    Child,
    GiveUp,
    backoff_delay,
    how_it_ended,
)
from apps.cluster.models import Node, NodeState
from apps.cluster.services import node_child_restarted, node_register


def test_the_backoff_doubles_from_one_second_up_to_a_minute():
    assert [backoff_delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_delay(10_000) == 60


def test_how_a_child_ended():
    assert how_it_ended(3) == "exit 3"
    assert how_it_ended(-9) == "killed by SIGKILL"
    assert how_it_ended(-200) == "killed by signal 200"


def dead_child(started_at: float, returncode: int = 1) -> Child:
    child = Child("web", ["true"], started_at=started_at)
    child.process = SimpleNamespace(returncode=returncode)
    return child


def test_a_child_that_crashes_now_and_then_is_restarted_with_growing_delays_reset_by_a_stable_run():
    child = dead_child(started_at=0.0)
    delays = []
    now = 0.0
    for uptime in (20, 30, 20, 15, 40, 20, 20):  # never quick, never stable: the backoff grows without end
        now += uptime
        delays.append(child.failed(now))
        assert child.restart_at == now + delays[-1]
        child.started_at = now + delays[-1]
        now = child.started_at
    assert delays == [1, 2, 4, 8, 16, 32, 60]
    delay = child.failed(now + STABLE_SECONDS)  # up for a minute: recovered
    assert delay == 1 and child.failures == 1


def test_a_child_that_cannot_start_stops_the_platform_after_a_few_quick_failures():
    child = dead_child(started_at=100.0, returncode=1)
    for n in range(1, MAX_QUICK_FAILURES):
        assert child.failed(child.started_at + 0.5) == backoff_delay(n)
        child.started_at = child.restart_at
    with pytest.raises(GiveUp, match=rf"web failed {MAX_QUICK_FAILURES} times in a row .*\(last: exit 1\)"):
        child.failed(child.started_at + 0.5)


def test_a_slow_failure_breaks_the_run_of_quick_ones():
    child = dead_child(started_at=0.0)
    for _ in range(MAX_QUICK_FAILURES - 1):
        child.failed(child.started_at + 1)
        child.started_at = child.restart_at
    child.failed(child.started_at + QUICK_SECONDS + 1)
    assert child.quick_failures == 0 and child.failures == MAX_QUICK_FAILURES


@pytest.mark.django_db
def test_restarts_are_counted_on_the_node_row(settings):
    settings.PRO_NODE_NAME = "n1"
    node_child_restarted(child="agent", reason="exit 1")  # before the agent registered the node
    node = Node.objects.get(name="n1")
    assert (node.restarts, node.state, node.last_restart_child) == (1, NodeState.STOPPED, "agent")
    node_register()  # the restarted agent registers the node: the count stays
    node_child_restarted(child="solves", reason="killed by SIGKILL")
    node = Node.objects.get(name="n1")
    assert (node.restarts, node.state, node.last_restart_child, node.last_restart_reason) == (
        2,
        NodeState.UP,
        "solves",
        "killed by SIGKILL",
    )
    assert node.last_restart_at is not None


def test_a_restart_the_database_cannot_record_is_only_logged(monkeypatch):
    def broken(**kwargs):
        raise DatabaseError("no such table: cluster_node")

    monkeypatch.setattr(run_platform, "node_child_restarted", broken)
    command = run_platform.Command(stdout=io.StringIO(), stderr=io.StringIO())
    command._record_restart("web", "exit 1")
    assert "Could not record the restart of web in the admin database: no such table" in command.stderr._out.getvalue()
