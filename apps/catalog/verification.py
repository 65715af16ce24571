"""Verification of a published version: a separate process imports the app and checks it.

Users see only verified versions. The run is claimed with a conditional update, so a task the
broker delivers twice verifies once.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from sessions.runtime import package

from .keys import platform_private_key
from .models import AppVersion, VerificationState

logger = logging.getLogger(__name__)

VERIFY_TIMEOUT = 120  # seconds an app may take to import and declare itself


def version_verify_later(version: AppVersion) -> None:
    """Queue the verification of a new version once its row is committed."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("apps.catalog.tasks.verify_version", version.pk, task_name=f"verify {version}")
    )


def _run_verification(version: AppVersion) -> tuple[bool, str]:
    with default_storage.open(version.package_path, "rb") as handle:
        archive = package.decrypt(handle.read(), platform_private_key())
    with tempfile.TemporaryDirectory(prefix="verify-", dir=settings.DATA_DIR) as folder:
        app_dir = Path(folder) / "app"
        package.extract_archive(archive, app_dir)
        try:
            completed = subprocess.run(
                [version.runtime.interpreter, "-m", "sessions.runtime.verify", str(app_dir)],
                capture_output=True,
                text=True,
                cwd=folder,
                timeout=VERIFY_TIMEOUT,
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(settings.BASE_DIR), "HOME": folder, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return False, f"The app did not finish importing within {VERIFY_TIMEOUT} s."
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        return False, f"The verification run ended with code {completed.returncode}: {completed.stderr.strip()[-2000:]}"
    if report.get("ok"):
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
    version = AppVersion.objects.select_related("app", "runtime").get(pk=version_id)
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
        from .services import version_promote

        version.refresh_from_db()
        version_promote(version=version)
    logger.info("Verification of %s: %s %s", version, state, error)
    return state
