"""A hostile app against the sandbox, through the real flows: verification, a solve job, a data session.

``tests/apps/hostile`` tries to read the platform's secrets (secret key, platform key,
database, another user's files, its source and the test process's environment), to write
into the source tree and the data folder, to connect to PostgreSQL, Redis, the web server,
another session and the internet, and to signal the platform's process. Each test publishes
a copy of it with the host's real paths and addresses in ``targets.json`` (the same probes
get every one of them from an unconfined process, so that a "denied" means something), runs
it, and reads back what it saw, attempt by attempt. Other tests: processes left behind, a
150 MB log, a fork bomb, memory hogs in a child process, forked workers sharing their memory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from sessions import data_sessions, jobs
from sessions.launcher import bwrap, cgroups, procfs
from sessions.models import DataSession, JobState, SessionState
from sessions.runtime import package
from tests.helpers import (
    ORIGIN,
    RunningManager,
    RunningWorker,
    api_as,
    communicate,
    publish_as,
    ticket_header,
    wait_state,
)
from tests.hostile import HOSTILE, follow, reachable, submit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRANSPORT = Path(__file__).parents[1] / "examples" / "transport"


# ---------------------------------------------------------------- what the app aims at


UNCONFINED = "import json, sys; from hostile_probes import probe; print(json.dumps(probe(json.loads(sys.argv[1]))))"


def unconfined(targets: dict) -> dict[str, str]:
    """The same probes in an unconfined process of the platform's user, where they must all work.

    Not in the test process itself: closing a file of the SQLite database there would drop
    the locks SQLite holds on it. Nothing is created.
    """
    aimed = json.dumps({key: value for key, value in targets.items() if key != "create"})
    command = [sys.executable, "-c", UNCONFINED, aimed]
    done = subprocess.run(command, cwd=HOSTILE, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


# ---------------------------------------------------------------- reading what the app saw


def report_in(text: str) -> dict:
    """The JSON after ``HOSTILE REPORT`` in a log or an error message."""
    start = text.index("HOSTILE REPORT ") + len("HOSTILE REPORT ")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def assert_all_denied(report: dict, targets: dict, extra: tuple[str, ...] = ()) -> None:
    attempts = report["attempts"]
    print(json.dumps(report, indent=2))  # the evidence, shown by pytest -s or on failure
    expected = (
        [f"read {name}" for name in targets["read"]]
        + [f"list {name}" for name in targets["list"]]
        + [f"create {name}" for name in targets["create"]]
        + [f"connect {name}" for name in targets["connect"]]
        + ["signal the platform", "inherit the environment", *extra]
    )
    assert sorted(attempts) == sorted(expected)
    leaked = {name: outcome for name, outcome in attempts.items() if not outcome.startswith("denied: ")}
    assert not leaked, f"the hostile app got through: {leaked}"
    for path in targets["create"].values():
        assert not Path(path).exists(), f"the hostile app planted {path}"


def assert_confined(facts: dict) -> None:
    """Only its own few processes, user nobody, loopback only, a private /tmp (empty but for the
    mount point of a runtime that lives under /tmp, as in a checkout there)."""
    assert facts["uid"] == "65534"
    assert int(facts["processes"]) <= 5
    assert facts["interfaces"] == "lo"
    runtime_under_tmp = {
        folder.parts[2] for folder in bwrap.runtime_folders(sys.executable) if folder.parts[1:2] == ("tmp",)
    }
    assert sorted(json.loads(facts["tmp"].replace("'", '"'))) == sorted(runtime_under_tmp)
    assert facts["hostname"] == "pro-sandbox"


def test_the_targets_are_real(targets):
    """Unconfined, the very same probes get everything: the denials below are the sandbox's doing."""
    results = unconfined(targets)
    print(json.dumps(results, indent=2))
    assert all(outcome.startswith("SUCCEEDED: ") for outcome in results.values()), results
    assert len(results) >= len(targets["read"]) + len(targets["list"]) + 2


# ---------------------------------------------------------------- 1. at import, in verification


