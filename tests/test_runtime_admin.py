"""Runtimes and environments in the Django admin (through the services), and on the portal's version page.

The admin: the lists and read-only pages render; a runtime is added by uploading its signed file
(an untrusted or tampered one is refused on the form, nothing stored); deprecation is an action;
deletion goes through ``runtime_delete`` (refused with its message while app versions use the
runtime). The version page: the runtime (and what the manifest asked), the requirements, the
environment's state and packages, and its build log for those who manage the app only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.catalog.models import AccessLevel, AppGrant, AppVersion, Environment, EnvironmentState, Runtime
from apps.catalog.runtimes import runtime_add
from sessions.runtime import runtime_file
from tests.helpers import browser, messages_of, publish_as

pytestmark = pytest.mark.django_db

RUNTIMES = "/admin/catalog/runtime/"
ENVIRONMENTS = "/admin/catalog/environment/"


@pytest.fixture
def signing_key():
    return runtime_file.generate_signing_key()


@pytest.fixture
def trusted(settings, signing_key):
    settings.PRO_RUNTIME_TRUSTED_KEYS = [runtime_file.public_key_text(signing_key.public_key())]
    return signing_key


def runtime_blob(key, tmp_path: Path, name: str = "tiny-rt", version: str = "1.0") -> bytes:
    site = tmp_path / f"site-{name}-{version}"
    (site / "tinyrt").mkdir(parents=True, exist_ok=True)
    (site / "tinyrt" / "__init__.py").write_text("VERSION = '1.0'\n")
    return runtime_file.build(
        name=name,
        version=version,
        python="{}.{}".format(*sys.version_info[:2]),
        lock="tinyrt==1.0\n",
        packages={"tinyrt": "1.0"},
        payload=runtime_file.pack_folder(site),
        key=key,
    )


@pytest.fixture
def signed_runtime(trusted, admin_user, tmp_path, runtime):
    """tiny-rt@1.0, added through the service, with the built-in runtime beside it."""
    blob = runtime_blob(trusted, tmp_path)
    return runtime_add(user=admin_user, stream=ContentFile(blob))


def upload(client, blob: bytes, name: str = "tiny-rt.proruntime"):
    return client.post(f"{RUNTIMES}add/", {"file": SimpleUploadedFile(name, blob)}, follow=True)


def action(client, name: str, *objects, **extra):
    body = {"action": name, "_selected_action": [o.pk for o in objects], **extra}
    return client.post(RUNTIMES, body, follow=True)


# ---------------------------------------------------------------- the admin


def test_the_admin_lists_and_shows_runtimes_and_environments(admin_user, alice, runtime, pack):
    version = publish_as(alice, pack(name="needy", requirements=["tinypkg==1.0"]), verify=False)
    environment = version.environment
    Environment.objects.filter(pk=environment.pk).update(
        state=EnvironmentState.FAILED, build_log="ERROR: No matching distribution found for tinypkg==1.0"
    )
    client = browser(admin_user)

    listed = client.get(RUNTIMES)
    assert listed.status_code == 200
    row = listed.context["cl"].result_list.get(pk=runtime.pk)
    assert row.app_version_count == 1 and row.environment_count == 1
    assert b"py311-highs@1.0" in listed.content
    assert client.get(f"{RUNTIMES}?q=highs&deprecated=no").status_code == 200

    shown = client.get(f"{RUNTIMES}{runtime.pk}/change/")
    assert shown.status_code == 200
    text = shown.content.decode()
    assert reverse("admin:catalog_appversion_change", args=[version.pk]) in text  # who uses it
    assert reverse("admin:catalog_environment_change", args=[environment.pk]) in text
    assert 'name="key"' not in text  # read-only: nothing to edit by hand
    assert reverse("admin:catalog_runtime_delete", args=[runtime.pk]) not in text  # the built-in stays

    environments = client.get(ENVIRONMENTS)
    assert environments.status_code == 200
    assert environment.key[:12] in environments.content.decode() and "needy 1.0.0" in environments.content.decode()
    assert client.get(f"{ENVIRONMENTS}?q=tinypkg&state=failed&used=yes").context["cl"].result_count == 1
    detail = client.get(f"{ENVIRONMENTS}{environment.pk}/change/")
    assert detail.status_code == 200
    assert "No matching distribution found for tinypkg==1.0" in detail.content.decode()
    assert client.get(f"{ENVIRONMENTS}add/").status_code == 403


def test_a_runtime_is_added_by_uploading_its_signed_file(trusted, admin_user, runtime, tmp_path):
    client = browser(admin_user)
    form = client.get(f"{RUNTIMES}add/")
    assert (
        form.status_code == 200 and b'type="file"' in form.content and b'enctype="multipart/form-data"' in form.content
    )

    added = upload(client, runtime_blob(trusted, tmp_path))
    assert added.status_code == 200, added.content
    stored = Runtime.objects.get(key="tiny-rt@1.0")
    assert stored.signer == runtime_file.signer_id(trusted.public_key()) and stored.packages == {"tinyrt": "1.0"}
    assert default_storage.exists(stored.file_path) and stored.file_size > 0
    assert any("tiny-rt@1.0" in m for m in messages_of(added))
    assert added.redirect_chain[-1][0] == RUNTIMES

    again = upload(client, runtime_blob(trusted, tmp_path))  # the same key: a conflict, on the form
    assert again.status_code == 200
    assert "Runtime tiny-rt@1.0 exists" in again.context["adminform"].form.non_field_errors()[0]
    assert Runtime.objects.filter(name="tiny-rt").count() == 1


def test_an_untrusted_or_tampered_runtime_is_refused_on_the_form(settings, trusted, admin_user, runtime, tmp_path):
    client = browser(admin_user)
    stranger = runtime_file.generate_signing_key()
    untrusted = upload(client, runtime_blob(stranger, tmp_path, version="2.0"))
    assert untrusted.status_code == 200
    errors = untrusted.context["adminform"].form.non_field_errors()
    assert "which this platform does not trust" in errors[0] and "PRO_RUNTIME_TRUSTED_KEYS" in errors[0]
    assert "does not trust" in untrusted.content.decode()

    tampered = bytearray(runtime_blob(trusted, tmp_path, version="3.0"))
    tampered[-10] ^= 1
    refused = upload(client, bytes(tampered))
    assert refused.status_code == 200
    assert "do not match the signature" in refused.context["adminform"].form.non_field_errors()[0]

    garbage = upload(client, b"not a runtime at all")
    assert garbage.status_code == 200 and "not a runtime file" in garbage.content.decode()

    settings.PRO_RUNTIME_TRUSTED_KEYS = []  # nothing trusted: every file is refused
    refused = upload(client, runtime_blob(trusted, tmp_path, version="4.0"))
    assert "does not trust" in refused.context["adminform"].form.non_field_errors()[0]

    assert list(Runtime.objects.values_list("key", flat=True)) == ["py311-highs@1.0"]
    assert not default_storage.exists("runtimes") or not default_storage.listdir("runtimes")[1]


def test_runtimes_are_deprecated_and_undeprecated_by_actions(admin_user, signed_runtime):
    client = browser(admin_user)
    done = action(client, "deprecate", signed_runtime)
    assert done.status_code == 200
    signed_runtime.refresh_from_db()
    assert signed_runtime.is_deprecated
    assert any("tiny-rt@1.0: deprecated" in m for m in messages_of(done))
    assert client.get(f"{RUNTIMES}?deprecated=yes").context["cl"].result_count == 1

    action(client, "undeprecate", signed_runtime)
    signed_runtime.refresh_from_db()
    assert not signed_runtime.is_deprecated


def test_a_runtime_in_use_is_not_deleted_and_an_unused_one_is(admin_user, alice, signed_runtime, pack):
    version = publish_as(alice, pack(name="on-tiny", runtime="tiny-rt@1", requirements=["tinypkg==1.0"]), verify=False)
    assert version.runtime == signed_runtime and version.environment.runtime == signed_runtime
    environment = version.environment
    client = browser(admin_user)
    delete_url = reverse("admin:catalog_runtime_delete", args=[signed_runtime.pk])

    confirmation = client.get(delete_url)  # before confirming: who keeps it
    assert confirmation.status_code == 200
    assert "on-tiny 1.0.0" in confirmation.content.decode() and confirmation.context["protected"]

    refused = client.post(delete_url, {"post": "yes"}, follow=True)  # confirmed anyway: the service says no
    assert refused.status_code == 200
    assert any("is used by on-tiny 1.0.0" in m for m in messages_of(refused))
    assert Runtime.objects.filter(pk=signed_runtime.pk).exists()

    bulk = action(client, "delete_selected", signed_runtime, post="yes")
    assert any("is used by on-tiny 1.0.0" in m for m in messages_of(bulk))
    assert not any(m.startswith("Deleted") for m in messages_of(bulk))
    assert Runtime.objects.filter(pk=signed_runtime.pk).exists()

    builtin = Runtime.objects.get(is_builtin=True)
    assert client.get(reverse("admin:catalog_runtime_delete", args=[builtin.pk])).status_code == 403
    bulk = action(client, "delete_selected", builtin, post="yes")
    assert any("built-in runtime cannot be deleted" in m for m in messages_of(bulk))

    AppVersion.objects.filter(pk=version.pk).delete()  # nothing uses it now: deleted, with its environment
    assert not client.get(delete_url).context["protected"]
    deleted = client.post(delete_url, {"post": "yes"}, follow=True)
    assert deleted.status_code == 200 and deleted.redirect_chain[-1][0] == RUNTIMES
    assert not Runtime.objects.filter(pk=signed_runtime.pk).exists()
    assert not Environment.objects.filter(pk=environment.pk).exists()
    assert not default_storage.exists(signed_runtime.file_path)


def test_an_environment_is_deleted_only_when_no_app_version_uses_it(
    admin_user, alice, runtime, pack, django_capture_on_commit_callbacks
):
    version = publish_as(alice, pack(name="needy", requirements=["tinypkg==1.0"]), verify=False)
    environment = version.environment
    archive = default_storage.save(f"environments/{environment.key}.tar.gz", ContentFile(b"archive"))
    Environment.objects.filter(pk=environment.pk).update(archive_path=archive, state=EnvironmentState.READY)
    client = browser(admin_user)
    delete_url = reverse("admin:catalog_environment_delete", args=[environment.pk])

    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk = client.post(ENVIRONMENTS, {"action": "delete_selected", "_selected_action": [environment.pk], "post": "yes"})
    assert bulk.status_code == 200 and bulk.context["protected"]  # the admin's own "cannot delete" page
    assert Environment.objects.filter(pk=environment.pk).exists()

    AppVersion.objects.filter(pk=version.pk).delete()
    with django_capture_on_commit_callbacks(execute=True):  # the archive goes once the deletion is committed
        deleted = client.post(delete_url, {"post": "yes"}, follow=True)
    assert deleted.status_code == 200 and deleted.redirect_chain[-1][0] == ENVIRONMENTS
    assert not Environment.objects.filter(pk=environment.pk).exists()
    assert not default_storage.exists(archive)


# ---------------------------------------------------------------- the version page


def page_of(client, version: AppVersion) -> str:
    response = client.get(reverse("portal:version", args=[version.app.name, version.version]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_version_without_requirements_shows_just_its_runtime(alice, runtime, pack):
    version = publish_as(alice, pack(name="plain"), verify=False)
    assert version.environment is None
    page = page_of(browser(alice), version)
    assert "<code>py311-highs@1.0</code>" in page and "(asked: <code>py311-highs</code>)" in page
    assert "Requirements" not in page and "Installed packages" not in page and "Build log" not in page
    assert "style=" not in page and "<script>" not in page  # the CSP: no inline styles or scripts

    AppVersion.objects.filter(pk=version.pk).update(runtime_requested="py311-highs@1.0")
    version.refresh_from_db()
    assert "asked:" not in page_of(browser(alice), version)  # asked exactly what it got


def test_a_ready_environment_shows_its_packages_and_its_log_to_managers_only(alice, carol, admin_user, runtime, pack):
    version = publish_as(alice, pack(name="needy", requirements=["tinypkg==1.0"]), verify=False)
    Environment.objects.filter(pk=version.environment_id).update(
        state=EnvironmentState.READY,
        packages={"tinypkg": "1.0"},
        installed_size=2048,
        build_log="Successfully installed tinypkg-1.0",
    )
    AppVersion.objects.filter(pk=version.pk).update(verification_state="verified")
    AppGrant.objects.create(app=version.app, user=carol, level=AccessLevel.VIEWER, granted_by=alice)
    version.refresh_from_db()

    for manager in (alice, admin_user):
        page = page_of(browser(manager), version)
        assert "<code>tinypkg==1.0</code>" in page and 'class="badge env-ready"' in page
        assert "<td><code>tinypkg</code></td><td>1.0</td>" in page and "2.0\xa0KB installed" in page
        assert '<details class="build-log">' in page and "Successfully installed tinypkg-1.0" in page

    seen_by_viewer = page_of(browser(carol), version)
    assert "<td><code>tinypkg</code></td><td>1.0</td>" in seen_by_viewer
    assert "Build log" not in seen_by_viewer and "Successfully installed" not in seen_by_viewer


@pytest.mark.slow
def test_a_failed_build_shows_on_the_version_page_with_its_log(settings, tmp_path, alice, admin_user, runtime, pack):
    settings.PRO_PACKAGE_INDEX_URL = ""  # the wheelhouse only, and it is empty: the build fails
    settings.PRO_ENV_CACHE_DIR = tmp_path / "env-cache"
    version = publish_as(alice, pack(name="needy", requirements=["tinypkg==1.0"]))  # verified: built in bubblewrap
    assert version.verification_state == "failed"
    assert version.environment.state == EnvironmentState.FAILED

    page = page_of(browser(alice), version)
    assert "<code>tinypkg==1.0</code>" in page and 'class="badge env-failed"' in page
    assert "could not be installed" in page and "Installed packages" not in page
    assert '<details class="build-log" open>' in page
    assert "No matching distribution found for tinypkg==1.0" in page
    assert "No matching distribution found" in page_of(browser(admin_user), version)
