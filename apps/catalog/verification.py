"""Verification of a published version: a separate process imports the app and checks it.

Users see only verified versions. The run is claimed with a conditional update, so a task the
broker delivers twice verifies once.
"""

from __future__ import annotations

import json
import logging
import shutil

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from sessions import launcher
from sessions.runtime import package

from .environments import environment_build, version_python
from .keys import platform_private_key
from .models import AppVersion, Environment, EnvironmentState, VerificationState
from .services import version_promote

logger = logging.getLogger(__name__)

MAX_PRELOAD = 5000  # modules an environment's warm interpreters import ahead
VERIFY_TIMEOUT = 120  # seconds an app may take to import and declare itself


def _build_environment(version: AppVersion) -> str:
    """Build the version's environment if it has requirements; an error message if that failed."""
    if version.environment is None:
        return ""
    environment = environment_build(version.environment)
    if environment.state == EnvironmentState.READY:
        return ""
    return f"The app's environment ({', '.join(environment.requirements)}) could not be built:\n" + (
        environment.build_log[-8000:].strip() or "no output"
    )


def _remember_preload(version: AppVersion, modules: object) -> None:
    """Add what the app imported from its environment to the environment's preload list."""
    if version.environment is None or not isinstance(modules, list):
        return
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(pk=version.environment_id)
        known = set(environment.preload)
        added = [m for m in modules if isinstance(m, str) and len(m) <= 200 and m not in known]
        if added:
            environment.preload = [*environment.preload, *added][:MAX_PRELOAD]
            environment.save(update_fields=["preload"])


def _run_verification(version: AppVersion) -> tuple[bool, str]:
    """Build the app's environment, import the app in its sandbox (no network), compare it with its manifest."""
    failure = _build_environment(version)
    if failure:
        return False, failure
    interpreter, site_dirs = version_python(version)
    with default_storage.open(version.package_path, "rb") as handle:
        archive = package.decrypt(handle.read(), platform_private_key())
    workdir = launcher.new_workdir(f"verify-{version.pk}")
    try:
        package.extract_archive(archive, workdir / "app")
        spec = launcher.LaunchSpec(
            name=workdir.name,
            interpreter=interpreter,
            site_dirs=site_dirs,
            module="sessions.runtime.verify",
            args=[f"{launcher.work_path(workdir)}/app"],
            workdir=workdir,
            memory_limit_mb=settings.PRO_VERIFY_MEMORY_MB,
            stderr_to_stdout=False,
        )
        completed = launcher.run(spec, timeout=VERIFY_TIMEOUT)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if completed.timed_out:
        return False, f"The app did not finish importing within {VERIFY_TIMEOUT} s."
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        return False, f"The verification run ended with code {completed.returncode}: {completed.stderr.strip()[-2000:]}"
    if report.get("ok"):
        _remember_preload(version, report.get("preload"))
        return True, ""
    return False, report.get("error", "verification failed") + (
        "\n" + report["traceback"] if report.get("traceback") else ""
    )


def version_verify(*, version_id: int) -> str | None:
    """Verify a pending version; return its new state, or None when someone else verifies it."""
    claimed = AppVersion.objects.filter(pk=version_id, verification_state=VerificationState.PENDING).update(
        verification_state=VerificationState.RUNNING
    )
    if not claimed:
        return None
    version = AppVersion.objects.select_related("app", "runtime", "environment__runtime").get(pk=version_id)
    try:
        ok, error = _run_verification(version)
    except Exception as exc:
        logger.exception("Verification of %s failed to run", version)
        ok, error = False, f"The verification could not run: {exc}"
    state = VerificationState.VERIFIED if ok else VerificationState.FAILED
    AppVersion.objects.filter(pk=version_id).update(
        verification_state=state, verification_error=error, verified_at=timezone.now()
    )
    if ok:
        version.refresh_from_db()
        version_promote(version=version)
    logger.info("Verification of %s: %s %s", version, state, error)
    return state
