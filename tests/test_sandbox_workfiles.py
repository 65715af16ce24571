"""What a sandbox leaves in its working folder never makes the host read or write elsewhere.

A link named ``result.case`` that points at the platform's secret key, a FIFO named
``outcome.json``, a link planted where the worker copies a storage file: each is refused, the
secret is never read into a result, the host file is never written.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from sessions.launcher import workfiles
from sessions.models import JobState
from tests.hostile import follow, submit

pytestmark = pytest.mark.slow


def test_a_link_is_not_followed_when_reading(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("the platform's secret")
    work = tmp_path / "work"
    work.mkdir()
    (work / "result.case").symlink_to(secret)
    (work / "inner").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(workfiles.UnsafeFile):
        workfiles.read_bytes(work, "result.case", 1024)
    with pytest.raises(workfiles.UnsafeFile):
        workfiles.read_bytes(work, "inner/secret", 1024)
    assert workfiles.read_bytes(work, "missing", 1024) is None


def test_a_fifo_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "outcome.json")
    done = threading.Event()

    def read() -> None:
        with pytest.raises(workfiles.UnsafeFile):
            workfiles.read_bytes(tmp_path, "outcome.json", 1024)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO hung"


def test_sizes_and_paths_are_checked(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 2048)
    with pytest.raises(workfiles.UnsafeFile):
        workfiles.read_bytes(tmp_path, "big", 1024)
    for bad in ("../escape", "/etc/passwd", ""):
        with pytest.raises(workfiles.UnsafeFile):
            workfiles.read_bytes(tmp_path, bad, 1024)


def test_writing_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    work = tmp_path / "work"
    (work / "files" / "users").mkdir(parents=True)
    (work / "files" / "users" / "data.csv").symlink_to(victim)
    (work / "files" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    for path in ("files/users/data.csv", "files/elsewhere/victim"):
        with pytest.raises(workfiles.UnsafeFile):
            workfiles.write_from(work, path, io.BytesIO(b"overwritten"))
    assert victim.read_text() == "untouched"
    workfiles.write_from(work, "files/new/deep/data.csv", io.BytesIO(b"fresh"))
    assert (work / "files" / "new" / "deep" / "data.csv").read_bytes() == b"fresh"


@pytest.fixture
def link_targets(targets, storage_folder, tmp_path):
    own = storage_folder / "users" / "alice" / "input.csv"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text("alice's input\n")
    victim = tmp_path / "host-victim.txt"
    victim.write_text("the host's file\n")
    return {**targets, "own_storage_path": "users/alice/input.csv", "host_victim": str(victim)}


@pytest.mark.django_db(transaction=True)
def test_a_result_swapped_for_a_link_fails_the_job_and_reads_nothing(hostile, link_targets, alice, worker):
    hostile(link_targets)
    job, _ = follow(submit(alice, procedure="swap_result"), worker)
    from sessions import jobs

    assert job.state == JobState.FAILED, jobs.job_log(job)[0]
    assert "result cannot be used" in job.error_message and "a link, not a regular file" in job.error_message
    assert job.result_case is None


@pytest.mark.django_db(transaction=True)
def test_a_link_planted_for_a_fetched_file_is_not_written_through(hostile, link_targets, alice, worker):
    hostile(link_targets)
    job, _ = follow(submit(alice, procedure="plant_link"), worker)
    assert job.state == JobState.SUCCEEDED, job.error_message
    from tests.helpers import api_as

    report = api_as(alice).get(f"/api/v1/jobs/{job.pk}/result?format=json").json()["identifiers"]["report"]
    assert report.startswith("denied") and "is a link, not a regular file" in report
    assert Path(link_targets["host_victim"]).read_text() == "the host's file\n"
