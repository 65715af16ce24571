"""A solve worker that crashes takes its sandboxes with it, and its restart cleans up after it.

Real processes against the test database: a node's web server and solve worker; the worker is
SIGKILLed alone (not its process group) in the middle of a solve whose app left a child behind.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from django.conf import settings

from apps.accounts.services import ticket_issue_for_user
from sessions.models import Job, JobState
from tests.helpers import sandboxed_sleepers, wait_until
from tests.live import start_node

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def job_folders(node_name: str, job_id: int) -> list:
    """The job's working folders: its sandbox's own, or in its fork server's folder."""
    work = settings.DATA_DIR / "work" / node_name
    return sorted([*work.glob(f"job-{job_id}-*"), *work.glob(f"fork-server-*/jobs/job-{job_id}-*")])


def test_a_crashed_worker_leaves_no_sandbox_and_its_restart_removes_the_folders(tmp_path, storage_folder, alice, lab):
    node = start_node(tmp_path, storage_folder, roles=("web", "solves"))
    node_name = node.env["PRO_NODE_NAME"]
    auth = {"Authorization": f"Bearer {ticket_issue_for_user(user=alice)[0]}"}
    try:
        before = sandboxed_sleepers()
        answer = requests.post(
            f"{node.url}/api/v1/jobs", json={"app": "lab", "procedure": "stubborn"}, headers=auth, timeout=30
        )
        job_id = answer.json()["id"]
        wait_until(
            lambda: len(sandboxed_sleepers() - before) == 1, timeout=30, message="the solve did not start its child"
        )
        children = sandboxed_sleepers() - before
        assert len(job_folders(node_name, job_id)) == 1

        os.kill(node.processes["solves"].pid, signal.SIGKILL)  # the worker alone, not its group
        node.processes["solves"].wait()
        wait_until(lambda: not (sandboxed_sleepers() & children), timeout=10, message="the sandbox outlived its worker")
        assert Job.objects.get(pk=job_id).state == JobState.RUNNING  # nobody has noticed yet
        assert len(job_folders(node_name, job_id)) == 1  # the decrypted package is still on disk

        node.start("solves")
        wait_until(lambda: Job.objects.get(pk=job_id).attempt == 2, timeout=30, message="the job was not requeued")
        wait_until(
            lambda: len(job_folders(node_name, job_id)) == 1, timeout=10, message="the old folder was not removed"
        )
        assert all(folder.name.startswith(f"job-{job_id}-2-") for folder in job_folders(node_name, job_id))
        assert "Removed 1 working folders" in node.log("solves")

        requests.post(f"{node.url}/api/v1/jobs/{job_id}/cancel", headers=auth, timeout=30)
        wait_until(lambda: Job.objects.get(pk=job_id).state == JobState.CANCELLED, timeout=15, message="not cancelled")
        wait_until(lambda: not job_folders(node_name, job_id), timeout=10, message="the folder outlived its job")
    finally:
        node.stop()
    time.sleep(0.2)
    assert not (sandboxed_sleepers() - before)
