"""Publishing packages through the API: what is accepted, and every refusal with its error body."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from apps.catalog.models import App, AppVersion
from sessions.runtime import package
from tests.helpers import publish_as, verify_pending

pytestmark = pytest.mark.django_db


def upload(client, blob: bytes, **data):
    return client.post("/api/v1/apps", {"package": io.BytesIO(blob), **data}, format="multipart")


def assert_refused(response, status: int, code: str, storage_folder) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert not App.objects.exists() or AppVersion.objects.count() == 1
    stored = [p for p in storage_folder.rglob("*") if p.is_file()]
    assert len(stored) <= AppVersion.objects.count(), f"refused package left files: {stored}"


def test_publisher_uploads_new_app(api, alice, runtime, pack):
    response = upload(api(alice), pack(name="transport-demo", version="1.2.0", category="Logistics"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "transport-demo"
    assert body["latest_version"] == "1.2.0"
    assert body["category"] == "Logistics"
    assert body["access"] == "manager"
    [version] = body["versions"]
    assert version["is_latest"] and version["runtime"] == "py311-highs@1.0"
    assert version["launch_url"] == "/launch/transport-demo/1.2.0"
    assert version["pages"] == ["Data"]


def test_raw_body_upload_is_accepted_too(api, alice, runtime, pack):
    response = api(alice).generic("POST", "/api/v1/apps", pack(), content_type="application/octet-stream")
    assert response.status_code == 201, response.content


def test_package_is_stored_encrypted(api, alice, runtime, pack, storage_folder):
    blob = pack()
    upload(api(alice), blob)
    version = AppVersion.objects.get()
    stored = (storage_folder / version.package_path).read_bytes()
    assert stored == blob
    assert stored.startswith(package.MAGIC)
    assert b"demo_model" not in stored


def test_user_cannot_publish(api, carol, runtime, pack, storage_folder):
    assert_refused(upload(api(carol), pack()), 403, "forbidden", storage_folder)
    assert not App.objects.exists()


def test_anonymous_cannot_publish(api, runtime, pack, storage_folder):
    response = upload(api(None), pack())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_duplicate_version_is_refused(api, alice, published, pack, storage_folder):
    assert_refused(upload(api(alice), pack()), 409, "duplicate_version", storage_folder)


def test_another_publishers_app_is_refused(api, bob, published, pack, storage_folder):
    assert_refused(upload(api(bob), pack(version="2.0.0")), 403, "forbidden", storage_folder)


def test_unknown_runtime_is_refused(api, alice, runtime, pack, storage_folder):
    response = upload(api(alice), pack(runtime="julia-9"))
    assert_refused(response, 400, "unknown_runtime", storage_folder)
    assert "julia-9" in response.json()["error"]["message"]


def test_not_a_package(api, alice, runtime, storage_folder):
    assert_refused(upload(api(alice), b"PK\x03\x04 just a zip, not encrypted"), 400, "not_a_package", storage_folder)


def test_empty_upload(api, alice, runtime, storage_folder):
    assert_refused(upload(api(alice), b""), 400, "not_a_package", storage_folder)


def test_missing_field(api, alice, runtime, storage_folder):
    response = api(alice).post("/api/v1/apps", {"other": io.BytesIO(b"x")}, format="multipart")
    assert_refused(response, 400, "invalid", storage_folder)


def test_package_for_another_platform(api, alice, runtime, make_app_folder, storage_folder):
    other_key = package.generate_private_key().public_key()
    blob, _ = package.pack_folder(make_app_folder(), other_key)
    response = upload(api(alice), blob)
    assert_refused(response, 400, "wrong_platform", storage_folder)
    assert "another platform" in response.json()["error"]["message"]


def test_tampered_package(api, alice, runtime, pack, storage_folder):
    blob = bytearray(pack())
    blob[-40] ^= 0x01
    assert_refused(upload(api(alice), bytes(blob)), 400, "tampered", storage_folder)


def encrypted_archive(platform_public_key, files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return package.encrypt(buffer.getvalue(), platform_public_key)


def good_manifest(**changes) -> bytes:
    manifest = {
        "name": "demo",
        "version": "1.0.0",
        "runtime": "py311-highs",
        "entry_point": "demo_model:app",
        "title": "Demo",
        "interface": {"identifiers": [], "procedures": [], "pages": []},
        **changes,
    }
    return json.dumps(manifest).encode()


@pytest.mark.parametrize(
    ("files", "links", "status", "code"),
    [
        ({"demo_model.py": b""}, (), 400, "missing_manifest"),
        ({"manifest.json": b"{not json", "demo_model.py": b""}, (), 400, "bad_manifest"),
        ({"manifest.json": good_manifest(version="1.0"), "demo_model.py": b""}, (), 400, "bad_version"),
        ({"manifest.json": good_manifest(version="latest"), "demo_model.py": b""}, (), 400, "bad_version"),
        ({"manifest.json": good_manifest(name="Bad Name!"), "demo_model.py": b""}, (), 400, "bad_name"),
        ({"manifest.json": good_manifest(interface=None), "demo_model.py": b""}, (), 400, "bad_manifest"),
        ({"manifest.json": good_manifest(extra=1), "demo_model.py": b""}, (), 400, "bad_manifest"),
        ({"manifest.json": good_manifest()}, (), 400, "bad_entry_point"),
        ({"manifest.json": good_manifest(), "demo_model.py": b"", "../evil.py": b""}, (), 400, "unsafe_path"),
        ({"manifest.json": good_manifest(), "demo_model.py": b"", "/etc/cron.d/evil": b""}, (), 400, "unsafe_path"),
        ({"manifest.json": good_manifest(), "demo_model.py": b"", "a/../../evil": b""}, (), 400, "unsafe_path"),
        ({"manifest.json": good_manifest(), "demo_model.py": b""}, ("link",), 400, "unsafe_path"),
        (
            {"manifest.json": good_manifest(), "demo_model.py": b"", "bomb.bin": b"\0" * (20 * 1024 * 1024)},
            (),
            413,
            "too_large",
        ),
    ],
    ids=[
        "missing-manifest",
        "manifest-not-json",
        "short-version",
        "word-version",
        "bad-name",
        "no-interface",
        "unknown-field",
        "entry-module-missing",
        "dot-dot",
        "absolute-path",
        "nested-escape",
        "symlink",
        "zip-bomb",
    ],
)
def test_bad_packages_are_refused(api, alice, runtime, platform_public_key, storage_folder, files, links, status, code):
    blob = encrypted_archive(platform_public_key, files, links)
    assert_refused(upload(api(alice), blob), status, code, storage_folder)
    assert not App.objects.exists()


def test_too_many_entries(api, alice, runtime, platform_public_key, storage_folder, settings):
    settings.PRO_MAX_PACKAGE_ENTRIES = 20
    files = {"manifest.json": good_manifest(), "demo_model.py": b"", **{f"data/{i}.csv": b"x" for i in range(30)}}
    assert_refused(upload(api(alice), encrypted_archive(platform_public_key, files)), 413, "too_large", storage_folder)


def test_compression_ratio_limit_is_configurable(api, alice, runtime, platform_public_key, storage_folder, settings):
    settings.PRO_MAX_PACKAGE_RATIO = 5
    files = {"manifest.json": good_manifest(), "demo_model.py": b"", "data/zeros.csv": b"0," * 1024 * 1024}
    response = upload(api(alice), encrypted_archive(platform_public_key, files))
    assert "expands more than 5 times" in response.json()["error"]["message"]
    assert_refused(response, 413, "too_large", storage_folder)


def test_too_large_package(api, alice, runtime, pack, storage_folder, settings):
    blob = pack()
    settings.PRO_MAX_PACKAGE_BYTES = len(blob) - 1
    assert_refused(upload(api(alice), blob), 413, "too_large", storage_folder)


def test_new_version_inherits_access_and_takes_latest(api, alice, carol, published, pack):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol", "level": "viewer"}, format="json")
    response = upload(api(alice), pack(version="1.1.0"))
    assert response.status_code == 201
    assert api(carol).get("/api/v1/apps/demo").json()["latest_version"] == "1.0.0", (
        "unverified versions stay out of sight"
    )
    verify_pending()
    seen = api(carol).get("/api/v1/apps/demo").json()
    assert seen["latest_version"] == "1.1.0"
    assert [v["version"] for v in seen["versions"]] == ["1.1.0", "1.0.0"]


def test_publish_without_moving_latest(api, alice, published, pack):
    response = upload(api(alice), pack(version="2.0.0-beta.1"), make_latest="false")
    assert response.status_code == 201
    assert response.json()["latest_version"] == "1.0.0"


def test_collaborator_may_publish_new_version(api, alice, bob, published, pack):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "bob", "level": "collaborator"}, format="json")
    assert upload(api(bob), pack(version="1.0.1")).status_code == 201


def test_versions_sort_by_semver(api, alice, published, pack):
    for version in ("1.10.0", "1.2.0", "1.10.0-rc.1"):
        publish_as(alice, pack(version=version), make_latest=False)
    versions = [v["version"] for v in api(alice).get("/api/v1/apps/demo/versions").json()]
    assert versions == ["1.10.0", "1.10.0-rc.1", "1.2.0", "1.0.0"]
