"""Verification on publish: a separate process imports the app and checks it against its manifest."""

import io
import json
import zipfile

import pytest

from apps.catalog.models import AppVersion
from apps.catalog.verification import version_verify
from sessions.runtime import package
from tests.helpers import publish_as

pytestmark = pytest.mark.django_db


def repack(blob: bytes, private_key, change) -> bytes:
    """Decrypt a package, let ``change`` edit its files, encrypt it again (as a sloppy tool might)."""
    archive = package.decrypt(blob, private_key)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    change(files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return package.encrypt(buffer.getvalue(), private_key.public_key())


@pytest.fixture
def private_key(db):
    from apps.catalog.keys import platform_private_key

    return platform_private_key()


def test_good_package_is_verified(alice, runtime, pack):
    version = publish_as(alice, pack())
    assert version.verification_state == "verified" and version.verification_error == ""


def test_app_that_raises_on_import_fails_verbatim(alice, runtime, pack, private_key):
    def break_code(files):
        files["demo_model.py"] += b"\nraise RuntimeError('the data file is missing')\n"

    version = publish_as(alice, repack(pack(), private_key, break_code))
    assert version.verification_state == "failed"
    assert "RuntimeError: the data file is missing" in version.verification_error


def test_manifest_that_lies_about_the_interface_fails(alice, runtime, pack, private_key):
    def lie(files):
        manifest = json.loads(files["manifest.json"])
        manifest["interface"]["identifiers"].append({"name": "ghost", "kind": "parameter", "title": "ghost"})
        files["manifest.json"] = json.dumps(manifest).encode()

    version = publish_as(alice, repack(pack(), private_key, lie))
    assert version.verification_state == "failed"
    assert "'ghost'" in version.verification_error


def test_failed_version_is_invisible_to_users_and_keeps_latest(api, alice, carol, runtime, pack, private_key):
    good = publish_as(alice, pack())
    good.app.grants.create(user=carol, level="viewer")

    def break_code(files):
        files["demo_model.py"] = b"import no_such_module\n"

    bad = publish_as(alice, repack(pack(version="2.0.0"), private_key, break_code))
    assert bad.verification_state == "failed" and "No module named 'no_such_module'" in bad.verification_error
    seen = api(carol).get("/api/v1/apps/demo").json()
    assert seen["latest_version"] == "1.0.0" and [v["version"] for v in seen["versions"]] == ["1.0.0"]
    manager_view = {v["version"]: v for v in api(alice).get("/api/v1/apps/demo/versions").json()}
    assert manager_view["2.0.0"]["verification_state"] == "failed"
    assert "no_such_module" in manager_view["2.0.0"]["verification_error"]


def test_verification_runs_once(alice, runtime, pack):
    version = publish_as(alice, pack(), verify=False)
    assert version_verify(version_id=version.pk) == "verified"
    assert version_verify(version_id=version.pk) is None, "a second delivery of the task changes nothing"
    assert AppVersion.objects.get(pk=version.pk).verification_state == "verified"


def test_publish_queues_the_verification_task(alice, runtime, pack, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    with django_capture_on_commit_callbacks(execute=True):
        publish_as(alice, pack(), verify=False)
    queued = [task for task in OrmQ.objects.all() if task.func() == "apps.catalog.tasks.verify_version"]
    assert len(queued) == 1
