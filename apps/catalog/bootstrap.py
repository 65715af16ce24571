"""First start: what a fresh platform needs before anyone logs in. Safe to run on every start."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.accounts.models import EVERYONE_GROUP
from apps.accounts.services import admin_ensure, group_everyone, group_publishers
from pro_portal.env import env_str
from pro_portal.errors import ApplicationError
from sessions.runtime import package
from sessions.runtime.manifest import Manifest, read_author_manifest

from .environments import environment_build, environment_folder, environment_for
from .keys import platform_private_key
from .models import AccessLevel, App, EnvironmentState
from .runtimes import runtime_ensure_builtin, runtime_resolve
from .services import app_publish, grant_access

ADMIN_USERNAME = "admin"  # the first admin, as accounts.services.admin_ensure creates it


def _admin(report: list[str]) -> object:
    given = env_str("PRO_ADMIN_PASSWORD") or None
    existed = get_user_model().objects.filter(username=ADMIN_USERNAME).exists()
    admin, generated = admin_ensure(password=given)
    if generated:
        path = settings.DATA_DIR / "admin-password.txt"
        path.touch(mode=0o600)
        path.write_text(generated + "\n")
        report.append(f"Created the first admin: user '{admin.username}', password {generated} (also in {path})")
    elif not existed:
        report.append(f"Created the first admin: user '{admin.username}', with the password from PRO_ADMIN_PASSWORD")
    return admin


@contextmanager
def _tasks_inline() -> Iterator[None]:
    """Run the tasks queued meanwhile here and now (django-q2's ``sync``) instead of by the task workers.

    Publishing queues the new version's verification: run inline, the sample apps are verified
    once, before the platform starts and usable at once, and the task workers find nothing of
    theirs to do again. The queue's own account of running a task inline (its worker and monitor
    starting and stopping) is left out; the verification logs its result itself.
    """
    from django_q.conf import Conf

    queue_log = logging.getLogger("django-q")
    was_sync, was_level = Conf.SYNC, queue_log.level
    Conf.SYNC = True
    queue_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        Conf.SYNC = was_sync
        queue_log.setLevel(was_level)


def _publish_samples(admin, samples_dir: Path, report: list[str]) -> None:
    public_key = platform_private_key().public_key()
    for folder in sorted(p for p in samples_dir.iterdir() if (p / "manifest.toml").is_file()):
        name = read_author_manifest(folder)["name"]
        if App.objects.filter(name=name).exists():
            continue
        try:
            blob, manifest = sample_pack(folder, public_key)
        except ApplicationError as exc:
            report.append(f"Skipped sample app {name}: {exc}")
            continue
        with _tasks_inline():
            version = app_publish(user=admin, blob=blob)
        grant_access(user=admin, app=version.app, level=AccessLevel.VIEWER, group_name=EVERYONE_GROUP)
        version.refresh_from_db()
        report.append(f"Published sample app {manifest.name} {manifest.version} ({version.verification_state})")
    _seed_instances(samples_dir / "instances", report)


def sample_pack(folder: Path, public_key) -> tuple[bytes, Manifest]:
    """Pack a sample; one with requirements is imported with its environment (built first) on sys.path.

    Packing imports the app to record its interface, as ``pro app pack`` does on a modeler's
    machine that has the packages; the samples are the platform's own code.
    """
    author = read_author_manifest(folder)
    requirements = author.get("requirements") or []
    if not requirements:
        return package.pack_folder(folder, public_key)
    environment = environment_build(environment_for(runtime_resolve(author["runtime"]), requirements))
    if environment.state != EnvironmentState.READY:
        tail = environment.build_log.strip().splitlines()[-1:] or ["no output"]
        raise ApplicationError(f"its requirements could not be installed ({tail[0]})")
    site = str(environment_folder(environment))
    sys.path.insert(0, site)
    try:
        return package.pack_folder(folder, public_key)
    finally:
        sys.path.remove(site)


def _seed_instances(instances: Path, report: list[str]) -> None:
    """Put the public MPS instances in mps-solver's shared folder, so it has models to solve."""
    if not instances.is_dir():
        return
    for model in sorted(instances.glob("*.mps")):
        target = f"apps/mps-solver/data/{model.name}"
        if not default_storage.exists(target):
            default_storage.save(target, ContentFile(model.read_bytes()))
            report.append(f"Stored {target}")


def _schedule_housekeeping() -> None:
    """Housekeeping runs on the task queue; the schedule rows are shared by every node."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="Remove expired jobs",
        defaults={"func": "sessions.tasks.remove_expired_jobs", "schedule_type": Schedule.HOURLY, "repeats": -1},
    )
    # A delivery whose queued attempt was lost with its process (killed right after the commit) is sent from here.
    Schedule.objects.update_or_create(
        name="Send due webhook deliveries",
        defaults={
            "func": "apps.webhooks.tasks.deliver_due",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    Schedule.objects.update_or_create(
        name="Remove expired security events",
        defaults={
            "func": "apps.accounts.tasks.remove_expired_security_events",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
    )


def bootstrap(*, samples_dir: Path | None) -> list[str]:
    report: list[str] = []
    runtime_ensure_builtin()
    _schedule_housekeeping()
    group_everyone()
    group_publishers()
    platform_private_key()
    admin = _admin(report)
    if samples_dir is not None and samples_dir.is_dir():
        _publish_samples(admin, samples_dir, report)
    return report
