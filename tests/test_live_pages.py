"""Live pages (apps/portal/live.py): an open page is told over its websocket which of its jobs,
sessions or nodes changed; nobody is told of what is not theirs; bursts reach it in few frames."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from apps.cluster import services as cluster
from pro_portal import notify
from sessions import jobs
from tests.helpers import ORIGIN, communicate

pytestmark = pytest.mark.django_db(transaction=True)

QUIET = 0.8  # seconds a page waits to be sure that nothing more is coming


def login_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def frames_until_quiet(communicator, first_timeout: float = 10) -> list[dict]:
    """The frames a page gets: the first within ``first_timeout``, then until it is quiet."""
    frames = []
    timeout = first_timeout
    while not await communicator.receive_nothing(timeout=timeout, interval=0.02):
        frames.append(json.loads(await communicator.receive_from()))
        timeout = QUIET
    return frames


def told(frames: list[dict]) -> list[tuple[str, object]]:
    return [(change["topic"], change["id"]) for frame in frames for change in frame.get("changes", [])]


def follow(user, query: str, action):
    """Open ``/ws/live/?query`` as ``user``'s logged-in page, run ``action`` (in a thread), return the frames."""

    async def script(communicator):
        await database_sync_to_async(action)()
        return await frames_until_quiet(communicator)

    return communicate(f"/ws/live/?{query}", [ORIGIN, login_cookie(user)], script)


def test_a_page_is_told_of_its_users_jobs_and_not_of_others(alice, carol, lab):
    mine = []

    def submit():
        notify.notify("jobs", id=99999, owner=carol.pk, state="queued")  # what carol's job would say
        mine.append(jobs.job_submit(user=alice, app_name="lab", procedure="solve").pk)

    connected, _, frames = follow(alice, "topics=jobs", submit)
    assert connected
    assert told(frames) == [("jobs", mine[0])]
    change = frames[0]["changes"][0]
    assert change["state"] == "queued" and "owner" not in change


def test_an_admin_is_told_of_every_job_and_of_the_nodes(admin_user, alice, lab):
    def changes():
        jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        cluster.node_register(name="node-b", address="10.0.0.2")

    connected, _, frames = follow(admin_user, "topics=jobs,nodes", changes)
    assert connected
    assert sorted(topic for topic, _ in told(frames)) == ["jobs", "nodes"]
    assert ("nodes", "node-b") in told(frames)


def test_a_job_page_is_told_of_that_job_only(alice, lab):
    first = jobs.job_submit(user=alice, app_name="lab", procedure="solve")

    def changes():
        jobs.job_submit(user=alice, app_name="lab", procedure="solve")
        jobs.job_cancel(user=alice, job=first)

    connected, _, frames = follow(alice, f"topics=jobs&job={first.pk}", changes)
    assert connected
    assert told(frames) == [("jobs", first.pk)]
    assert frames[0]["changes"][0]["state"] == "cancelled"


def test_a_burst_reaches_a_page_in_few_frames_and_a_flood_as_one_resync(alice):
    def burst():
        for number in range(60):
            notify.notify("jobs", id=number, owner=alice.pk, state="queued")

    connected, _, frames = follow(alice, "topics=jobs", burst)
    assert connected and len(told(frames)) == 60
    assert len(frames) <= 3, [len(frame["changes"]) for frame in frames]

    def flood():
        for number in range(500):
            notify.notify("jobs", id=number, owner=alice.pk, state="queued")

    connected, _, frames = follow(alice, "topics=jobs", flood)
    assert connected and {"resync": True} in frames


@pytest.mark.parametrize(
    ("who", "query", "code"),
    [
        ("carol", "topics=nodes", 4400),  # the nodes are the admins'
        ("carol", "topics=jobs,cases", 4400),  # no such topic
        ("carol", "", 4400),
        ("carol", "topics=jobs&job=first", 4400),
        (None, "topics=jobs", 4401),  # not logged in
    ],
)
def test_refusals(carol, who, query, code):
    headers = [ORIGIN, login_cookie(carol)] if who else [ORIGIN]
    connected, close_code, _ = communicate(f"/ws/live/?{query}", headers)
    assert not connected and close_code == code


def test_another_origin_is_refused_before_login(carol):
    connected, _, _ = communicate("/ws/live/?topics=jobs", [(b"origin", b"http://evil.example"), login_cookie(carol)])
    assert not connected