def test_import_reaches_nothing_during_verification(hostile, targets):
    quiet = hostile(targets)  # raises at import if any attempt succeeds
    assert quiet.verification_state == "verified", quiet.verification_error

    told = hostile(targets, version="0.9.0", report_at_import=True)  # raises at import with its report
    assert told.verification_state == "failed"
    report = report_in(told.verification_error)
    assert_all_denied(report, targets)
    assert_confined(report["facts"])


# ---------------------------------------------------------------- 2. in a solve job


def sleepers(namespace: str | None) -> set[int]:
    """Host pids of ``sleep 600`` processes in ``namespace``."""
    found = set()
    for pid in procfs.live_pids() if namespace else ():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if command == b"sleep\x00600\x00" and procfs.pid_namespace(pid) == namespace:
            found.add(pid)
    return found


def alive(pid: int) -> bool:
    fields = procfs._stat_fields(pid)
    return fields is not None and fields[0] != "Z"


@pytest.fixture(params=[True, False], ids=["forked", "sandbox-each"])
def either_worker(request, settings):
    """A solve worker whose jobs are forked from its fork server, or each start a sandbox."""
    settings.PRO_FORK_SERVER = request.param
    with RunningWorker(capacity=2) as running:
        yield running


def test_solve_reaches_nothing_and_leaves_no_process(hostile, targets, alice, either_worker):
    worker = either_worker
    hostile(targets)
    seen: set[int] = set()
    job, namespace = follow(
        submit(alice, procedure="inspect_solve"), worker, watch=lambda ns: seen.update(sleepers(ns))
    )
    assert job.state == JobState.SUCCEEDED, job.error_message

    result = api_as(alice).get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]
    report = json.loads(result["report"])
    assert_all_denied(report, targets, extra=("fetch another user's file through the worker",))
    assert "you have access to" in report["attempts"]["fetch another user's file through the worker"]
    assert_confined(report["facts"])
    log = jobs.job_log(job)[0]
    assert report_in(log) == report and "left two sleep children behind" in log

    # The setsid child and the double-forked grandchild ran on the host, outside the solve's
    # process group, and died with the sandbox.
    assert namespace and namespace != procfs.pid_namespace(os.getpid())
    assert len(seen) == 2, seen
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (procfs.namespace_members(namespace) or any(map(alive, seen))):
        time.sleep(0.05)
    assert procfs.namespace_members(namespace) == [] and not any(map(alive, seen))


# ---------------------------------------------------------------- 3. in a data session


@pytest.fixture
def manager(settings, runtime, platform_server):
    """A session manager whose relay reaches the real web server (the sessions' only way out)."""
    settings.PRO_INTERNAL_API_URL = platform_server.url
    with RunningManager("sandbox-node") as running:
        yield running


def test_session_reaches_nothing_but_its_api(
    hostile, targets, alice, bob, platform_public_key, platform_server, manager
):
    blob, _ = package.pack_folder(TRANSPORT, platform_public_key)
    publish_as(bob, blob)
    victim = wait_state(data_sessions.session_launch(user=bob, app_name="transport"), SessionState.RUNNING)
    victim_folder = manager.running[str(victim.pk)].workdir
    assert reachable(victim.host, victim.port)
    aimed = {
        **targets,
        "read": {**targets["read"], "another session's app": str(victim_folder / "app" / "manifest.json")},
        "list": {**targets["list"], "another session's folder": str(victim_folder)},
        "connect": {
            **targets["connect"],
            "another session": [victim.host, victim.port],
            "web server": ["127.0.0.1", platform_server.port],
        },
    }
    assert all(outcome.startswith("SUCCEEDED: ") for outcome in unconfined(aimed).values())
    hostile(aimed)
    session = wait_state(data_sessions.session_launch(user=alice, app_name="hostile"), SessionState.RUNNING)

    async def script(ws):
        await ws.receive_json_from(timeout=20)
        await ws.send_json_to({"op": "run", "procedure": "inspect", "re": 1})
        frames = []
        while not (frames and frames[-1].get("re") == 1):
            frames.append(await ws.receive_json_from(timeout=60))
        await ws.send_json_to({"op": "list_cases", "re": 2})
        frame = await ws.receive_json_from(timeout=30)
        while frame.get("re") != 2:
            frame = await ws.receive_json_from(timeout=30)
        return frames, frame

    connected, _, (frames, cases) = communicate(f"/ws/sessions/{session.pk}/", [ORIGIN, ticket_header(alice)], script)
    assert connected
    assert frames[-1]["type"] == "ok", frames[-1]
    values = next(frame for frame in frames if frame["type"] == "values")["values"]
    report = json.loads(values["report"])
    assert_all_denied(report, aimed, extra=("read another user's file with the session's ticket",))
    assert_confined(report["facts"])
    # The relay works: the session's own calls to the API go through.
    assert cases == {"type": "cases", "cases": [], "re": 2}
    assert DataSession.objects.get(pk=victim.pk).state == SessionState.RUNNING


