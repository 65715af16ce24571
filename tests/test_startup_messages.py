"""What a start says: the admin it created, one verification of each sample app, and no warning a
user cannot act on (a single node electing itself master is information, a lost lease a warning)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # publishing verifies on commit


def test_the_admin_created_with_the_given_password_is_named(monkeypatch):
    from django.contrib.auth import get_user_model

    from apps.catalog.bootstrap import bootstrap

    monkeypatch.setenv("PRO_ADMIN_PASSWORD", "Given-Secret-pw-1")
    assert bootstrap(samples_dir=None) == [
        "Created the first admin: user 'admin', with the password from PRO_ADMIN_PASSWORD"
    ]
    assert get_user_model().objects.get(username="admin").check_password("Given-Secret-pw-1")
    assert bootstrap(samples_dir=None) == []  # the next starts: nothing to say


def test_a_sample_app_is_verified_once(make_app_folder):
    from django_q.models import OrmQ, Task

    from apps.catalog.bootstrap import bootstrap
    from apps.catalog.models import AppVersion

    samples = make_app_folder(name="sample").parent
    report = bootstrap(samples_dir=samples)
    assert "Published sample app sample 1.0.0 (verified)" in report, report
    version = AppVersion.objects.get(app__name="sample")
    assert version.verification_state == "verified"
    # Verified as the bootstrap ran, through the task that publishing queues: none is left queued
    # for the task workers to run again when the platform starts.
    assert Task.objects.filter(func="apps.catalog.tasks.verify_version").count() == 1
    assert not OrmQ.objects.exists()

    again = bootstrap(samples_dir=samples)
    assert not [line for line in again if "sample" in line], again
    assert AppVersion.objects.get(pk=version.pk).verified_at == version.verified_at
    assert Task.objects.filter(func="apps.catalog.tasks.verify_version").count() == 1
    assert not OrmQ.objects.exists()


def test_electing_itself_is_information_and_losing_the_lease_a_warning(caplog):
    from django.utils import timezone

    from apps.cluster.election import Candidate
    from apps.cluster.models import MasterLease

    caplog.set_level(logging.INFO, logger="apps.cluster.election")
    solo = Candidate(node="solo")
    assert solo.campaign()
    [elected] = [r for r in caplog.records if "is master now" in r.getMessage()]
    assert (elected.levelname, elected.getMessage()) == ("INFO", "Node solo is master now (term 1)")

    caplog.clear()
    MasterLease.objects.update(holder="other", expires_at=timezone.now() + timedelta(minutes=5))
    solo.valid_until = 0  # its own clock says the lease it held may have run out
    assert not solo.campaign()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Node solo is no longer master (term 1)")
    ]


@pytest.mark.live
def test_the_web_server_starts_without_noise(platform_server):
    """Started as run_platform starts it: no line about a protocol the application does not need, no warning."""
    wait_until(lambda: "Started server process" in platform_server.log(), timeout=10)
    log = platform_server.log()
    assert "lifespan" not in log.lower(), log
    assert "WARNING" not in log, log
