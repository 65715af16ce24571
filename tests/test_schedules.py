"""Schedules: slots (cron with a time zone, intervals), the overlap and missed policies, refusals,
the API, the CLI, the portal page, and exactly one run per slot across two real nodes."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import Pro, api_as, browser

T0 = datetime(2026, 10, 24, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def short_intervals(settings):
    settings.PRO_SCHEDULE_MIN_INTERVAL_SECONDS = 1


def make(user, when: dict, now=T0, **fields):
    from apps.schedules.services import Spec, schedule_create

    spec = Spec(**{"app": "lab", "procedure": "solve", **when, **fields})
    return schedule_create(user=user, spec=spec, now=now)


def tick(seconds: float):
    from apps.schedules.services import schedules_tick

    return schedules_tick(node="test", now=T0 + timedelta(seconds=seconds))


def runs_of(schedule) -> list[tuple[float, str]]:
    return [((r.slot_at - T0).total_seconds(), r.state) for r in schedule.runs.order_by("slot_at")]


def finish_jobs():
    from sessions.models import Job

    Job.objects.update(state="succeeded")


# ---------------------------------------------------------------- slots


def test_cron_slots_follow_the_time_zone_across_daylight_saving_changes(db):
    from apps.schedules.models import Schedule
    from apps.schedules.services import slot_after, slot_at_or_before

    hourly = Schedule(cron="0 * * * *", timezone="Europe/Amsterdam")
    # The night of 25 October 2026: 03:00 CEST is 02:00 CET, so local 02:00 happens twice.
    moment, slots = datetime(2026, 10, 24, 23, 30, tzinfo=UTC), []
    for _ in range(4):
        moment = slot_after(hourly, moment)
        slots.append(moment)
    assert [s.strftime("%H:%M") for s in slots] == ["00:00", "01:00", "02:00", "03:00"]  # UTC: an hour apart
    daily = Schedule(cron="30 9 * * *", timezone="Europe/Amsterdam")
    before = slot_after(daily, datetime(2026, 10, 23, 12, tzinfo=UTC))
    after = slot_after(daily, before)
    assert (before.hour, after.hour) == (7, 8)  # 09:30 CEST, then 09:30 CET
    assert after - before == timedelta(hours=25)
    # 29 March 2026: 02:30 local does not exist; the slot is the first moment after the gap.
    night = Schedule(cron="30 2 * * *", timezone="Europe/Amsterdam")
    spring = slot_after(night, datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert spring == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert slot_at_or_before(hourly, datetime(2026, 10, 25, 1, 59, tzinfo=UTC)) == datetime(2026, 10, 25, 1, tzinfo=UTC)
    new_york = Schedule(cron="0 9 * * 1-5", timezone="America/New_York")
    assert slot_after(new_york, datetime(2026, 11, 6, 12, tzinfo=UTC)) == datetime(2026, 11, 6, 14, tzinfo=UTC)
    assert slot_after(new_york, datetime(2026, 11, 6, 15, tzinfo=UTC)) == datetime(2026, 11, 9, 14, tzinfo=UTC)


def test_bad_timings_and_inputs_are_refused(lab, alice, settings):
    from pro_portal.errors import ApplicationError, NotFound

    for when, words in [
        ({"cron": "* * *"}, "five fields"),
        ({"cron": "61 * * * *"}, "five fields"),
        ({"cron": "0 0 31 2 *"}, "never matches"),
        ({"cron": "0 0 * * * *"}, "five fields"),
        ({"interval_seconds": 10**9}, "at most"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "Unknown time zone"),
        ({}, "either a cron expression or an interval"),
        ({"cron": "0 * * * *", "interval_seconds": 60}, "either a cron expression or an interval"),
    ]:
        with pytest.raises(ApplicationError, match=words):
            make(alice, when)
    settings.PRO_SCHEDULE_MIN_INTERVAL_SECONDS = 60
    with pytest.raises(ApplicationError, match="at least 60 s"):
        make(alice, {"interval_seconds": 30})
    with pytest.raises(ApplicationError, match="no solve procedure 'reset'"):
        make(alice, {"interval_seconds": 60}, procedure="reset")
    with pytest.raises(ApplicationError, match="not valid"):
        make(alice, {"interval_seconds": 60}, input_values={"cap": "lots"})
    with pytest.raises(NotFound):
        make(alice, {"interval_seconds": 60}, input_case="00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):
        make(alice, {"interval_seconds": 60}, app="nope")


# ---------------------------------------------------------------- firing and policies


def test_an_interval_schedule_runs_its_procedure_once_per_slot(lab, alice):
    from apps.accounts.models import SecurityEvent

    schedule = make(alice, {"interval_seconds": 10}, input_values={"cap": 7.0})
    assert schedule.next_run_at == T0 + timedelta(seconds=10)
    assert SecurityEvent.objects.filter(kind="schedule.create", actor="alice").exists()
    assert tick(9.9) == []
    [run] = tick(10.01)
    assert run.state == "submitted" and run.job.owner == alice and run.job.procedure == "solve"
    assert tick(10.5) == []  # the same slot never fires twice
    finish_jobs()
    [second] = tick(20.2)
    schedule.refresh_from_db()
    assert runs_of(schedule) == [(10.0, "submitted"), (20.0, "submitted")]
    assert schedule.next_run_at == T0 + timedelta(seconds=30)
    assert second.job.input_case.name == "input of solve"


def test_a_slot_that_has_its_run_already_is_passed_over(lab, alice):
    from apps.schedules.models import Schedule

    schedule = make(alice, {"interval_seconds": 10})
    tick(10)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=T0 + timedelta(seconds=10))  # back onto it
    assert tick(10.5) == []
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(seconds=20) and schedule.runs.count() == 1


def test_a_run_left_submitting_by_a_dead_node_is_given_up(lab, alice):
    from apps.schedules.models import ScheduleRun

    schedule = make(alice, {"interval_seconds": 10})
    stuck = ScheduleRun.objects.create(schedule=schedule, slot_at=T0, state="submitting", created_at=T0)
    [skipped] = tick(10)  # still fresh: counts as going
    assert skipped.state == "skipped"
    tick(301)
    stuck.refresh_from_db()
    assert stuck.state == "refused" and "stopped before the job was submitted" in stuck.message


def test_overlap_skip_records_the_slot_as_skipped(lab, alice):
    schedule = make(alice, {"interval_seconds": 10}, overlap="skip")
    tick(10)
    [skipped] = tick(20)  # the job of slot 10 is still queued
    assert skipped.state == "skipped" and skipped.job is None and "still queued" in skipped.message
    finish_jobs()
    tick(30)
    assert runs_of(schedule) == [(10, "submitted"), (20, "skipped"), (30, "submitted")]


def test_overlap_queue_waits_for_the_previous_run_then_submits(lab, alice):
    schedule = make(alice, {"interval_seconds": 10}, overlap="queue")
    tick(10)
    [waiting] = tick(20)
    assert waiting.state == "waiting" and waiting.job is None
    [extra] = tick(30)  # one run waits at most: a further slot is skipped
    assert extra.state == "skipped" and "already waits" in extra.message
    tick(31)
    assert schedule.runs.get(state="waiting").pk == waiting.pk
    finish_jobs()
    tick(32)
    waiting.refresh_from_db()
    assert waiting.state == "submitted" and waiting.job is not None
    assert runs_of(schedule) == [(10, "submitted"), (20, "submitted"), (30, "skipped")]


def test_missed_once_runs_the_latest_missed_slot_after_downtime(lab, alice):
    schedule = make(alice, {"interval_seconds": 60}, missed="once")
    [run] = tick(60 * 10 + 45)  # down from before the first slot until 45 s after the tenth
    assert run.state == "submitted" and (run.slot_at - T0).total_seconds() == 600
    assert "9 earlier slots passed" in run.message and "late" in run.message
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(seconds=660) and schedule.runs.count() == 1


def test_missed_skip_runs_nothing_until_the_next_slot(lab, alice):
    schedule = make(alice, {"interval_seconds": 60}, missed="skip")
    [run] = tick(60 * 10 + 45)
    assert run.state == "missed" and run.job is None and "skipped (missed: skip)" in run.message
    [on_time] = tick(660.2)  # on time again: runs
    assert on_time.state == "submitted"
    assert runs_of(schedule) == [(600, "missed"), (660, "submitted")]


def test_a_refused_run_is_recorded_and_the_schedule_goes_on_until_too_many(lab, alice, carol, settings):
    from apps.catalog.services import grant_access, grant_revoke

    settings.PRO_SCHEDULE_MAX_REFUSALS = 3
    grant = grant_access(user=alice, app=lab.app, level="viewer", username="carol")
    schedule = make(carol, {"interval_seconds": 10})
    assert tick(10)[0].state == "submitted"
    finish_jobs()
    grant_revoke(user=alice, app=lab.app, grant_id=grant.pk)
    [refused] = tick(20)
    assert refused.state == "refused" and "no app 'lab' you have access to" in refused.message
    schedule.refresh_from_db()
    assert not schedule.paused and schedule.next_run_at == T0 + timedelta(seconds=30)
    assert schedule.refusals_in_a_row == 1
    tick(30)
    tick(40)
    schedule.refresh_from_db()
    assert schedule.paused and schedule.next_run_at is None
    assert "Paused after 3 refused runs in a row" in schedule.paused_reason
    assert tick(50) == []
    # Access back, resumed: it runs again and the count starts over.
    grant_access(user=alice, app=lab.app, level="viewer", username="carol")
    from apps.schedules.services import schedule_update

    schedule_update(user=carol, schedule=schedule, changes={"paused": False}, now=T0 + timedelta(seconds=55))
    assert tick(60)[0].state == "submitted"
    schedule.refresh_from_db()
    assert schedule.refusals_in_a_row == 0 and not schedule.paused


def test_pause_resume_and_edit(lab, alice):
    from apps.schedules.services import schedule_update

    schedule = make(alice, {"interval_seconds": 10})
    schedule_update(user=alice, schedule=schedule, changes={"paused": True}, now=T0 + timedelta(seconds=5))
    assert tick(100) == []
    schedule_update(user=alice, schedule=schedule, changes={"paused": False}, now=T0 + timedelta(seconds=100))
    assert schedule.next_run_at == T0 + timedelta(seconds=110)  # the paused slots are not "missed"
    schedule_update(user=alice, schedule=schedule, changes={"cron": "*/5 * * * *", "timezone": "Asia/Tokyo"}, now=T0)
    assert schedule.interval_seconds is None and schedule.next_run_at == T0 + timedelta(minutes=5)


@pytest.mark.django_db(transaction=True)
def test_the_agents_ticker_thread_fires_slots_on_time(lab, alice):
    import threading

    from apps.schedules.services import Spec, schedule_create
    from apps.schedules.ticker import ticker_start

    schedule = schedule_create(user=alice, spec=Spec(app="lab", procedure="solve", interval_seconds=1, overlap="queue"))
    stopping = threading.Event()
    thread = ticker_start(stopping, "here")
    time.sleep(3.4)
    stopping.set()
    thread.join(timeout=5)
    runs = list(schedule.runs.order_by("slot_at"))
    assert [(r.slot_at - schedule.anchor_at).total_seconds() for r in runs] == [1.0, 2.0, 3.0]
    assert [r.state for r in runs] == ["submitted", "waiting", "skipped"]  # the first job is never taken here
    assert all((r.created_at - r.slot_at).total_seconds() < 0.5 for r in runs)  # fired on time


# ---------------------------------------------------------------- API


def test_api_create_list_get_patch_runs_delete_and_privacy(lab, alice, bob, admin_user):
    from apps.accounts.models import SecurityEvent
    from apps.schedules.models import Schedule
    from apps.schedules.services import schedules_tick

    client = api_as(alice)
    body = {"app": "lab", "procedure": "solve", "interval_seconds": 5, "input": {"cap": 3}, "name": "nightly"}
    created = client.post("/api/v1/schedules", body, format="json")
    assert created.status_code == 201, created.content
    schedule = created.json()
    assert schedule["interval_seconds"] == 5 and schedule["input"] == {"cap": 3} and schedule["last_run"] is None
    url = f"/api/v1/schedules/{schedule['id']}"
    assert [s["id"] for s in client.get("/api/v1/schedules").json()] == [schedule["id"]]

    Schedule.objects.filter(pk=schedule["id"]).update(next_run_at=T0)
    schedules_tick(node="test")
    runs = client.get(f"{url}/runs")
    assert runs.status_code == 200 and runs["X-Total-Count"] == "1"
    [run] = runs.json()
    assert run["state"] == "submitted" and run["job_state"] == "queued" and run["job"]
    assert client.get(url).json()["last_run"]["job"] == run["job"]

    paused = client.patch(url, {"paused": True}, format="json").json()
    assert paused["paused"] and paused["next_run_at"] is None
    resumed = client.patch(url, {"paused": False, "cron": "0 6 * * *", "timezone": "Europe/Paris"}, format="json")
    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["cron"] == "0 6 * * *" and resumed.json()["interval_seconds"] is None

    refused = client.post("/api/v1/schedules", {**body, "cron": "bad"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid"
    assert client.post("/api/v1/schedules", {**body, "colour": "red"}, format="json").status_code == 400
    assert client.post("/api/v1/schedules", {**body, "app": "nope"}, format="json").status_code == 404

    # bob sees nothing of alice's: 404 everywhere; an admin sees it all.
    other = api_as(bob)
    assert other.get("/api/v1/schedules").json() == []
    for call in (other.get(url), other.get(f"{url}/runs"), other.patch(url, {"paused": True}, format="json")):
        assert call.status_code == 404 and call.json()["error"]["code"] == "not_found"
    assert other.delete(url).status_code == 404
    assert [s["owner"] for s in api_as(admin_user).get("/api/v1/schedules").json()] == ["alice"]
    assert api_as(None).get("/api/v1/schedules").status_code in (401, 403)

    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert SecurityEvent.objects.filter(kind="schedule.delete", actor="alice", target=f"schedule {schedule['id']}")


# ---------------------------------------------------------------- portal


def test_portal_schedules_page(lab, alice, bob):
    from apps.schedules.models import Schedule

    page = browser(alice)
    assert page.get("/schedules/").status_code == 200
    created = page.post(
        "/schedules/",
        {
            "action": "create",
            "app": "lab",
            "procedure": "solve",
            "timing": "interval",
            "interval_seconds": "30",
            "cron": "",
            "timezone": "UTC",
            "input_case": "",
            "input_values": '{"cap": 2}',
            "overlap": "queue",
            "missed": "skip",
        },
    )
    assert created.status_code == 302, created.content.decode()[:3000]
    schedule = Schedule.objects.get(owner=alice)
    assert (schedule.interval_seconds, schedule.input_values, schedule.overlap) == (30, {"cap": 2}, "queue")
    listed = page.get("/schedules/").content.decode()
    assert "every 30 s" in listed and "solve" in listed and "<script>" not in listed
    bad = page.post(
        "/schedules/", {"action": "create", "app": "lab", "procedure": "solve", "timing": "cron", "cron": "x"}
    )
    assert bad.status_code == 400 and "five fields" in bad.content.decode()
    # bob cannot touch it.
    assert browser(bob).post("/schedules/", {"action": "pause", "id": schedule.pk}).status_code == 404
    page.post("/schedules/", {"action": "pause", "id": schedule.pk})
    schedule.refresh_from_db()
    assert schedule.paused
    page.post("/schedules/", {"action": "resume", "id": schedule.pk})
    schedule.refresh_from_db()
    assert not schedule.paused
    page.post("/schedules/", {"action": "delete", "id": schedule.pk})
    assert not Schedule.objects.exists()


@pytest.mark.live
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_portal_schedules_page_in_a_browser(platform_server, lab, alice, browser_page, monkeypatch):
    from apps.schedules.models import Schedule
    from tests.browser import ARTIFACTS, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # the ORM beside Playwright's loop, in a test only

    page, errors = browser_page
    base = platform_server.url
    log_in(page, base, "alice")
    page.click("nav >> text=Schedules")
    page.wait_for_url(f"{base}/schedules/")
    page.fill("input[name=procedure]", "solve")
    page.check("input[name=timing][value=cron]")
    page.fill("input[name=cron]", "0 6 * * 1-5")
    page.fill("input[name=timezone]", "Europe/Paris")
    page.fill("textarea[name=input_values]", '{"cap": 5}')
    page.select_option("select[name=overlap]", "queue")
    page.click("#new-schedule button[type=submit]")
    page.wait_for_selector("tr[data-schedule]")
    schedule = Schedule.objects.get(owner=alice)
    assert (schedule.cron, schedule.timezone, schedule.input_values) == ("0 6 * * 1-5", "Europe/Paris", {"cap": 5})
    row = f"tr[data-schedule='{schedule.pk}']"
    assert "cron 0 6 * * 1-5 (Europe/Paris)" in page.inner_text(row)
    page.screenshot(path=str(ARTIFACTS / "portal-schedules.png"), full_page=True)
    page.click(f"{row} button[value=pause]")
    page.wait_for_selector(f"{row} button[value=resume]")
    assert Schedule.objects.get(pk=schedule.pk).paused
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"{row} button[value=delete]")
    page.wait_for_selector("text=No schedules yet.")
    assert not Schedule.objects.exists()
    assert errors == []


# ---------------------------------------------------------------- CLI


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_cli_schedule_commands(platform_server, lab, alice, tmp_path):
    from apps.schedules.models import Schedule
    from apps.schedules.services import schedules_tick

    pro = Pro(tmp_path / "config", platform_server.url)
    pro.login("alice")
    env = {"PRO_SCHEDULE_MIN_INTERVAL_SECONDS": "1"}
    out = pro.run(
        "schedule", "create", "lab", "solve", "--every", "3600", "--set", "cap=2.5", "--overlap", "queue"
    ).stdout
    schedule = Schedule.objects.get(owner=alice)
    assert f"Schedule {schedule.pk} created" in out and schedule.input_values == {"cap": 2.5}
    assert schedule.overlap == "queue"
    out = pro.run("schedule", "create", "lab", "solve", "--cron", "0 6 * * 1-5", "--tz", "Europe/Paris", env=env).stdout
    assert "cron 0 6 * * 1-5 (Europe/Paris)" in out
    listed = pro.run("schedule", "list").stdout
    assert "every 3600 s" in listed and "Europe/Paris" in listed
    assert "five fields" in pro.fails("schedule", "create", "lab", "solve", "--cron", "nope")
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=datetime.now(UTC) - timedelta(seconds=1))
    schedules_tick(node="test")
    runs = pro.run("schedule", "runs", str(schedule.pk)).stdout
    assert "submitted" in runs and "queued" in runs
    pro.run("schedule", "pause", str(schedule.pk))
    assert Schedule.objects.get(pk=schedule.pk).paused
    pro.run("schedule", "resume", str(schedule.pk))
    assert not Schedule.objects.get(pk=schedule.pk).paused
    assert json.loads(pro.run("schedule", "list", "--json").stdout)[0]["id"] == schedule.pk
    pro.run("schedule", "delete", str(schedule.pk))
    assert "no schedule" in pro.fails("schedule", "runs", str(schedule.pk))


# ---------------------------------------------------------------- two nodes


@pytest.mark.live
@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="a cluster's nodes share a PostgreSQL admin database; SQLite is the one-machine default",
)
def test_a_one_second_schedule_on_two_nodes_runs_once_per_slot(cluster, lab, alice):
    from apps.schedules.models import Schedule, ScheduleRun
    from apps.schedules.services import Spec, schedule_create
    from sessions.models import Job

    first = cluster.start("n1", roles=())
    second = cluster.start("n2", roles=())
    cluster.wait_up(first, second)
    # Neither node solves: the test ends each job as soon as it is queued, as a fast worker would,
    # so that (overlap: skip) each slot has a job of its own.
    schedule = schedule_create(user=alice, spec=Spec(app="lab", procedure="solve", interval_seconds=1))
    started = time.monotonic()
    while time.monotonic() - started < 6:
        Job.objects.filter(state="queued").update(state="succeeded")
        time.sleep(0.05)
    Schedule.objects.filter(pk=schedule.pk).update(paused=True, next_run_at=None)
    time.sleep(0.5)
    runs = list(ScheduleRun.objects.filter(schedule=schedule).order_by("slot_at"))
    slots = [(run.slot_at - schedule.anchor_at).total_seconds() for run in runs]
    print("runs:", [(s, r.node, r.state) for s, r in zip(slots, runs, strict=True)])
    assert len(runs) >= 4, slots
    assert slots == [float(n) for n in range(1, len(runs) + 1)], slots  # every slot once, none twice, no gap
    submitted = [run for run in runs if run.state == "submitted"]
    assert len({run.job_id for run in submitted}) == len(submitted)
    assert Job.objects.filter(owner=alice).count() == len(submitted)
    assert {run.node for run in runs} <= {"n1", "n2"}


def test_a_schedule_keeps_its_version_or_follows_the_latest(lab, alice, tmp_path, platform_public_key):
    import shutil

    from pro_portal.errors import ApplicationError
    from tests.helpers import LAB, publish_folder

    folder = tmp_path / "lab"
    shutil.copytree(LAB, folder)
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    publish_folder(alice, folder, platform_public_key)
    kept = make(alice, {"interval_seconds": 10}, version="1.0.0")
    follows = make(alice, {"interval_seconds": 10})
    assert (kept.version, follows.version) == ("1.0.0", "latest")
    runs = {run.schedule_id: run.job.app_version.version for run in tick(10.01)}
    assert runs == {kept.pk: "1.0.0", follows.pk: "1.1.0"}
    with pytest.raises(ApplicationError, match="no version"):
        make(alice, {"interval_seconds": 10}, version="9.9.9")