# ---------------------------------------------------------------- 4. to 6. limits


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024


def test_a_150_mb_log_is_capped_and_does_not_grow_the_worker(hostile, targets, alice, worker, storage_folder):
    hostile(targets)
    before = rss_mb()
    peak = [before]
    job, _ = follow(submit(alice, procedure="flood"), worker, timeout=120, watch=lambda _: peak.append(rss_mb()))
    assert job.state in (JobState.SUCCEEDED, JobState.FAILED)
    stored = (storage_folder / job.log_path).stat().st_size
    print(f"flood ended {job.state}; stored log {stored} bytes; worker RSS {before:.0f} MB -> peak {max(peak):.0f} MB")
    assert stored <= settings.PRO_JOB_LOG_MAX_BYTES + 256 * 1024
    assert max(peak) - before < 100
    head = jobs.job_log(job)[0][:200]
    assert head.startswith(f"--- attempt 1 of job {job.pk}")  # the head of the log is kept


@pytest.mark.skipif(
    not cgroups.limits_available(),
    reason="no cgroup pids limit on this machine: without it a fork bomb could take down the machine running the tests",
)
def test_a_fork_bomb_is_stopped_as_a_whole(hostile, targets, alice, worker):
    hostile(targets)
    started = time.monotonic()
    job = submit(alice, procedure="fork_bomb", time_limit=60)
    job, namespace = follow(job, worker, timeout=45)
    print(f"fork bomb ended {job.state} after {time.monotonic() - started:.1f} s: {job.error_message}")
    assert job.state == JobState.FAILED
    assert f"more than {settings.PRO_SANDBOX_MAX_PROCESSES} processes" in job.error_message
    assert time.monotonic() - started < 30
    assert namespace and procfs.namespace_members(namespace) == []


def test_memory_of_a_child_counts(hostile, targets, alice, worker):
    hostile(targets)
    job = submit(alice, procedure="hog", input={"step_mb": 5}, memory_limit_mb=200, time_limit=60)
    job, namespace = follow(job, worker)
    print(f"memory hog (5 MB at a time) ended {job.state}: {job.error_message}")
    assert job.state == JobState.FAILED and "memory limit of 200 MB" in job.error_message
    assert namespace and procfs.namespace_members(namespace) == []


def test_a_child_killed_for_memory_by_the_kernel_fails_the_job_for_memory(hostile, targets, alice, worker):
    """600 MB at once: the cgroup's ceiling kills the child before the supervisor's next look."""
    hostile(targets)
    job = submit(alice, procedure="hog", input={"step_mb": 600}, memory_limit_mb=200, time_limit=60)
    job, namespace = follow(job, worker)
    print(f"memory hog (600 MB at once) ended {job.state}: {job.error_message}")
    assert job.state == JobState.FAILED
    assert namespace and procfs.namespace_members(namespace) == []
    assert "memory" in job.error_message


def test_forked_workers_are_charged_the_memory_they_share_once(hostile, targets, alice, worker):
    """Four forks of a 150 MB process use 150 MB, not five times as much (the limit is 500 MB)."""
    hostile(targets)
    job, _ = follow(submit(alice, procedure="forked_workers", memory_limit_mb=500), worker)
    print(f"forked workers ended {job.state}: {job.error_message}")
    assert job.state == JobState.SUCCEEDED, job.error_message
